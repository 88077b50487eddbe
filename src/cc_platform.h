/*
** cc_platform.h — every platform difference of the C core, in one place.
**
** Contract: the core is C11 plus the few things below; each has its
** portable spelling here, so that no other file tests a compiler or an OS.
**   - checked int64 arithmetic (cc_add/sub/mul_i64 in cc_common.h): the GCC/
**     Clang builtins, or plain C range checks elsewhere;
**   - a 128-bit integer (CC_I128) for exact money products (money.c,
**     ledger.c): GCC and Clang on 64-bit targets have __int128; a compiler
**     without it stops the build here with that sentence (MSVC: build with
**     clang-cl, or mingw-w64);
**   - case-insensitive compares (cc_strcasecmp/cc_strncasecmp): <strings.h>
**     on POSIX and mingw-w64, _stricmp/_strnicmp on MSVC's C runtime;
**   - threads: POSIX threads (<pthread.h>; mingw-w64 ships winpthreads);
**     MSVC without a pthreads library stops the build here;
**   - printf's %zu/%lld on mingw-w64: its C99 stdio (__USE_MINGW_ANSI_STDIO,
**     set by the build) instead of the old msvcrt's, and format checks
**     against that (CC_PRINTF_LIKE).
** Checked in CI: Linux gcc (every build), mingw-w64 gcc (scripts/test compiles
** every core file that needs no Python); macOS clang and MSVC only in the
** release workflow.
*/
#ifndef CC_PLATFORM_H
#define CC_PLATFORM_H

#include <stdint.h>
#include <string.h>

/* ---- printf-style format checking (mingw-w64: C99 formats such as %zu) */
#if defined(__MINGW32__)
#define CC_PRINTF_LIKE(fmt, args) __attribute__((format(gnu_printf, fmt, args)))
#elif defined(__GNUC__) || defined(__clang__)
#define CC_PRINTF_LIKE(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define CC_PRINTF_LIKE(fmt, args)
#endif

/* ---- checked arithmetic */
#if defined(__GNUC__) || defined(__clang__)
#define CC_ADD_OVERFLOW(a, b, out) __builtin_add_overflow(a, b, out)
#define CC_SUB_OVERFLOW(a, b, out) __builtin_sub_overflow(a, b, out)
#define CC_MUL_OVERFLOW(a, b, out) __builtin_mul_overflow(a, b, out)
#else
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
#define CC_ADD_OVERFLOW(a, b, out) cc_add_overflow_i64_(a, b, out)
#define CC_SUB_OVERFLOW(a, b, out) cc_sub_overflow_i64_(a, b, out)
#define CC_MUL_OVERFLOW(a, b, out) cc_mul_overflow_i64_(a, b, out)
#endif

/* ---- 128-bit integers for exact money products */
#if defined(__SIZEOF_INT128__)
typedef __int128 CC_I128;
#else
#error "comfy-credits needs a compiler with a 128-bit integer (__int128): gcc or clang (clang-cl on Windows)"
#endif

/* ---- case-insensitive compares */
#if defined(_MSC_VER)
#define cc_strcasecmp _stricmp
#define cc_strncasecmp _strnicmp
#else
#include <strings.h>
#define cc_strcasecmp strcasecmp
#define cc_strncasecmp strncasecmp
#endif

/* ---- threads */
#if defined(_MSC_VER) && !defined(CC_HAVE_PTHREADS)
#error "comfy-credits needs POSIX threads: on Windows build with mingw-w64 (winpthreads) or define CC_HAVE_PTHREADS with pthreads4w"
#endif
#include <pthread.h>

#endif
