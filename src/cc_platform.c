/*
** cc_platform.c — the portable 128-bit integers and the two backends of the
** thread/clock layer. See cc_platform.h for the contract.
*/
#include "cc_platform.h"
#include "cc_common.h"

#if defined(CC_THREADS_WIN32)
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0603 /* Windows 8.1, CPython 3.10's minimum */
#endif
#define WIN32_LEAN_AND_MEAN
#include <winsock2.h> /* before <windows.h> */
#include <ws2tcpip.h>
#include <windows.h>
#include <process.h>
#include <sys/stat.h>
#else
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__) && !defined(CC_NO_EPOLL)
#define CC_POLLER_EPOLL 1
#include <sys/epoll.h>
#include <sys/eventfd.h>
#else
#include <poll.h>
#endif
#endif

/* ------------------------------------------------------------ cc_i128p */

#define I128P_NEG(a) (((a).hi >> 63) != 0)

cc_i128p cc_i128p_from_i64(int64_t v) {
    cc_i128p r;
    r.lo = (uint64_t)v;
    r.hi = v < 0 ? UINT64_MAX : 0;
    return r;
}

cc_i128p cc_i128p_add(cc_i128p a, cc_i128p b) {
    cc_i128p r;
    r.lo = a.lo + b.lo;
    r.hi = a.hi + b.hi + (r.lo < a.lo);
    return r;
}

static cc_i128p i128p_neg(cc_i128p a) {
    cc_i128p r;
    r.lo = ~a.lo + 1;
    r.hi = ~a.hi + (r.lo == 0);
    return r;
}

cc_i128p cc_i128p_sub(cc_i128p a, cc_i128p b) {
    return cc_i128p_add(a, i128p_neg(b));
}

/* Full 64 x 64 -> 128 unsigned product from 32-bit halves. */
static cc_i128p mul_u64(uint64_t a, uint64_t b) {
    uint64_t a0 = a & 0xffffffffu, a1 = a >> 32, b0 = b & 0xffffffffu, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffu) + (p10 & 0xffffffffu);
    cc_i128p r;
    r.lo = (mid << 32) | (p00 & 0xffffffffu);
    r.hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
    return r;
}

/* Products modulo 2^128 are the same for signed and unsigned operands. */
cc_i128p cc_i128p_mul(cc_i128p a, cc_i128p b) {
    cc_i128p r = mul_u64(a.lo, b.lo);
    r.hi += a.lo * b.hi + a.hi * b.lo;
    return r;
}

static int cmp_u(cc_i128p a, cc_i128p b) {
    if (a.hi != b.hi) return a.hi < b.hi ? -1 : 1;
    if (a.lo != b.lo) return a.lo < b.lo ? -1 : 1;
    return 0;
}

int cc_i128p_cmp(cc_i128p a, cc_i128p b) {
    int na = I128P_NEG(a), nb = I128P_NEG(b);
    if (na != nb) return na ? -1 : 1;
    return cmp_u(a, b); /* same sign: two's complement orders like unsigned */
}

/* Unsigned long division, one quotient bit per step (money paths only: a
** few hundred nanoseconds, never in a loop over rows). */
static void divmod_u(cc_i128p n, cc_i128p d, cc_i128p *q, cc_i128p *r) {
    if (n.hi == 0 && d.hi == 0) {
        q->hi = 0; q->lo = n.lo / d.lo;
        r->hi = 0; r->lo = n.lo % d.lo;
        return;
    }
    cc_i128p qq = {0, 0}, rr = {0, 0};
    for (int i = 127; i >= 0; i--) {
        rr.hi = (rr.hi << 1) | (rr.lo >> 63);
        rr.lo = (rr.lo << 1) | ((i >= 64 ? n.hi >> (i - 64) : n.lo >> i) & 1);
        if (cmp_u(rr, d) >= 0) {
            rr = cc_i128p_sub(rr, d);
            if (i >= 64) qq.hi |= (uint64_t)1 << (i - 64);
            else qq.lo |= (uint64_t)1 << i;
        }
    }
    *q = qq;
    *r = rr;
}

