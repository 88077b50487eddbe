/*
** token.h — short-lived hold tokens for the metering gateway.
**
** Contract:
**   - A token names one hold of one account and an expiry:
**       "cct1.<hold_id>.<account_id>.<expires_ms>.<nonce>.<mac>"
**     mac = HMAC-SHA256(secret, everything before ".<mac>") in lower-case hex.
**   - The secret is 32 random bytes made at start-up and kept only in memory:
**     a token is useless after a restart, after its expiry, and (checked by
**     the caller against the ledger) once its hold is resolved.
**   - cc_token_verify() compares MACs in constant time and refuses malformed,
**     forged, or expired tokens with CC_ERR_INVALID / CC_ERR_STATE; it never
**     reads past CC_TOKEN_BYTES_MAX bytes of input.
*/
#ifndef CC_TOKEN_H
#define CC_TOKEN_H

#include "cc_common.h"

#define CC_TOKEN_SECRET_BYTES 32
#define CC_TOKEN_BYTES_MAX 160       /* fits "cct1." + 4 x 20 digits + 32 hex + 64 hex + dots */

typedef struct cc_token_key {
    unsigned char secret[CC_TOKEN_SECRET_BYTES];
} cc_token_key;

/* Fills the key from the OS's random source. */
cc_rc cc_token_key_random(cc_token_key *k, cc_error *err);

cc_rc cc_token_mint(const cc_token_key *k, int64_t hold_id, int64_t account_id, int64_t expires_ms,
                    char *out, size_t out_bytes, cc_error *err);

/* The hold id a well-formed token names, WITHOUT checking its MAC (0 when it
** is malformed): only to find what to compare the token with. */
int64_t cc_token_hold_of(const char *token);

/* 1 when a and b are the same token: constant-time over b's length (b is the
** caller's known token, a the presented one; both NUL-terminated, a is read
** at most CC_TOKEN_BYTES_MAX + 1 bytes). */
int cc_token_same(const char *a, const char *b);

/* On success fills hold_id, account_id, expires_ms. now_ms: current time. */
cc_rc cc_token_verify(const cc_token_key *k, const char *token, int64_t now_ms, int64_t *hold_id,
                      int64_t *account_id, int64_t *expires_ms, cc_error *err);

#endif
