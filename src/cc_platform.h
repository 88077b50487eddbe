/*
** cc_platform.h — every platform difference of the C core, in one place
** (with cc_platform.c). No other file of the core tests a compiler or an OS,
** includes <pthread.h>, <windows.h>, <strings.h> or <unistd.h>, or uses
** __int128 or a __builtin_*.
**
** Contract: the core is C11 plus what is below; each item has a portable
** spelling and, where compilers differ, two implementations:
**   - checked int64 arithmetic (cc_add/sub/mul_i64 in cc_common.h): the GCC/
**     Clang builtins, else plain C range checks (MSVC; -DCC_NO_BUILTIN_OVERFLOW
**     forces them for tests);
**   - cc_i128, a 128-bit signed integer for exact money products and sums:
**     __int128 where the compiler has it, else a two's-complement pair of
**     uint64_t (MSVC; -DCC_NO_INT128 forces it). Both give C's results
**     (products, truncating division, remainder with the dividend's sign) on
**     every value in range; overflow of 128 bits is a caller's bug, as for
**     __int128. The fallback is always compiled (cc_i128p_*) so tests compare
**     it with __int128 on the same inputs;
**   - case-insensitive ASCII compares (cc_strcasecmp/cc_strncasecmp):
**     <strings.h> on POSIX, _stricmp/_strnicmp on Windows;
**   - threads, mutexes, condition variables and once: POSIX threads, or on
**     Windows (MSVC and mingw-w64 alike) SRWLOCK, CONDITION_VARIABLE,
**     InitOnceExecuteOnce and _beginthreadex, without <windows.h> in this
**     header (cc_platform.c includes it). A mutex is not recursive and is
**     never copied once in use; CC_MUTEX_INIT / CC_ONCE_INIT initialise
**     statics. cc_cond_timedwait_ms waits at most timeout_ms on a monotonic
**     clock (macOS: pthread_cond_timedwait_relative_np, as it has no
**     pthread_condattr_setclock) and may wake early: callers loop on their
**     condition against cc_monotonic_ms();
**   - clocks and sleep: cc_realtime_ms (Unix epoch), cc_monotonic_ms,
**     cc_sleep_ms;
**   - files: cc_is_regular_file (no S_ISREG on MSVC);
**   - loopback TCP sockets for the gateway listener (listener.h): BSD
**     sockets, or Winsock 2 on Windows (ws2_32, started once). Every socket
**     made here is non-blocking with TCP_NODELAY (the test helper
**     cc_sock_connect_loopback's is blocking), never raises SIGPIPE, and is
**     a curl_socket_t as libcurl sees it (int / SOCKET), so the gateway's
**     I/O thread can wait on it;
**   - printf's %zu/%lld on mingw-w64: its C99 stdio (__USE_MINGW_ANSI_STDIO,
**     set by the build) and format checks against that (CC_PRINTF_LIKE).
** Checked in CI: Linux gcc (every build; `make ctest-portable` forces the
** plain-C fallbacks), mingw-w64 gcc with the MSVC-like fallbacks forced and
** <pthread.h>/<strings.h>/<unistd.h> made unavailable (scripts/check-portable,
** which also runs the C tests that need no libcurl/SQLite/OpenSSL/cJSON as
** Windows .exe under wine); macOS clang and MSVC only in the release workflow.
*/
#ifndef CC_PLATFORM_H
#define CC_PLATFORM_H

#include <stdint.h>
#include <string.h>

#if defined(_WIN32)
#define CC_OS_WINDOWS 1
#endif

/* ---- printf-style format checking (mingw-w64: C99 formats such as %zu) */
#if defined(__MINGW32__)
#define CC_PRINTF_LIKE(fmt, args) __attribute__((format(gnu_printf, fmt, args)))
#elif defined(__GNUC__) || defined(__clang__)
#define CC_PRINTF_LIKE(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define CC_PRINTF_LIKE(fmt, args)
#endif

/* ---- checked int64 arithmetic: 0 on success, 1 on overflow (*out untouched) */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(CC_NO_BUILTIN_OVERFLOW)
#define CC_HAVE_BUILTIN_OVERFLOW 1
#define CC_ADD_OVERFLOW(a, b, out) __builtin_add_overflow(a, b, out)
#define CC_SUB_OVERFLOW(a, b, out) __builtin_sub_overflow(a, b, out)
#define CC_MUL_OVERFLOW(a, b, out) __builtin_mul_overflow(a, b, out)
#else
#define CC_ADD_OVERFLOW(a, b, out) cc_add_overflow_i64_(a, b, out)
#define CC_SUB_OVERFLOW(a, b, out) cc_sub_overflow_i64_(a, b, out)
#define CC_MUL_OVERFLOW(a, b, out) cc_mul_overflow_i64_(a, b, out)
#endif
/* The plain-C versions, always defined (tests compare them with the builtins). */
static inline int cc_add_overflow_i64_(int64_t a, int64_t b, int64_t *out) {
    if ((b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b)) return 1;
    *out = a + b;
    return 0;
}
static inline int cc_sub_overflow_i64_(int64_t a, int64_t b, int64_t *out) {
    if ((b < 0 && a > INT64_MAX + b) || (b > 0 && a < INT64_MIN + b)) return 1;
    *out = a - b;
    return 0;
}
static inline int cc_mul_overflow_i64_(int64_t a, int64_t b, int64_t *out) {
    if (a == 0 || b == 0) { *out = 0; return 0; }
    if ((a == -1 && b == INT64_MIN) || (b == -1 && a == INT64_MIN)) return 1;
    if (a > 0 ? (b > 0 ? a > INT64_MAX / b : b < INT64_MIN / a)
              : (b > 0 ? a < INT64_MIN / b : a < INT64_MAX / b)) return 1;
    *out = a * b;
    return 0;
}

