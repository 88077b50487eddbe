/* Run tokens: only tokens minted with the key verify; minted ones round-trip. */
#include <stdio.h>
#include "fuzz_util.h"
#include "token.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    cc_token_key k;
    memset(k.secret, 7, sizeof k.secret);
    char *s = fz_str(d, n);
    int64_t hold, acct, exp;
    cc_error e;
    if (cc_token_verify(&k, s, 1000, &hold, &acct, &exp, &e) == CC_OK) {
        char again[CC_TOKEN_BYTES_MAX + 1];
        FZ_CHECK(cc_token_mint(&k, hold, acct, exp, again, sizeof again, &e) == CC_OK);
        FZ_CHECK(strcmp(again, s) == 0); /* anything else verifying would be a forgery */
    }
    if (n >= 24) {
        int64_t h, a, x;
        memcpy(&h, d, 8); memcpy(&a, d + 8, 8); memcpy(&x, d + 16, 8);
        char tok[CC_TOKEN_BYTES_MAX + 1];
        if (cc_token_mint(&k, h, a, x, tok, sizeof tok, &e) == CC_OK && x > 1000) {
            FZ_CHECK(cc_token_verify(&k, tok, 1000, &hold, &acct, &exp, &e) == CC_OK);
            FZ_CHECK(hold == h && acct == a && exp == x);
        }
    }
    free(s);
    return 0;
}