void cc_i128p_divmod(cc_i128p a, cc_i128p d, cc_i128p *q, cc_i128p *r) {
    CC_ASSERT(d.lo != 0 || d.hi != 0);
    int na = I128P_NEG(a), nd = I128P_NEG(d);
    cc_i128p ua = na ? i128p_neg(a) : a, ud = nd ? i128p_neg(d) : d;
    /* INT128_MIN / -1 overflows (undefined for __int128 too). */
    CC_ASSERT(!(na && I128P_NEG(ua) && nd && ud.hi == 0 && ud.lo == 1));
    cc_i128p uq, ur;
    divmod_u(ua, ud, &uq, &ur); /* ua = INT128_MIN is 2^127 as unsigned: still right */
    if (q) *q = (na != nd) ? i128p_neg(uq) : uq;
    if (r) *r = na ? i128p_neg(ur) : ur;
}

int cc_i128p_to_i64(cc_i128p a, int64_t *out) {
    if (a.hi != ((a.lo >> 63) ? UINT64_MAX : 0)) return 1;
    /* two's complement reinterpretation without implementation-defined casts */
    *out = (a.lo >> 63) ? -(int64_t)(~a.lo) - 1 : (int64_t)a.lo;
    return 0;
}

/* ------------------------------------------------------------ threads: Win32 */
#if defined(CC_THREADS_WIN32)

#define CC_PATH_WCHARS_MAX 4096 /* UTF-16 units of a path cc_is_regular_file accepts */

_Static_assert(sizeof(cc_mutex_t) == sizeof(SRWLOCK), "cc_mutex_t must hold an SRWLOCK");
_Static_assert(sizeof(cc_cond_t) == sizeof(CONDITION_VARIABLE), "cc_cond_t must hold a CONDITION_VARIABLE");
_Static_assert(sizeof(cc_once_t) == sizeof(INIT_ONCE), "cc_once_t must hold an INIT_ONCE");

#define SRW(m) ((PSRWLOCK)(void *)(m))
#define CV(c) ((PCONDITION_VARIABLE)(void *)(c))

void cc_mutex_init(cc_mutex_t *m) { InitializeSRWLock(SRW(m)); }
void cc_mutex_destroy(cc_mutex_t *m) { (void)m; /* an SRWLOCK holds no resource */ }
void cc_mutex_lock(cc_mutex_t *m) { AcquireSRWLockExclusive(SRW(m)); }
void cc_mutex_unlock(cc_mutex_t *m) { ReleaseSRWLockExclusive(SRW(m)); }
int cc_mutex_trylock(cc_mutex_t *m) { return TryAcquireSRWLockExclusive(SRW(m)) ? 1 : 0; }

void cc_cond_init(cc_cond_t *c) { InitializeConditionVariable(CV(c)); }
void cc_cond_destroy(cc_cond_t *c) { (void)c; }
void cc_cond_wait(cc_cond_t *c, cc_mutex_t *m) {
    BOOL ok = SleepConditionVariableSRW(CV(c), SRW(m), INFINITE, 0);
    CC_ASSERT(ok);
}
int cc_cond_timedwait_ms(cc_cond_t *c, cc_mutex_t *m, int64_t timeout_ms) {
    if (timeout_ms < 0) timeout_ms = 0;
    DWORD ms = timeout_ms >= (int64_t)INFINITE ? INFINITE - 1 : (DWORD)timeout_ms;
    if (SleepConditionVariableSRW(CV(c), SRW(m), ms, 0)) return 0;
    CC_ASSERT(GetLastError() == ERROR_TIMEOUT);
    return 1;
}
void cc_cond_signal(cc_cond_t *c) { WakeConditionVariable(CV(c)); }
void cc_cond_broadcast(cc_cond_t *c) { WakeAllConditionVariable(CV(c)); }