/* ---- 128-bit signed integers */
/* The portable representation: two's complement, hi:lo. */
typedef struct cc_i128p { uint64_t lo, hi; } cc_i128p;
cc_i128p cc_i128p_from_i64(int64_t v);
cc_i128p cc_i128p_add(cc_i128p a, cc_i128p b);
cc_i128p cc_i128p_sub(cc_i128p a, cc_i128p b);
cc_i128p cc_i128p_mul(cc_i128p a, cc_i128p b);
/* Truncating division like C's / and %: q = a / d, r = a % d. d != 0, and
** not INT128_MIN / -1 (asserted). q or r may be NULL. */
void cc_i128p_divmod(cc_i128p a, cc_i128p d, cc_i128p *q, cc_i128p *r);
int cc_i128p_cmp(cc_i128p a, cc_i128p b); /* -1, 0, 1 */
int cc_i128p_to_i64(cc_i128p a, int64_t *out); /* 0 and *out set if it fits, else 1 */

#if defined(__SIZEOF_INT128__) && !defined(CC_NO_INT128)
#define CC_HAVE_INT128 1
__extension__ typedef __int128 cc_i128;
static inline cc_i128 cc_i128_from_i64(int64_t v) { return v; }
static inline cc_i128 cc_i128_add(cc_i128 a, cc_i128 b) { return a + b; }
static inline cc_i128 cc_i128_sub(cc_i128 a, cc_i128 b) { return a - b; }
static inline cc_i128 cc_i128_mul(cc_i128 a, cc_i128 b) { return a * b; }
static inline void cc_i128_divmod(cc_i128 a, cc_i128 d, cc_i128 *q, cc_i128 *r) {
    if (q) *q = a / d;
    if (r) *r = a % d;
}
static inline int cc_i128_cmp(cc_i128 a, cc_i128 b) { return (a > b) - (a < b); }
static inline int cc_i128_to_i64(cc_i128 a, int64_t *out) {
    if (a < INT64_MIN || a > INT64_MAX) return 1;
    *out = (int64_t)a;
    return 0;
}
#else
typedef cc_i128p cc_i128;
#define cc_i128_from_i64 cc_i128p_from_i64
#define cc_i128_add cc_i128p_add
#define cc_i128_sub cc_i128p_sub
#define cc_i128_mul cc_i128p_mul
#define cc_i128_divmod cc_i128p_divmod
#define cc_i128_cmp cc_i128p_cmp
#define cc_i128_to_i64 cc_i128p_to_i64
#endif
/* Shorthands used on money paths. */
static inline cc_i128 cc_i128_mul_i64(int64_t a, int64_t b) {
    return cc_i128_mul(cc_i128_from_i64(a), cc_i128_from_i64(b));
}
static inline int cc_i128_cmp_i64(cc_i128 a, int64_t b) { return cc_i128_cmp(a, cc_i128_from_i64(b)); }

/* ---- case-insensitive ASCII compares */
#if defined(CC_OS_WINDOWS)
/* <string.h> declares them on MSVC and mingw-w64 */
#define cc_strcasecmp _stricmp
#define cc_strncasecmp _strnicmp
#else
#include <strings.h>
#define cc_strcasecmp strcasecmp
#define cc_strncasecmp strncasecmp
#endif

