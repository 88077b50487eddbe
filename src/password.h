/*
** password.h — password hashing with scrypt (OpenSSL EVP_PBE_scrypt).
**
** Contract:
**   - Encoded form: "scrypt$<log2 N>$<r>$<p>$<salt hex>$<key hex>", 16-byte
**     random salt, 32-byte key. Parameters are read back from the string, so
**     stronger settings later still verify old hashes.
**   - Default cost N=2^15, r=8, p=1: 32 MiB of memory and tens of ms per
**     check (memory-hard, as OWASP recommends for scrypt).
**   - The one password rule (cc_password_check, used for every new password):
**     valid UTF-8, at least CC_PASSWORD_CHARS_MIN characters (code points),
**     at most CC_PASSWORD_BYTES_MAX bytes, not only spaces, no control
**     characters. Verifying never fails on a password that breaks the rule: it
**     just does not match. Comparison is constant time.
**   - Both functions block for the KDF: callers release the GIL.
*/
#ifndef CC_PASSWORD_H
#define CC_PASSWORD_H

#include "cc_common.h"

#define CC_PASSWORD_CHARS_MIN 8
#define CC_PASSWORD_BYTES_MAX 1024
#define CC_PASSWORD_HASH_BYTES_MAX 200
#define CC_SCRYPT_LOG2N_DEFAULT 15
#define CC_SCRYPT_LOG2N_MAX 20      /* 1 GiB at r=8: refuse anything costlier */

cc_rc cc_password_check(const char *password, cc_error *err);
cc_rc cc_password_hash(const char *password, int log2n, char *out, size_t out_bytes, cc_error *err);
/* *ok = 1 when the password matches. A malformed hash is CC_ERR_INVALID. */
cc_rc cc_password_verify(const char *password, const char *encoded, int *ok, cc_error *err);

#endif
