/* test_stripe.c — webhook signature vectors, session parsing, method rules. */
#include "ctest.h"
#include "stripe.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

/* Independent signer (one-shot HMAC), as Stripe computes it. */
static void sign(const char *secret, long long t, const char *body, char out[65]) {
    char msg[4096];
    int n = snprintf(msg, sizeof msg, "%lld.%s", t, body);
    unsigned char mac[32];
    unsigned int ml = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)msg, (size_t)n, mac, &ml);
    for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", mac[i]);
}

static const char *BODY = "{\"id\":\"evt_1\",\"type\":\"checkout.session.completed\",\"data\":{\"object\":"
                          "{\"id\":\"cs_test_a1\",\"object\":\"checkout.session\",\"status\":\"complete\","
                          "\"payment_status\":\"paid\",\"amount_total\":1000,\"currency\":\"usd\","
                          "\"client_reference_id\":\"7\",\"customer_email\":\"a@b.co\","
                          "\"metadata\":{\"credits_micro\":\"2110000000\",\"method\":\"card\"}}}}";

static void webhook_vectors(void) {
    const char *secret = "whsec_test_secret";
    long long now = 1800000000;
    char sig[65], other[65], hdr[400];
    cc_error e;
    sign(secret, now, BODY, sig);
    snprintf(hdr, sizeof hdr, "t=%lld,v1=%s", now, sig);
    CHECK(cc_stripe_webhook_verify(secret, hdr, BODY, strlen(BODY), now, 300, &e) == CC_OK);
    /* within tolerance either side; stale and future rejected */
    CHECK(cc_stripe_webhook_verify(secret, hdr, BODY, strlen(BODY), now + 300, 300, &e) == CC_OK);
    CHECK(cc_stripe_webhook_verify(secret, hdr, BODY, strlen(BODY), now + 301, 300, &e) == CC_ERR_STATE);
    CHECK(cc_stripe_webhook_verify(secret, hdr, BODY, strlen(BODY), now - 301, 300, &e) == CC_ERR_STATE);
    /* wrong secret */
    CHECK(cc_stripe_webhook_verify("whsec_other", hdr, BODY, strlen(BODY), now, 300, &e) == CC_ERR_INVALID);
    /* several v1 (rotation), the right one second; v0 ignored */
    sign("whsec_old", now, BODY, other);
    snprintf(hdr, sizeof hdr, "t=%lld,v0=%s,v1=%s,v1=%s", now, sig, other, sig);
    CHECK(cc_stripe_webhook_verify(secret, hdr, BODY, strlen(BODY), now, 300, &e) == CC_OK);
    /* only a v0 that matches is not enough */
    snprintf(hdr, sizeof hdr, "t=%lld,v0=%s", now, sig);
    CHECK(cc_stripe_webhook_verify(secret, hdr, BODY, strlen(BODY), now, 300, &e) == CC_ERR_INVALID);
    /* tampered body: one byte */
    char tampered[1024];
    snprintf(tampered, sizeof tampered, "%s", BODY);
    tampered[strlen(tampered) - 5] = '9';
    snprintf(hdr, sizeof hdr, "t=%lld,v1=%s", now, sig);
    CHECK(cc_stripe_webhook_verify(secret, hdr, tampered, strlen(tampered), now, 300, &e) == CC_ERR_INVALID);
    /* re-serialised JSON (spaces) is not the raw body */
    CHECK(cc_stripe_webhook_verify(secret, hdr, "{ }", 3, now, 300, &e) == CC_ERR_INVALID);
    /* malformed headers */
    const char *bad[] = {"", "t=abc,v1=00", "v1=zz", "t=1800000000", "garbage", NULL};
    for (int i = 0; bad[i]; i++)
        CHECK(cc_stripe_webhook_verify(secret, bad[i], BODY, strlen(BODY), now, 300, &e) == CC_ERR_INVALID);
    CHECK(cc_stripe_webhook_verify(secret, NULL, BODY, strlen(BODY), now, 300, &e) == CC_ERR_INVALID);
    CHECK(cc_stripe_webhook_verify("", hdr, BODY, strlen(BODY), now, 300, &e) == CC_ERR_INVALID);
}

static void parse_session(void) {
    cc_checkout_session s;
    cc_error e;
    CHECK(cc_stripe_session_parse(BODY, strlen(BODY), &s, &e) == CC_OK);
    CHECK_STR(s.id, "cs_test_a1");
    CHECK_STR(s.payment_status, "paid");
    CHECK_STR(s.currency, "usd");
    CHECK_EQ_I64(s.amount_total, 1000);
    CHECK_EQ_I64(s.account_id, 7);
    CHECK_EQ_I64(s.credits_micro, 2110000000);
    CHECK_STR(s.method, "card");
    CHECK(cc_stripe_session_parse("{\"object\":\"charge\"}", 19, &s, &e) == CC_ERR_INVALID);
    CHECK(cc_stripe_session_parse("nope", 4, &s, &e) == CC_ERR_INVALID);
    CHECK(cc_stripe_session_parse("", 0, &s, &e) == CC_ERR_INVALID);
}

static void method_rules(void) {
    CHECK(cc_stripe_methods_allowed("usd") == (CC_PAY_CARD | CC_PAY_WECHAT | CC_PAY_ALIPAY));
    CHECK(cc_stripe_methods_allowed("USD") == (CC_PAY_CARD | CC_PAY_WECHAT | CC_PAY_ALIPAY));
    CHECK(cc_stripe_methods_allowed("eur") == CC_PAY_CARD);
    CHECK(cc_stripe_methods_allowed("jpy") == CC_PAY_CARD);
    cc_stripe *s = NULL;
    cc_error e;
    CHECK(cc_stripe_open("https://api.stripe.com", "pk_live_x", 1000, &s, &e) == CC_ERR_INVALID);
    CHECK(cc_stripe_open("http://evil.example", "sk_test_x", 1000, &s, &e) == CC_ERR_INVALID);
    CHECK(cc_stripe_open("https://api.stripe.com", "sk_test_x", 1000, &s, &e) == CC_OK);
    cc_checkout_params p = {.currency = "eur", .amount_minor = 1000, .credits_micro = 1, .account_id = 1,
                            .customer_email = "a@b.co", .success_url = "http://127.0.0.1/ok",
                            .cancel_url = "http://127.0.0.1/no", .methods = CC_PAY_CARD | CC_PAY_WECHAT,
                            .idempotency_key = "k1"};
    cc_checkout_session out;
    /* refused before any network call: WeChat Pay in EUR */
    CHECK(cc_stripe_checkout_create(s, &p, &out, &e) == CC_ERR_INVALID);
    CHECK(strstr(e.message, "only offered when paying in USD") != NULL);
    p.methods = CC_PAY_CARD;
    p.idempotency_key = NULL;
    CHECK(cc_stripe_checkout_create(s, &p, &out, &e) == CC_ERR_INVALID);
    CHECK_STR(e.field, "idempotency_key");
    CHECK(cc_stripe_checkout_retrieve(s, "../v1/charges", &out, &e) == CC_ERR_INVALID);
    cc_stripe_close(s);
}

void suite_stripe(void) {
    RUN(webhook_vectors);
    RUN(parse_session);
    RUN(method_rules);
}
