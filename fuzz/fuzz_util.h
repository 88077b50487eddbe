/* fuzz_util.h — helpers shared by the libFuzzer harnesses (see scripts/fuzz). */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A NUL-terminated copy of the input (the parsers take C strings). */
static inline char *fz_str(const uint8_t *d, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, d, n);
    s[n] = 0;
    return s;
}

/* Splits the input at the first 0xff byte: a and b are NUL-terminated copies. */
static inline void fz_split(const uint8_t *d, size_t n, char **a, char **b) {
    const uint8_t *cut = memchr(d, 0xff, n);
    size_t na = cut ? (size_t)(cut - d) : n;
    *a = fz_str(d, na);
    *b = cut ? fz_str(cut + 1, n - na - 1) : fz_str((const uint8_t *)"", 0);
}

#define FZ_CHECK(cond) do { if (!(cond)) { fprintf(stderr, "property failed: %s\n", #cond); abort(); } } while (0)
#endif
