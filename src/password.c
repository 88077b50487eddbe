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

static cc_rc check_password(const char *pw, cc_error *err) {
    size_t n = pw ? strnlen(pw, CC_PASSWORD_BYTES_MAX + 1) : 0;
    if (n < CC_PASSWORD_BYTES_MIN)
        return cc_fail(err, CC_ERR_INVALID, "password", "the password must have at least %d characters",
                       CC_PASSWORD_BYTES_MIN);
    if (n > CC_PASSWORD_BYTES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "password", "the password is longer than %d bytes", CC_PASSWORD_BYTES_MAX);
    return CC_OK;
}

static int derive(const char *pw, const unsigned char *salt, int log2n, int r, int p, unsigned char *key) {
    uint64_t N = (uint64_t)1 << log2n;
    /* maxmem: 128 * r * (N + p + 2) bytes, with headroom. */
    uint64_t maxmem = 128ull * (uint64_t)r * (N + (uint64_t)p + 2) + (1u << 20);
    return EVP_PBE_scrypt(pw, strlen(pw), salt, SALT_BYTES, N, (uint64_t)r, (uint64_t)p, maxmem, key, KEY_BYTES);
}

cc_rc cc_password_hash(const char *password, int log2n, char *out, size_t out_bytes, cc_error *err) {
    cc_rc rc = check_password(password, err);
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
    cc_rc rc = check_password(password, err);
    if (rc == CC_ERR_INVALID) return CC_OK; /* cannot match any stored password */
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