typedef struct once_call { void (*fn)(void); } once_call;
static BOOL CALLBACK once_tramp(PINIT_ONCE o, PVOID param, PVOID *ctx) {
    (void)o;
    (void)ctx;
    ((once_call *)param)->fn();
    return TRUE;
}
void cc_once(cc_once_t *o, void (*fn)(void)) {
    once_call call = {fn};
    BOOL ok = InitOnceExecuteOnce((PINIT_ONCE)(void *)o, once_tramp, &call, NULL);
    CC_ASSERT(ok);
}

typedef struct thread_start { void *(*fn)(void *); void *arg; void *ret; } thread_start;
static unsigned __stdcall thread_tramp(void *p) {
    thread_start *s = p;
    s->ret = s->fn(s->arg);
    return 0;
}
int cc_thread_create(cc_thread_t *t, void *(*fn)(void *), void *arg) {
    thread_start *s = malloc(sizeof *s);
    if (!s) return 1;
    s->fn = fn;
    s->arg = arg;
    s->ret = NULL;
    uintptr_t h = _beginthreadex(NULL, 0, thread_tramp, s, 0, NULL);
    if (h == 0) { free(s); return 1; }
    t->handle_ = (void *)h;
    t->start_ = s;
    return 0;
}
int cc_thread_join(cc_thread_t t, void **ret) {
    if (WaitForSingleObject((HANDLE)t.handle_, INFINITE) != WAIT_OBJECT_0) return 1;
    CloseHandle((HANDLE)t.handle_);
    thread_start *s = t.start_;
    if (ret) *ret = s->ret;
    free(s);
    return 0;
}
int cc_thread_batch_self(void) { return -1; } /* no such class: Windows boosts a thread woken by I/O anyway */

/* 100 ns ticks between 1601-01-01 and 1970-01-01 */
#define FILETIME_UNIX_EPOCH INT64_C(116444736000000000)
int64_t cc_realtime_ms(void) {
    FILETIME ft;
    GetSystemTimePreciseAsFileTime(&ft);
    int64_t t = (int64_t)(((uint64_t)ft.dwHighDateTime << 32) | ft.dwLowDateTime);
    return (t - FILETIME_UNIX_EPOCH) / 10000;
}
int64_t cc_monotonic_ms(void) { /* QPC: GetTickCount64 ticks in ~16 ms steps */
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f); /* fixed at boot, never fails since XP */
    QueryPerformanceCounter(&c);
    return c.QuadPart / f.QuadPart * 1000 + c.QuadPart % f.QuadPart * 1000 / f.QuadPart;
}
void cc_sleep_ms(int64_t ms) {
    if (ms < 0) ms = 0;
    Sleep(ms >= (int64_t)INFINITE ? INFINITE - 1 : (DWORD)ms);
}
int cc_is_regular_file(const char *path) { /* path is UTF-8, as Python passes it */
    wchar_t wpath[CC_PATH_WCHARS_MAX];
    if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, wpath, CC_PATH_WCHARS_MAX) == 0) return 0;
    struct _stat64 st;
    return _wstat64(wpath, &st) == 0 && (st.st_mode & _S_IFMT) == _S_IFREG;
}

/* ------------------------------------------------------------ threads: POSIX */
#else

#if defined(__APPLE__)
#define CC_COND_RELATIVE 1 /* no pthread_condattr_setclock on macOS */
#endif

#define PCHECK(call)                                                           \
    do {                                                                       \
        int pc_rc_ = (call);                                                   \
        CC_ASSERT(pc_rc_ == 0);                                                \
    } while (0)

