/*
** token.c — hold tokens: HMAC-SHA256 over the hold, account and expiry.
** See token.h.
*/
#include "token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>

static const char PREFIX[] = "cct1.";
#define NONCE_BYTES 16

cc_rc cc_token_key_random(cc_token_key *k, cc_error *err) {
    if (RAND_bytes(k->secret, sizeof k->secret) != 1)
        return cc_fail(err, CC_ERR_STORAGE, "", "no randomness available for the token key");
    return CC_OK;
}

static int mac_hex(const cc_token_key *k, const char *msg, size_t len, char out[65]) {
    unsigned char mac[32];
    unsigned int mlen = 0;
    if (!HMAC(EVP_sha256(), k->secret, (int)sizeof k->secret, (const unsigned char *)msg, len, mac, &mlen) ||
        mlen != 32)
        return -1;
    cc_hex_encode(mac, 32, out);
    return 0;
}

cc_rc cc_token_mint(const cc_token_key *k, int64_t hold_id, int64_t account_id, int64_t expires_ms, char *out,
                    size_t out_bytes, cc_error *err) {
    if (hold_id <= 0 || account_id <= 0 || expires_ms <= 0)
        return cc_fail(err, CC_ERR_INVALID, "hold_id", "token fields must be positive");
    unsigned char nonce[NONCE_BYTES];
    if (RAND_bytes(nonce, sizeof nonce) != 1)
        return cc_fail(err, CC_ERR_STORAGE, "", "no randomness available for a token");
    char nonce_hex[2 * NONCE_BYTES + 1];
    cc_hex_encode(nonce, sizeof nonce, nonce_hex);
    char body[CC_TOKEN_BYTES_MAX];
    int n = snprintf(body, sizeof body, "%s%lld.%lld.%lld.%s", PREFIX, (long long)hold_id, (long long)account_id,
                     (long long)expires_ms, nonce_hex);
    CC_ASSERT(n > 0 && (size_t)n < sizeof body);
    char mac[65];
    if (mac_hex(k, body, (size_t)n, mac) != 0) return cc_fail(err, CC_ERR_STORAGE, "", "HMAC failed");
    int m = snprintf(out, out_bytes, "%s.%s", body, mac);
    if (m < 0 || (size_t)m >= out_bytes) return cc_fail(err, CC_ERR_INVALID, "out", "token buffer too small");
    return CC_OK;
}

/* Parses a positive decimal int64 from [p, end); returns -1 on anything else. */
static int parse_pos(const char *p, const char *end, int64_t *out) {
    if (p >= end || end - p > 19) return -1;
    int64_t v = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9') return -1;
        if (v > (INT64_MAX - (*p - '0')) / 10) return -1;
        v = v * 10 + (*p - '0');
    }
    if (v <= 0) return -1;
    *out = v;
    return 0;
}

int64_t cc_token_hold_of(const char *token) {
    if (!token || strncmp(token, PREFIX, sizeof PREFIX - 1) != 0) return 0;
    const char *p = token + sizeof PREFIX - 1;
    const char *dot = p;
    while (*dot && *dot != '.' && dot - p < 20) dot++;
    int64_t h;
    if (*dot != '.' || parse_pos(p, dot, &h)) return 0;
    return h;
}

int cc_token_same(const char *a, const char *b) {
    size_t bn = strlen(b);
    size_t an = strnlen(a, CC_TOKEN_BYTES_MAX + 1);
    if (an != bn || bn == 0) return 0;
    return CRYPTO_memcmp(a, b, bn) == 0; /* constant time, as invite.c, password.c and stripe.c compare */
}

cc_rc cc_token_verify(const cc_token_key *k, const char *token, int64_t now_ms, int64_t *hold_id,
                      int64_t *account_id, int64_t *expires_ms, cc_error *err) {
    if (!token) return cc_fail(err, CC_ERR_INVALID, "token", "no hold token");
    size_t len = strnlen(token, CC_TOKEN_BYTES_MAX + 1);
    if (len > CC_TOKEN_BYTES_MAX || strncmp(token, PREFIX, sizeof PREFIX - 1) != 0)
        return cc_fail(err, CC_ERR_INVALID, "token", "not a comfy-credits hold token");
    /* Split into hold . account . expiry . nonce . mac */
    const char *f[6];
    int nf = 0;
    f[nf++] = token + sizeof PREFIX - 1;
    for (const char *p = f[0]; p < token + len && nf < 6; p++)
        if (*p == '.') f[nf++] = p + 1;
    if (nf != 5) return cc_fail(err, CC_ERR_INVALID, "token", "malformed hold token");
    const char *mac = f[4];
    size_t body_len = (size_t)(mac - 1 - token);
    if (token + len - mac != 64 || f[4] - f[3] - 1 != 2 * NONCE_BYTES)
        return cc_fail(err, CC_ERR_INVALID, "token", "malformed hold token");
    int64_t h, a, e;
    if (parse_pos(f[0], f[1] - 1, &h) || parse_pos(f[1], f[2] - 1, &a) || parse_pos(f[2], f[3] - 1, &e))
        return cc_fail(err, CC_ERR_INVALID, "token", "malformed hold token");
    char want[65];
    if (mac_hex(k, token, body_len, want) != 0) return cc_fail(err, CC_ERR_STORAGE, "", "HMAC failed");
    if (CRYPTO_memcmp(want, mac, 64) != 0)
        return cc_fail(err, CC_ERR_INVALID, "token", "hold token signature does not match");
    if (now_ms >= e) return cc_fail(err, CC_ERR_STATE, "token", "hold token expired");
    *hold_id = h;
    *account_id = a;
    *expires_ms = e;
    return CC_OK;
}
