/*
** cc_common.h — shared vocabulary of the comfy-credits C core.
**
** Contract:
**   - Every money amount is an int64_t count of micro-credits (1 credit =
**     CC_MICRO = 1,000,000). No floating point on any money path.
**   - Every fallible function returns a cc_rc and, when given a cc_error*,
**     fills it with a human-readable message and, where a single input is at
**     fault, the name of that input in `field`.
**   - Limits are named with their unit last (TIGER_STYLE): `_max`, `_ms`,
**     `_bytes`. A limit exists so that no input can make the core allocate,
**     loop or store without bound.
**   - CC_ASSERT is always on (also in release builds): an invariant that fails
**     means the ledger would otherwise corrupt money, so we stop.
*/
#ifndef CC_COMMON_H
#define CC_COMMON_H

#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "cc_platform.h"

#define CC_MICRO INT64_C(1000000)

/* Largest amount accepted for any single operation: 10^15 micro-credits
** (one billion credits, about 4.7 million USD at 211 credits/USD). Small
** enough that sums of many such amounts stay far below INT64_MAX, so balance
** arithmetic cannot overflow before the overflow checks even run. */
#define CC_AMOUNT_MAX INT64_C(1000000000000000)
/* A balance may never exceed this (1000 x the single-operation maximum). */
#define CC_BALANCE_MAX (CC_AMOUNT_MAX * 1000)

#define CC_KEY_BYTES_MAX 255      /* idempotency keys, like Stripe's limit */
#define CC_TEXT_BYTES_MAX 512     /* names, notes, model names, references */
#define CC_EMAIL_BYTES_MAX 254    /* RFC 5321 path limit */
#define CC_CURRENCY_BYTES_MAX 3   /* ISO 4217 alphabetic code */

typedef enum cc_rc {
    CC_OK = 0,
    CC_ERR_INVALID = 1,        /* bad argument; cc_error.field names it */
    CC_ERR_NOT_FOUND = 2,      /* unknown account, hold, ... */
    CC_ERR_INSUFFICIENT = 3,   /* not enough available credits */
    CC_ERR_CONFLICT = 4,       /* idempotency key reused with other fields */
    CC_ERR_STATE = 5,          /* hold already resolved, account disabled */
    CC_ERR_STORAGE = 6,        /* the database failed; nothing was written */
    CC_ERR_NOMEM = 7,
    CC_ERR_LIMIT = 8,          /* a configured limit would be exceeded */
    CC_ERR_EXISTS = 9          /* unique value (e.g. email) already taken */
} cc_rc;

typedef struct cc_error {
    cc_rc rc;
    char field[48];            /* offending input, or "" */
    char message[400];
} cc_error;

const char *cc_rc_name(cc_rc rc);

/* Sets err (if non-NULL) and returns rc. Format is printf-style. */
cc_rc cc_fail(cc_error *err, cc_rc rc, const char *field, const char *fmt, ...) CC_PRINTF_LIKE(4, 5);
void cc_error_clear(cc_error *err);

#define CC_ASSERT(cond)                                                        \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "comfy-credits: invariant failed: %s (%s:%d)\n",   \
                    #cond, __FILE__, __LINE__);                                \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* Checked arithmetic: return 0 on success, 1 on overflow. */
static inline int cc_add_i64(int64_t a, int64_t b, int64_t *out) {
    return CC_ADD_OVERFLOW(a, b, out);
}
static inline int cc_sub_i64(int64_t a, int64_t b, int64_t *out) {
    return CC_SUB_OVERFLOW(a, b, out);
}
static inline int cc_mul_i64(int64_t a, int64_t b, int64_t *out) {
    return CC_MUL_OVERFLOW(a, b, out);
}

/* Lower-case hex of n bytes into out (2n + 1 bytes, NUL-terminated). */
void cc_hex_encode(const unsigned char *in, size_t n, char *out);

/* Wall clock in milliseconds since the Unix epoch. */
int64_t cc_now_ms(void);

/* Copies a NUL-terminated string of at most max_bytes into a fresh buffer.
** NULL in gives NULL out with CC_OK. */
cc_rc cc_strdup_checked(const char *s, size_t max_bytes, const char *field,
                        char **out, cc_error *err);

#endif
