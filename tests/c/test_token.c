/* test_token.c — hold tokens: round trip, forgery, tampering, expiry. */
#include "ctest.h"
#include "token.h"

static void roundtrip(void) {
    cc_token_key k;
    cc_error e;
    char t[CC_TOKEN_BYTES_MAX + 1];
    CHECK(cc_token_key_random(&k, &e) == CC_OK);
    CHECK(cc_token_mint(&k, 42, 7, 5000, t, sizeof t, &e) == CC_OK);
    int64_t h = 0, a = 0, x = 0;
    CHECK(cc_token_verify(&k, t, 4999, &h, &a, &x, &e) == CC_OK);
    CHECK_EQ_I64(h, 42);
    CHECK_EQ_I64(a, 7);
    CHECK_EQ_I64(x, 5000);
    CHECK(cc_token_verify(&k, t, 5000, &h, &a, &x, &e) == CC_ERR_STATE); /* expired */
    char t2[CC_TOKEN_BYTES_MAX + 1];
    CHECK(cc_token_mint(&k, 42, 7, 5000, t2, sizeof t2, &e) == CC_OK);
    CHECK(strcmp(t, t2) != 0); /* fresh nonce each time */
}

static void forgery(void) {
    cc_token_key k, other;
    cc_error e;
    char t[CC_TOKEN_BYTES_MAX + 1];
    int64_t h, a, x;
    CHECK(cc_token_key_random(&k, &e) == CC_OK);
    CHECK(cc_token_key_random(&other, &e) == CC_OK);
    CHECK(cc_token_mint(&k, 42, 7, 5000, t, sizeof t, &e) == CC_OK);
    CHECK(cc_token_verify(&other, t, 1, &h, &a, &x, &e) == CC_ERR_INVALID); /* another server's key */
    /* Change the hold id: 42 -> 43. */
    char bad[CC_TOKEN_BYTES_MAX + 1];
    strcpy(bad, t);
    char *p = strstr(bad, ".42.");
    CHECK(p != NULL);
    p[2] = '3';
    CHECK(cc_token_verify(&k, bad, 1, &h, &a, &x, &e) == CC_ERR_INVALID);
    CHECK(strstr(e.message, "signature") != NULL);
    /* Flip one MAC digit. */
    strcpy(bad, t);
    size_t n = strlen(bad);
    bad[n - 1] = bad[n - 1] == '0' ? '1' : '0';
    CHECK(cc_token_verify(&k, bad, 1, &h, &a, &x, &e) == CC_ERR_INVALID);
    const char *junk[] = {"", "cct1.", "cct1.1.2.3.4.5", "Bearer x", "cct1.-1.2.3.00000000000000000000000000000000.x",
                          "cct1.99999999999999999999.1.1.00000000000000000000000000000000."
                          "0000000000000000000000000000000000000000000000000000000000000000", NULL};
    for (int i = 0; junk[i]; i++) CHECK(cc_token_verify(&k, junk[i], 1, &h, &a, &x, &e) == CC_ERR_INVALID);
    CHECK(cc_token_verify(&k, NULL, 1, &h, &a, &x, &e) == CC_ERR_INVALID);
    char longtok[400];
    memset(longtok, 'a', sizeof longtok - 1);
    longtok[sizeof longtok - 1] = 0;
    memcpy(longtok, "cct1.", 5);
    CHECK(cc_token_verify(&k, longtok, 1, &h, &a, &x, &e) == CC_ERR_INVALID);
    CHECK(cc_token_mint(&k, 0, 7, 5000, t, sizeof t, &e) == CC_ERR_INVALID);
    CHECK(cc_token_mint(&k, 1, 7, 5000, t, 10, &e) == CC_ERR_INVALID);
}

/* cc_token_same (the run token check on every gateway call, eight bytes at a time): equal strings
** only; a difference in any byte (in the 8-byte words and in the tail) or any length differs. */
static void token_same(void) {
    char a[CC_TOKEN_BYTES_MAX + 8], b[CC_TOKEN_BYTES_MAX + 8];
    for (size_t n = 1; n <= 131; n++) {
        for (size_t i = 0; i < n; i++) a[i] = (char)('!' + (i * 7) % 90);
        a[n] = 0;
        memcpy(b, a, n + 1);
        CHECK(cc_token_same(a, b));
        for (size_t i = 0; i < n; i++) {
            for (int bit = 0; bit < 8; bit += 7) { /* the lowest and the highest bit of the byte */
                b[i] = (char)(a[i] ^ (1 << bit));
                if (cc_token_same(a, b)) {
                    CHECK(!"a changed byte must differ");
                    fprintf(stderr, "  n=%zu i=%zu bit=%d\n", n, i, bit);
                }
                b[i] = a[i];
            }
        }
        b[n - 1] = 0; /* b one shorter */
        CHECK(!cc_token_same(a, b));
        CHECK(!cc_token_same(b, a));
    }
    CHECK(!cc_token_same("", ""));
    CHECK(!cc_token_same("x", ""));
    CHECK(!cc_token_same("", "x"));
}

void suite_token(void) {
    RUN(roundtrip);
    RUN(forgery);
    RUN(token_same);
}