/* ---- threads */
#if defined(CC_OS_WINDOWS)
#define CC_THREADS_WIN32 1
/* Same size and layout as SRWLOCK / CONDITION_VARIABLE / INIT_ONCE (one
** pointer, zero = initial state); cc_platform.c checks it at compile time. */
typedef struct cc_mutex { void *p_; } cc_mutex_t;
typedef struct cc_cond { void *p_; } cc_cond_t;
typedef struct cc_once { void *p_; } cc_once_t;
typedef struct cc_thread { void *handle_; void *start_; } cc_thread_t;
#define CC_MUTEX_INIT {0}
#define CC_ONCE_INIT {0}
#else
#define CC_THREADS_PTHREADS 1
#include <pthread.h>
typedef pthread_mutex_t cc_mutex_t;
typedef pthread_cond_t cc_cond_t;
typedef pthread_once_t cc_once_t;
typedef struct cc_thread { pthread_t t_; } cc_thread_t;
#define CC_MUTEX_INIT PTHREAD_MUTEX_INITIALIZER
#define CC_ONCE_INIT PTHREAD_ONCE_INIT
#endif
void cc_mutex_init(cc_mutex_t *m);
void cc_mutex_destroy(cc_mutex_t *m);
void cc_mutex_lock(cc_mutex_t *m);
void cc_mutex_unlock(cc_mutex_t *m);
int cc_mutex_trylock(cc_mutex_t *m); /* 1 if taken now, 0 if another thread holds it (never waits) */
void cc_cond_init(cc_cond_t *c);
void cc_cond_destroy(cc_cond_t *c);
void cc_cond_wait(cc_cond_t *c, cc_mutex_t *m);
/* 1 when timeout_ms passed without a wake-up, else 0 (also spurious). */
int cc_cond_timedwait_ms(cc_cond_t *c, cc_mutex_t *m, int64_t timeout_ms);
void cc_cond_signal(cc_cond_t *c);
void cc_cond_broadcast(cc_cond_t *c);
/* Runs fn exactly once per cc_once_t, every caller returning after it ran. */
void cc_once(cc_once_t *o, void (*fn)(void));
/* 0 on success; fn's return value comes back from cc_thread_join. */
int cc_thread_create(cc_thread_t *t, void *(*fn)(void *), void *arg);
int cc_thread_join(cc_thread_t t, void **ret);
/* Asks the OS to schedule the calling thread as a throughput (batch) thread:
** on Linux SCHED_BATCH, which does not preempt the running task when it wakes
** up (it runs when that task blocks or its time slice ends). 0 when done; -1
** where the OS has no such class (elsewhere) or refused. */
int cc_thread_batch_self(void);

/* ---- clocks, sleep, files */
int64_t cc_realtime_ms(void);  /* wall clock, ms since the Unix epoch */
int64_t cc_monotonic_ms(void); /* never goes back; for timeouts */
void cc_sleep_ms(int64_t ms);
int cc_is_regular_file(const char *path); /* 1 if path names a regular file */

/* ---- loopback TCP sockets */
#if defined(CC_OS_WINDOWS)
typedef uintptr_t cc_socket_t; /* SOCKET */
#define CC_SOCKET_INVALID (~(uintptr_t)0)
#else
typedef int cc_socket_t;
#define CC_SOCKET_INVALID (-1)
#endif
#define CC_SOCK_AGAIN (-2) /* would block */
/* A listening socket on 127.0.0.1 (ipv6 = 0) or ::1 (ipv6 = 1), port picked by
** the kernel (*port). 0 on success, else -1 and *err_no the OS error. */
int cc_sock_listen_loopback(int ipv6, int backlog, cc_socket_t *out, int *port, int *err_no);
/* 1: *out is a new connection (non-blocking, TCP_NODELAY); 0: none pending; -1: error. */
int cc_sock_accept(cc_socket_t l, cc_socket_t *out);
/* Bytes moved (> 0), 0 when the peer closed (recv), CC_SOCK_AGAIN, or -1 on an error. */
int64_t cc_sock_recv(cc_socket_t s, void *buf, size_t n);
int64_t cc_sock_send(cc_socket_t s, const void *buf, size_t n);
void cc_sock_close(cc_socket_t s);
/* Tests: a blocking connection to 127.0.0.1:port (CC_SOCKET_INVALID on failure), with a receive timeout. */
cc_socket_t cc_sock_connect_loopback(int port, int recv_timeout_ms);

/* ---- readiness of many sockets (the gateway's I/O thread)
** A wait costs what happened, not how many sockets are watched: epoll on
** Linux (interest registered once, changed only when it changes); elsewhere,
** and on Linux when built with -DCC_NO_EPOLL (`make ctest-portable`), the
** fallback keeps the watched sockets in an array and polls them all (poll, or
** WSAPoll on Windows). Level-triggered either way: a socket stays reported
** while it is ready. A socket watched for nothing must be removed, not kept
** with no events: an error or hang-up would be reported on every wait.
** cc_poller_wake (any thread) makes the current or next wait return; wakes
** that come before that wait returns are one. The rest: one thread. */
typedef struct cc_poller cc_poller;
#define CC_POLL_IN 1
#define CC_POLL_OUT 4
#define CC_POLL_ERR 8 /* error or hang-up: reported whatever was asked */
typedef struct cc_poll_event {
    uint64_t tag;
    int events;
} cc_poll_event;
/* Up to fds_max sockets watched at once; NULL when the OS refuses. */
cc_poller *cc_poller_open(int fds_max);
void cc_poller_close(cc_poller *p);
/* 0 on success; -1: already watched (add), not watched (mod), full, or the OS refused. */
int cc_poller_add(cc_poller *p, cc_socket_t fd, int events, uint64_t tag);
int cc_poller_mod(cc_poller *p, cc_socket_t fd, int events, uint64_t tag);
/* Stops watching fd; call it before the socket is closed. */
void cc_poller_del(cc_poller *p, cc_socket_t fd);
/* Waits up to timeout_ms (>= 0) for ready sockets or a wake-up; returns how
** many events it stored in ev (<= cap; 0: timeout or only a wake-up). */
int cc_poller_wait(cc_poller *p, cc_poll_event *ev, int cap, int timeout_ms);
void cc_poller_wake(cc_poller *p);

#endif