void cc_mutex_init(cc_mutex_t *m) { PCHECK(pthread_mutex_init(m, NULL)); }
void cc_mutex_destroy(cc_mutex_t *m) { pthread_mutex_destroy(m); }
void cc_mutex_lock(cc_mutex_t *m) { PCHECK(pthread_mutex_lock(m)); }
void cc_mutex_unlock(cc_mutex_t *m) { PCHECK(pthread_mutex_unlock(m)); }
int cc_mutex_trylock(cc_mutex_t *m) {
    int rc = pthread_mutex_trylock(m);
    CC_ASSERT(rc == 0 || rc == EBUSY);
    return rc == 0;
}

void cc_cond_init(cc_cond_t *c) {
#if defined(CC_COND_RELATIVE)
    PCHECK(pthread_cond_init(c, NULL));
#else
    pthread_condattr_t ca;
    PCHECK(pthread_condattr_init(&ca));
    PCHECK(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC));
    PCHECK(pthread_cond_init(c, &ca));
    pthread_condattr_destroy(&ca);
#endif
}
void cc_cond_destroy(cc_cond_t *c) { pthread_cond_destroy(c); }
void cc_cond_wait(cc_cond_t *c, cc_mutex_t *m) { PCHECK(pthread_cond_wait(c, m)); }
int cc_cond_timedwait_ms(cc_cond_t *c, cc_mutex_t *m, int64_t timeout_ms) {
    if (timeout_ms < 0) timeout_ms = 0;
    if (timeout_ms > INT64_C(100000000000)) timeout_ms = INT64_C(100000000000); /* ~3 years: no time_t overflow */
    struct timespec ts;
#if defined(CC_COND_RELATIVE)
    ts.tv_sec = (time_t)(timeout_ms / 1000);
    ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
    int rc = pthread_cond_timedwait_relative_np(c, m, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(timeout_ms / 1000);
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    int rc = pthread_cond_timedwait(c, m, &ts);
#endif
    CC_ASSERT(rc == 0 || rc == ETIMEDOUT);
    return rc == ETIMEDOUT;
}
void cc_cond_signal(cc_cond_t *c) { PCHECK(pthread_cond_signal(c)); }
void cc_cond_broadcast(cc_cond_t *c) { PCHECK(pthread_cond_broadcast(c)); }

void cc_once(cc_once_t *o, void (*fn)(void)) { PCHECK(pthread_once(o, fn)); }

int cc_thread_create(cc_thread_t *t, void *(*fn)(void *), void *arg) {
    return pthread_create(&t->t_, NULL, fn, arg) != 0;
}
int cc_thread_join(cc_thread_t t, void **ret) { return pthread_join(t.t_, ret) != 0; }

int cc_thread_batch_self(void) {
#if defined(__linux__) && defined(SCHED_BATCH)
    struct sched_param sp;
    memset(&sp, 0, sizeof sp); /* SCHED_BATCH takes priority 0 */
    return sched_setscheduler(0, SCHED_BATCH, &sp) == 0 ? 0 : -1; /* 0: this thread (Linux) */
#else
    return -1;
#endif
}

int64_t cc_realtime_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
int64_t cc_monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
void cc_sleep_ms(int64_t ms) {
    if (ms <= 0) return;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}
int cc_is_regular_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}
#endif

/* ------------------------------------------------------------ loopback sockets */

