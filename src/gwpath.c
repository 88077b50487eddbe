/*
** gwpath.c — gateway path canonicalisation and allow-list. See gwpath.h.
*/
#include "gwpath.h"

#include <string.h>

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* RFC 3986 pchar without pct-encoded: unreserved / sub-delims / ":" / "@". */
static int plain(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    return c && strchr("-._~!$&'()*+,;=:@", c) != NULL;
}

static cc_rc refuse(cc_error *err, const char *why) {
    return cc_fail(err, CC_ERR_INVALID, "path", "only API-node calls (/proxy/..., /customers/storage) go through "
                   "the gateway: %s", why);
}

cc_rc cc_gw_path_canonical(const char *raw, size_t n, char *out, size_t cap, cc_error *err) {
    CC_ASSERT(out && cap > 0);
    out[0] = 0;
    if (!raw || n == 0 || raw[0] != '/') return refuse(err, "the path must start with '/'");
    if (n > CC_GW_PATH_BYTES_MAX || cap < n + 1) return refuse(err, "the path is too long");
    size_t o = 0, seg = 0; /* seg: where the current decoded segment starts in out */
    out[o++] = '/';
    seg = o;
    for (size_t i = 1; i <= n; i++) {
        if (i == n || raw[i] == '/') {
            size_t len = o - seg;
            if (len == 0 && i < n) return refuse(err, "empty path segment");
            if ((len == 1 && out[seg] == '.') || (len == 2 && out[seg] == '.' && out[seg + 1] == '.'))
                return refuse(err, "'.' and '..' segments are not allowed");
            if (i < n) {
                out[o++] = '/';
                seg = o;
            }
            continue;
        }
        unsigned char c = (unsigned char)raw[i];
        if (c == '%') {
            int hi = i + 2 < n ? hexval((unsigned char)raw[i + 1]) : -1;
            int lo = i + 2 < n ? hexval((unsigned char)raw[i + 2]) : -1;
            if (hi < 0 || lo < 0) return refuse(err, "bad percent-encoding");
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
        }
        if (!plain(c)) return refuse(err, "a path segment is not plain after decoding");
        out[o++] = (char)c;
    }
    out[o] = 0;
    CC_ASSERT(o <= n);
    if (!((o > 7 && strncmp(out, "/proxy/", 7) == 0) || strcmp(out, "/customers/storage") == 0))
        return refuse(err, "this path is not an API-node endpoint");
    return CC_OK;
}
