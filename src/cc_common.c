/*
** cc_common.c — error helpers and the clock. See cc_common.h.
*/
#include "cc_common.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

const char *cc_rc_name(cc_rc rc) {
    switch (rc) {
    case CC_OK: return "ok";
    case CC_ERR_INVALID: return "invalid_argument";
    case CC_ERR_NOT_FOUND: return "not_found";
    case CC_ERR_INSUFFICIENT: return "insufficient_credits";
    case CC_ERR_CONFLICT: return "idempotency_conflict";
    case CC_ERR_STATE: return "invalid_state";
    case CC_ERR_STORAGE: return "storage_error";
    case CC_ERR_NOMEM: return "out_of_memory";
    case CC_ERR_LIMIT: return "limit_exceeded";
    case CC_ERR_EXISTS: return "already_exists";
    }
    return "unknown_error";
}

cc_rc cc_fail(cc_error *err, cc_rc rc, const char *field, const char *fmt, ...) {
    if (err) {
        err->rc = rc;
        snprintf(err->field, sizeof err->field, "%s", field ? field : "");
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return rc;
}

void cc_error_clear(cc_error *err) {
    if (err) {
        err->rc = CC_OK;
        err->field[0] = 0;
        err->message[0] = 0;
    }
}

void cc_hex_encode(const unsigned char *in, size_t n, char *out) {
    static const char H[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = H[in[i] >> 4];
        out[2 * i + 1] = H[in[i] & 15];
    }
    out[2 * n] = 0;
}

int64_t cc_now_ms(void) {
    return cc_realtime_ms();
}

cc_rc cc_strdup_checked(const char *s, size_t max_bytes, const char *field,
                        char **out, cc_error *err) {
    *out = NULL;
    if (!s) return CC_OK;
    size_t n = strnlen(s, max_bytes + 1);
    if (n > max_bytes)
        return cc_fail(err, CC_ERR_INVALID, field, "%s is longer than %zu bytes",
                       field, max_bytes);
    char *p = malloc(n + 1);
    if (!p) return cc_fail(err, CC_ERR_NOMEM, field, "out of memory");
    memcpy(p, s, n);
    p[n] = 0;
    *out = p;
    return CC_OK;
}
