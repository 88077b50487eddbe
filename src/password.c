/*
** password.c — scrypt password hashes. See password.h.
*/
#include "password.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

#define SALT_BYTES 16
#define KEY_BYTES 32
#define SCRYPT_R 8
#define SCRYPT_P 1

static int unhex(const char *s, size_t n, unsigned char *out) {
    for (size_t i = 0; i < n; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = s[2 * i + k];
            int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
            if (d < 0) return -1;
            v = v * 16 + d;
        }
        out[i] = (unsigned char)v;
    }
    return 0;
}

/* Length of the UTF-8 sequence starting at s (1..4), or 0 if it is not valid
** (overlong forms, surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_seq(const unsigned char *s, size_t left, uint32_t *cp) {
    unsigned c = s[0];
    size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || n > left) return 0;
    uint32_t v = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return n;
}

static int is_space(uint32_t cp) {
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200B) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000 || cp == 0xFEFF;
}

cc_rc cc_password_check(const char *pw, cc_error *err) {
    size_t n = pw ? strnlen(pw, CC_PASSWORD_BYTES_MAX + 1) : 0;
    if (n > CC_PASSWORD_BYTES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "password", "the password is longer than %d bytes", CC_PASSWORD_BYTES_MAX);
    size_t chars = 0, spaces = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_seq((const unsigned char *)pw + i, n - i, &cp);
        if (k == 0) return cc_fail(err, CC_ERR_INVALID, "password", "the password is not valid UTF-8 text");
        if (cp < 0x20 || cp == 0x7f) {
            if (!is_space(cp)) return cc_fail(err, CC_ERR_INVALID, "password", "the password contains a control character");
        }
        chars++;
        spaces += (size_t)is_space(cp);
        i += k;
    }
    if (chars < CC_PASSWORD_CHARS_MIN)
        return cc_fail(err, CC_ERR_INVALID, "password", "the password must have at least %d characters",
                       CC_PASSWORD_CHARS_MIN);
    if (spaces == chars) return cc_fail(err, CC_ERR_INVALID, "password", "the password cannot be only spaces");
    return CC_OK;
}



static int derive(const char *pw, const unsigned char *salt, int log2n, int r, int p, unsigned char *key) {
    uint64_t N = (uint64_t)1 << log2n;
    /* maxmem: 128 * r * (N + p + 2) bytes, with headroom. */
    uint64_t maxmem = 128ull * (uint64_t)r * (N + (uint64_t)p + 2) + (1u << 20);
    return EVP_PBE_scrypt(pw, strlen(pw), salt, SALT_BYTES, N, (uint64_t)r, (uint64_t)p, maxmem, key, KEY_BYTES);
}

cc_rc cc_password_hash(const char *password, int log2n, char *out, size_t out_bytes, cc_error *err) {
    cc_rc rc = cc_password_check(password, err);
    if (rc != CC_OK) return rc;
    if (log2n < 10 || log2n > CC_SCRYPT_LOG2N_MAX)
        return cc_fail(err, CC_ERR_INVALID, "log2n", "scrypt cost must be 10..%d", CC_SCRYPT_LOG2N_MAX);
    unsigned char salt[SALT_BYTES], key[KEY_BYTES];
    if (RAND_bytes(salt, sizeof salt) != 1) return cc_fail(err, CC_ERR_STORAGE, "", "no randomness available");
    if (derive(password, salt, log2n, SCRYPT_R, SCRYPT_P, key) != 1)
        return cc_fail(err, CC_ERR_NOMEM, "", "scrypt failed (not enough memory?)");
    char sh[2 * SALT_BYTES + 1], kh[2 * KEY_BYTES + 1];
    cc_hex_encode(salt, sizeof salt, sh);
    cc_hex_encode(key, sizeof key, kh);
    OPENSSL_cleanse(key, sizeof key);
    int n = snprintf(out, out_bytes, "scrypt$%d$%d$%d$%s$%s", log2n, SCRYPT_R, SCRYPT_P, sh, kh);
    if (n < 0 || (size_t)n >= out_bytes) return cc_fail(err, CC_ERR_INVALID, "out", "hash buffer too small");
    return CC_OK;
}

cc_rc cc_password_verify(const char *password, const char *enc, int *ok, cc_error *err) {
    *ok = 0;
    /* Only the size bound here: a password set under an older rule still verifies. */
    if (!password || !*password || strnlen(password, CC_PASSWORD_BYTES_MAX + 1) > CC_PASSWORD_BYTES_MAX)
        return CC_OK; /* cannot match any stored password */
    int log2n, r, p, used = 0;
    if (!enc || strnlen(enc, CC_PASSWORD_HASH_BYTES_MAX + 1) > CC_PASSWORD_HASH_BYTES_MAX ||
        sscanf(enc, "scrypt$%d$%d$%d$%n", &log2n, &r, &p, &used) != 3 || used == 0)
        return cc_fail(err, CC_ERR_INVALID, "hash", "malformed password hash");
    if (log2n < 10 || log2n > CC_SCRYPT_LOG2N_MAX || r < 1 || r > 32 || p < 1 || p > 16)
        return cc_fail(err, CC_ERR_INVALID, "hash", "password hash parameters out of range");
    const char *rest = enc + used;
    if (strlen(rest) != 2 * SALT_BYTES + 1 + 2 * KEY_BYTES || rest[2 * SALT_BYTES] != '$')
        return cc_fail(err, CC_ERR_INVALID, "hash", "malformed password hash");
    unsigned char salt[SALT_BYTES], want[KEY_BYTES], got[KEY_BYTES];
    if (unhex(rest, SALT_BYTES, salt) || unhex(rest + 2 * SALT_BYTES + 1, KEY_BYTES, want))
        return cc_fail(err, CC_ERR_INVALID, "hash", "malformed password hash");
    if (derive(password, salt, log2n, r, p, got) != 1)
        return cc_fail(err, CC_ERR_NOMEM, "", "scrypt failed (not enough memory?)");
    *ok = CRYPTO_memcmp(want, got, KEY_BYTES) == 0;
    OPENSSL_cleanse(got, sizeof got);
    return CC_OK;
}