#if defined(CC_OS_WINDOWS)
static cc_once_t wsa_once = CC_ONCE_INIT;
static int wsa_ok;
static void wsa_start(void) {
    WSADATA d;
    wsa_ok = WSAStartup(MAKEWORD(2, 2), &d) == 0;
}
static int sock_ready(void) {
    cc_once(&wsa_once, wsa_start);
    return wsa_ok;
}
static int sock_errno(void) { return WSAGetLastError(); }
static int would_block(int e) { return e == WSAEWOULDBLOCK || e == WSAEINTR; }
static int set_nonblocking(cc_socket_t s) {
    u_long on = 1;
    return ioctlsocket((SOCKET)s, FIONBIO, &on) == 0 ? 0 : -1;
}
#define SEND_FLAGS 0
#else
static int sock_ready(void) { return 1; }
static int sock_errno(void) { return errno; }
static int would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK || e == EINTR; }
static int set_nonblocking(cc_socket_t s) {
    int fl = fcntl(s, F_GETFL, 0);
    if (fl < 0 || fcntl(s, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
    (void)fcntl(s, F_SETFD, FD_CLOEXEC);
    return 0;
}
#if defined(MSG_NOSIGNAL)
#define SEND_FLAGS MSG_NOSIGNAL
#else
#define SEND_FLAGS 0 /* macOS: SO_NOSIGPIPE is set on the socket instead */
#endif
#endif

static void no_sigpipe(cc_socket_t s) {
#if defined(SO_NOSIGPIPE)
    int on = 1;
    setsockopt(s, SOL_SOCKET, SO_NOSIGPIPE, (const void *)&on, sizeof on);
#else
    (void)s;
#endif
}

void cc_sock_close(cc_socket_t s) {
    if (s == CC_SOCKET_INVALID) return;
#if defined(CC_OS_WINDOWS)
    closesocket((SOCKET)s);
#else
    close(s);
#endif
}

int cc_sock_listen_loopback(int ipv6, int backlog, cc_socket_t *out, int *port, int *err_no) {
    *out = CC_SOCKET_INVALID;
    *err_no = 0;
    if (!sock_ready()) {
        *err_no = -1;
        return -1;
    }
    cc_socket_t s = (cc_socket_t)socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (s == CC_SOCKET_INVALID) {
        *err_no = sock_errno();
        return -1;
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (ipv6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    }
    if (bind(s, (struct sockaddr *)&ss, len) != 0 || listen(s, backlog) != 0 ||
        getsockname(s, (struct sockaddr *)&ss, &len) != 0 || set_nonblocking(s) != 0) {
        *err_no = sock_errno();
        cc_sock_close(s);
        return -1;
    }
    *port = ipv6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    *out = s;
    return 0;
}

int cc_sock_accept(cc_socket_t l, cc_socket_t *out) {
    *out = CC_SOCKET_INVALID;
    cc_socket_t s = (cc_socket_t)accept(l, NULL, NULL);
    if (s == CC_SOCKET_INVALID) {
        int e = sock_errno();
#if defined(CC_OS_WINDOWS)
        return would_block(e) || e == WSAECONNRESET ? 0 : -1;
#else
        return would_block(e) || e == ECONNABORTED ? 0 : -1;
#endif
    }
    if (set_nonblocking(s) != 0) {
        cc_sock_close(s);
        return 0;
    }
    int on = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const void *)&on, sizeof on);
    no_sigpipe(s);
    *out = s;
    return 1;
}

int64_t cc_sock_recv(cc_socket_t s, void *buf, size_t n) {
    if (n > (1u << 30)) n = 1u << 30;
#if defined(CC_OS_WINDOWS)
    int r = recv((SOCKET)s, (char *)buf, (int)n, 0);
#else
    ssize_t r = recv(s, buf, n, 0);
#endif
    if (r >= 0) return (int64_t)r;
    return would_block(sock_errno()) ? CC_SOCK_AGAIN : -1;
}

int64_t cc_sock_send(cc_socket_t s, const void *buf, size_t n) {
    if (n > (1u << 30)) n = 1u << 30;
#if defined(CC_OS_WINDOWS)
    int r = send((SOCKET)s, (const char *)buf, (int)n, SEND_FLAGS);
#else
    ssize_t r = send(s, buf, n, SEND_FLAGS);
#endif
    if (r >= 0) return (int64_t)r;
    return would_block(sock_errno()) ? CC_SOCK_AGAIN : -1;
}

cc_socket_t cc_sock_connect_loopback(int port, int recv_timeout_ms) {
    if (!sock_ready()) return CC_SOCKET_INVALID;
    cc_socket_t s = (cc_socket_t)socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (s == CC_SOCKET_INVALID) return s;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((unsigned short)port);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        cc_sock_close(s);
        return CC_SOCKET_INVALID;
    }
#if defined(CC_OS_WINDOWS)
    DWORD tv = (DWORD)recv_timeout_ms;
#else
    struct timeval tv = {recv_timeout_ms / 1000, (recv_timeout_ms % 1000) * 1000};
#endif
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, (const void *)&tv, sizeof tv);
    int on = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const void *)&on, sizeof on);
    no_sigpipe(s);
    return s;
}

