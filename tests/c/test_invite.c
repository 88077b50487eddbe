/* test_invite.c — invite links (invite.h): round trip, expiry, forgery, malformed input. */
#include "ctest.h"
#include "invite.h"

static const unsigned char KEY[CC_INVITE_KEY_BYTES] = "0123456789abcdef0123456789abcdef";
static const unsigned char OTHER[CC_INVITE_KEY_BYTES] = "0123456789abcdef0123456789abcdeX";

static void roundtrip(void) {
    char inv[CC_INVITE_BYTES_MAX + 1], email[CC_EMAIL_BYTES_MAX + 1];
    int64_t exp = 0;
    cc_error e;
    CHECK(cc_invite_mint(KEY, "new.person+x@example.com", 1000, 60000, inv, sizeof inv, &e) == CC_OK);
    CHECK(strncmp(inv, "cci1.61000.", 11) == 0);
    CHECK(cc_invite_verify(KEY, inv, 1001, email, sizeof email, &exp, &e) == CC_OK);
    CHECK_STR(email, "new.person+x@example.com");
    CHECK_EQ_I64(exp, 61000);
    /* Expired: a clear state error, expiry still reported. */
    CHECK(cc_invite_verify(KEY, inv, 61000, email, sizeof email, &exp, &e) == CC_ERR_STATE);
    CHECK_STR(e.field, "invite");
    CHECK(strstr(e.message, "expired") != NULL);
    /* Another server's key, a changed email, a cut link: not valid. */
    CHECK(cc_invite_verify(OTHER, inv, 1001, email, sizeof email, &exp, &e) == CC_ERR_INVALID);
    char forged[sizeof inv];
    memcpy(forged, inv, sizeof inv);
    char *em = strchr(strchr(strchr(forged, '.') + 1, '.') + 1, '.') + 1;  /* the email hex */
    em[0] = em[0] == '6' ? '7' : '6';
    CHECK(cc_invite_verify(KEY, forged, 1001, email, sizeof email, &exp, &e) == CC_ERR_INVALID);
    memcpy(forged, inv, sizeof inv);
    forged[5] = '9';  /* a later expiry */
    CHECK(cc_invite_verify(KEY, forged, 1001, email, sizeof email, &exp, &e) == CC_ERR_INVALID);
    memcpy(forged, inv, sizeof inv);
    forged[strlen(forged) - 3] = '\0';
    CHECK(cc_invite_verify(KEY, forged, 1001, email, sizeof email, &exp, &e) == CC_ERR_INVALID);
    CHECK(strstr(e.message, "not valid") != NULL);
    /* Two invites for one email differ (nonce). */
    char inv2[sizeof inv];
    CHECK(cc_invite_mint(KEY, "new.person+x@example.com", 1000, 60000, inv2, sizeof inv2, &e) == CC_OK);
    CHECK(strcmp(inv, inv2) != 0);
}

static void bad_input(void) {
    char inv[CC_INVITE_BYTES_MAX + 1], email[CC_EMAIL_BYTES_MAX + 1];
    int64_t exp;
    cc_error e;
    CHECK(cc_invite_mint(KEY, "not an email", 1000, 60000, inv, sizeof inv, &e) == CC_ERR_INVALID);
    CHECK_STR(e.field, "email");
    CHECK(cc_invite_mint(KEY, "a@example.com", 1000, 0, inv, sizeof inv, &e) == CC_ERR_INVALID);
    CHECK_STR(e.field, "ttl_ms");
    CHECK(cc_invite_mint(KEY, "a@example.com", 1000, CC_INVITE_TTL_MS_MAX + 1, inv, sizeof inv, &e) == CC_ERR_INVALID);
    CHECK(cc_invite_mint(KEY, "a@example.com", 1000, 5, inv, 10, &e) == CC_ERR_INVALID);
    const char *bad[] = {"", "cci1.", "cci1....", "cct1.1.2.3.4.5", "cci1.x.00000000000000000000000000000000.61.",
                         "cci1.99999999999999999999.00000000000000000000000000000000.61."
                         "0000000000000000000000000000000000000000000000000000000000000000"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(cc_invite_verify(KEY, bad[i], 1, email, sizeof email, &exp, &e) == CC_ERR_INVALID);
    CHECK(cc_invite_verify(KEY, NULL, 1, email, sizeof email, &exp, &e) == CC_ERR_INVALID);
    /* Longer than any invite: refused without reading past the limit. */
    static char huge[CC_INVITE_BYTES_MAX + 100];
    memset(huge, 'a', sizeof huge - 1);
    memcpy(huge, "cci1.", 5);
    CHECK(cc_invite_verify(KEY, huge, 1, email, sizeof email, &exp, &e) == CC_ERR_INVALID);
}

void suite_invite(void) {
    RUN(roundtrip);
    RUN(bad_input);
}
