/*
** invite.c — invite links: HMAC-SHA256 over expiry, nonce and email. See invite.h.
*/
#include "invite.h"
#include "auth.h"   /* cc_email_valid */

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>

static const char PREFIX[] = "cci1.";
#define NONCE_BYTES 16

static int mac_hex(const unsigned char key[CC_INVITE_KEY_BYTES], const char *msg, size_t len, char out[65]) {
    unsigned char mac[32];
    unsigned int mlen = 0;
    if (!HMAC(EVP_sha256(), key, CC_INVITE_KEY_BYTES, (const unsigned char *)msg, len, mac, &mlen) || mlen != 32)
        return -1;
    cc_hex_encode(mac, 32, out);
    return 0;
}

cc_rc cc_invite_mint(const unsigned char key[CC_INVITE_KEY_BYTES], const char *email, int64_t now_ms,
                     int64_t ttl_ms, char *out, size_t out_bytes, cc_error *err) {
    if (!email || !cc_email_valid(email)) return cc_fail(err, CC_ERR_INVALID, "email", "not a valid email address");
    size_t elen = strlen(email);
    CC_ASSERT(elen <= CC_EMAIL_BYTES_MAX);
    if (ttl_ms < 1 || ttl_ms > CC_INVITE_TTL_MS_MAX)
        return cc_fail(err, CC_ERR_INVALID, "ttl_ms", "an invite lives 1 ms to 30 days");
    if (now_ms <= 0) return cc_fail(err, CC_ERR_INVALID, "now_ms", "now_ms must be positive");
    unsigned char nonce[NONCE_BYTES];
    if (RAND_bytes(nonce, sizeof nonce) != 1)
        return cc_fail(err, CC_ERR_STORAGE, "", "no randomness available for an invite");
    char nonce_hex[2 * NONCE_BYTES + 1], email_hex[2 * CC_EMAIL_BYTES_MAX + 1];
    cc_hex_encode(nonce, sizeof nonce, nonce_hex);
    cc_hex_encode((const unsigned char *)email, elen, email_hex);
    char body[CC_INVITE_BYTES_MAX + 1];
    int n = snprintf(body, sizeof body, "%s%lld.%s.%s", PREFIX, (long long)(now_ms + ttl_ms), nonce_hex, email_hex);
    CC_ASSERT(n > 0 && (size_t)n < sizeof body);
    char mac[65];
    if (mac_hex(key, body, (size_t)n, mac) != 0) return cc_fail(err, CC_ERR_STORAGE, "", "HMAC failed");
    int m = snprintf(out, out_bytes, "%s.%s", body, mac);
    if (m < 0 || (size_t)m >= out_bytes) return cc_fail(err, CC_ERR_INVALID, "out", "invite buffer too small");
    CC_ASSERT((size_t)m <= CC_INVITE_BYTES_MAX);
    return CC_OK;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

#define BAD(msg) cc_fail(err, CC_ERR_INVALID, "invite", "%s", msg)
#define NOT_VALID "This invite link is not valid: it may have been cut short or changed. Ask the operator for a new one."

cc_rc cc_invite_verify(const unsigned char key[CC_INVITE_KEY_BYTES], const char *invite, int64_t now_ms,
                       char *email_out, size_t email_bytes, int64_t *expires_ms, cc_error *err) {
    if (!invite) return BAD(NOT_VALID);
    size_t len = strnlen(invite, CC_INVITE_BYTES_MAX + 1);
    if (len > CC_INVITE_BYTES_MAX || strncmp(invite, PREFIX, sizeof PREFIX - 1) != 0) return BAD(NOT_VALID);
    /* expiry . nonce . email . mac */
    const char *f[5];
    int nf = 0;
    f[nf++] = invite + sizeof PREFIX - 1;
    for (const char *p = f[0]; p < invite + len && nf < 5; p++)
        if (*p == '.') f[nf++] = p + 1;
    if (nf != 4) return BAD(NOT_VALID);
    const char *mac = f[3];
    if (invite + len - mac != 64 || f[2] - f[1] - 1 != 2 * NONCE_BYTES) return BAD(NOT_VALID);
    int64_t exp = 0;
    const char *p = f[0];
    if (f[1] - 1 - p < 1 || f[1] - 1 - p > 19) return BAD(NOT_VALID);
    for (; p < f[1] - 1; p++) {
        if (*p < '0' || *p > '9' || exp > (INT64_MAX - 9) / 10) return BAD(NOT_VALID);
        exp = exp * 10 + (*p - '0');
    }
    size_t ehex = (size_t)(mac - 1 - f[2]);
    if (ehex == 0 || ehex % 2 || ehex / 2 > CC_EMAIL_BYTES_MAX || ehex / 2 >= email_bytes) return BAD(NOT_VALID);
    char want[65];
    if (mac_hex(key, invite, (size_t)(mac - 1 - invite), want) != 0)
        return cc_fail(err, CC_ERR_STORAGE, "", "HMAC failed");
    if (CRYPTO_memcmp(want, mac, 64) != 0) return BAD(NOT_VALID);
    for (size_t i = 0; i < ehex / 2; i++) {
        int hi = hexval(f[2][2 * i]), lo = hexval(f[2][2 * i + 1]);
        if (hi < 0 || lo < 0) return BAD(NOT_VALID);
        email_out[i] = (char)(hi * 16 + lo);
    }
    email_out[ehex / 2] = '\0';
    *expires_ms = exp;
    if (now_ms >= exp)
        return cc_fail(err, CC_ERR_STATE, "invite", "This invite link has expired. Ask the operator for a new one.");
    return CC_OK;
}