/* ------------------------------------------------------------ cc_poller */

/* The wake-up latch both backends share: of the wakes between two waits only
** the first writes to the wake-up channel (it claims the latch); the wait
** that drains the channel opens the latch again. */
static int wake_claim(cc_mutex_t *mu, int *pending) {
    cc_mutex_lock(mu);
    int first = !*pending;
    *pending = 1;
    cc_mutex_unlock(mu);
    return first;
}

static void wake_drained(cc_mutex_t *mu, int *pending) {
    cc_mutex_lock(mu);
    *pending = 0;
    cc_mutex_unlock(mu);
}

#if defined(CC_POLLER_EPOLL)

struct cc_poller {
    int ep, wfd;                /* epoll instance, eventfd for wake-ups */
    int fds_max, n;
    cc_mutex_t mu;
    int wake_pending;           /* under mu: a wake-up was written and not read yet */
};

cc_poller *cc_poller_open(int fds_max) {
    if (fds_max < 1) return NULL;
    cc_poller *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->ep = epoll_create1(EPOLL_CLOEXEC);
    p->wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event e;
    memset(&e, 0, sizeof e);
    e.events = EPOLLIN;
    e.data.u64 = UINT64_MAX; /* the wake-up; never a caller's tag (see wait) */
    if (p->ep < 0 || p->wfd < 0 || epoll_ctl(p->ep, EPOLL_CTL_ADD, p->wfd, &e) != 0) {
        if (p->ep >= 0) close(p->ep);
        if (p->wfd >= 0) close(p->wfd);
        free(p);
        return NULL;
    }
    p->fds_max = fds_max;
    cc_mutex_init(&p->mu);
    return p;
}

void cc_poller_close(cc_poller *p) {
    if (!p) return;
    close(p->ep);
    close(p->wfd);
    cc_mutex_destroy(&p->mu);
    free(p);
}

static uint32_t ep_events(int events) {
    return ((events & CC_POLL_IN) ? EPOLLIN : 0) | ((events & CC_POLL_OUT) ? EPOLLOUT : 0);
}

int cc_poller_add(cc_poller *p, cc_socket_t fd, int events, uint64_t tag) {
    CC_ASSERT(tag != UINT64_MAX);
    if (p->n >= p->fds_max) return -1;
    struct epoll_event e;
    memset(&e, 0, sizeof e);
    e.events = ep_events(events);
    e.data.u64 = tag;
    if (epoll_ctl(p->ep, EPOLL_CTL_ADD, fd, &e) != 0) return -1;
    p->n++;
    return 0;
}

int cc_poller_mod(cc_poller *p, cc_socket_t fd, int events, uint64_t tag) {
    CC_ASSERT(tag != UINT64_MAX);
    struct epoll_event e;
    memset(&e, 0, sizeof e);
    e.events = ep_events(events);
    e.data.u64 = tag;
    return epoll_ctl(p->ep, EPOLL_CTL_MOD, fd, &e) == 0 ? 0 : -1;
}

void cc_poller_del(cc_poller *p, cc_socket_t fd) {
    struct epoll_event e; /* ignored; non-NULL for kernels before 2.6.9 */
    if (epoll_ctl(p->ep, EPOLL_CTL_DEL, fd, &e) == 0) p->n--;
}

int cc_poller_wait(cc_poller *p, cc_poll_event *ev, int cap, int timeout_ms) {
    enum { BATCH = 256 };
    struct epoll_event got[BATCH];
    if (cap > BATCH) cap = BATCH;
    if (timeout_ms < 0) timeout_ms = 0;
    int r = epoll_wait(p->ep, got, cap, timeout_ms);
    int k = 0;
    for (int i = 0; i < r; i++) {
        if (got[i].data.u64 == UINT64_MAX) {
            uint64_t v;
            ssize_t rd = read(p->wfd, &v, sizeof v); /* resets the counter */
            (void)rd;
            wake_drained(&p->mu, &p->wake_pending);
            continue;
        }
        uint32_t e = got[i].events;
        ev[k].tag = got[i].data.u64;
        ev[k].events = ((e & (EPOLLIN | EPOLLERR | EPOLLHUP)) ? CC_POLL_IN : 0) | ((e & EPOLLOUT) ? CC_POLL_OUT : 0) |
                       ((e & (EPOLLERR | EPOLLHUP)) ? CC_POLL_ERR : 0);
        k++;
    }
    return k;
}

void cc_poller_wake(cc_poller *p) {
    if (wake_claim(&p->mu, &p->wake_pending)) {
        uint64_t one = 1;
        ssize_t w = write(p->wfd, &one, sizeof one);
        (void)w; /* EAGAIN only when the counter is huge: a wake-up is pending anyway */
    }
}

#else /* the fallback: poll / WSAPoll over an array */

#if defined(CC_OS_WINDOWS)
typedef WSAPOLLFD cc_pollfd;
#define CC_PIN POLLRDNORM
#define CC_POUT POLLWRNORM
#define cc_poll_sys(f, n, t) WSAPoll((f), (ULONG)(n), (t))
#else
typedef struct pollfd cc_pollfd;
#define CC_PIN POLLIN
#define CC_POUT POLLOUT
#define cc_poll_sys(f, n, t) poll((f), (nfds_t)(n), (t))
#endif

struct cc_poller {
    cc_pollfd *fds;             /* [0] is the wake-up's read end */
    uint64_t *tags;
    int n, fds_max;
    cc_socket_t wr;             /* the wake-up's write end */
    cc_mutex_t mu;
    int wake_pending;           /* under mu */
};

/* A connected pair for wake-ups: a pipe on POSIX, a loopback TCP pair on Windows (WSAPoll takes sockets only). */
static int wake_pair(cc_socket_t *rd, cc_socket_t *wr) {
#if defined(CC_OS_WINDOWS)
    cc_socket_t l, a = CC_SOCKET_INVALID;
    int port, en;
    if (cc_sock_listen_loopback(0, 1, &l, &port, &en) != 0) return -1;
    cc_socket_t c = cc_sock_connect_loopback(port, 1000);
    for (int i = 0; c != CC_SOCKET_INVALID && i < 1000; i++) {
        if (cc_sock_accept(l, &a) == 1) break;
        cc_sleep_ms(1);
    }
    cc_sock_close(l);
    if (c == CC_SOCKET_INVALID || a == CC_SOCKET_INVALID || set_nonblocking(c) != 0) {
        cc_sock_close(c);
        cc_sock_close(a);
        return -1;
    }
    *rd = a;
    *wr = c;
    return 0;
#else
    int fd[2];
    if (pipe(fd) != 0) return -1;
    if (set_nonblocking(fd[0]) != 0 || set_nonblocking(fd[1]) != 0) {
        close(fd[0]);
        close(fd[1]);
        return -1;
    }
    *rd = fd[0];
    *wr = fd[1];
    return 0;
#endif
}

cc_poller *cc_poller_open(int fds_max) {
    if (fds_max < 1 || fds_max > (1 << 20)) return NULL;
    if (!sock_ready()) return NULL;
    cc_poller *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->fds = calloc((size_t)fds_max + 1, sizeof *p->fds);
    p->tags = calloc((size_t)fds_max + 1, sizeof *p->tags);
    cc_socket_t rd;
    if (!p->fds || !p->tags || wake_pair(&rd, &p->wr) != 0) {
        free(p->fds);
        free(p->tags);
        free(p);
        return NULL;
    }
    p->fds[0].fd = rd;
    p->fds[0].events = CC_PIN;
    p->n = 1;
    p->fds_max = fds_max;
    cc_mutex_init(&p->mu);
    return p;
}

void cc_poller_close(cc_poller *p) {
    if (!p) return;
    cc_sock_close((cc_socket_t)p->fds[0].fd);
    cc_sock_close(p->wr);
    cc_mutex_destroy(&p->mu);
    free(p->fds);
    free(p->tags);
    free(p);
}

static int find_fd(const cc_poller *p, cc_socket_t fd) {
    for (int i = 1; i < p->n; i++)
        if ((cc_socket_t)p->fds[i].fd == fd) return i;
    return -1;
}

static short poll_events(int events) {
    return (short)(((events & CC_POLL_IN) ? CC_PIN : 0) | ((events & CC_POLL_OUT) ? CC_POUT : 0));
}

int cc_poller_add(cc_poller *p, cc_socket_t fd, int events, uint64_t tag) {
    if (p->n - 1 >= p->fds_max || find_fd(p, fd) >= 0) return -1;
    p->fds[p->n].fd = fd;
    p->fds[p->n].events = poll_events(events);
    p->fds[p->n].revents = 0;
    p->tags[p->n] = tag;
    p->n++;
    return 0;
}

int cc_poller_mod(cc_poller *p, cc_socket_t fd, int events, uint64_t tag) {
    int i = find_fd(p, fd);
    if (i < 0) return -1;
    p->fds[i].events = poll_events(events);
    p->tags[i] = tag;
    return 0;
}

void cc_poller_del(cc_poller *p, cc_socket_t fd) {
    int i = find_fd(p, fd);
    if (i < 0) return;
    p->n--;
    p->fds[i] = p->fds[p->n];
    p->tags[i] = p->tags[p->n];
}

int cc_poller_wait(cc_poller *p, cc_poll_event *ev, int cap, int timeout_ms) {
    if (timeout_ms < 0) timeout_ms = 0;
    for (int i = 0; i < p->n; i++) p->fds[i].revents = 0;
    int r = cc_poll_sys(p->fds, p->n, timeout_ms);
    if (r <= 0) return 0;
    if (p->fds[0].revents) {
        char buf[64];
#if defined(CC_OS_WINDOWS)
        while (recv((SOCKET)p->fds[0].fd, buf, (int)sizeof buf, 0) > 0) {
        }
#else
        while (read(p->fds[0].fd, buf, sizeof buf) > 0) {
        }
#endif
        wake_drained(&p->mu, &p->wake_pending);
    }
    int k = 0;
    for (int i = 1; i < p->n && k < cap; i++) {
        short e = p->fds[i].revents;
        if (!e) continue;
        ev[k].tag = p->tags[i];
        ev[k].events = ((e & (CC_PIN | POLLHUP | POLLERR | POLLNVAL)) ? CC_POLL_IN : 0) | ((e & CC_POUT) ? CC_POLL_OUT : 0) |
                       ((e & (POLLERR | POLLHUP | POLLNVAL)) ? CC_POLL_ERR : 0);
        k++;
    }
    return k;
}

void cc_poller_wake(cc_poller *p) {
    if (wake_claim(&p->mu, &p->wake_pending)) {
        char one = 1;
#if defined(CC_OS_WINDOWS)
        (void)send((SOCKET)p->wr, &one, 1, 0);
#else
        ssize_t w = write(p->wr, &one, 1);
        (void)w;
#endif
    }
}
#endif
