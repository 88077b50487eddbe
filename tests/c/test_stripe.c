/* test_stripe.c — webhook signature vectors, session parsing, method rules. */
#include "ctest.h"
#include "stripe.h"

#include <stdlib.h>

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
    CHECK_STR(s.methods_offered, "card");
    CHECK_STR(s.method_used, "");
    CHECK_STR(s.payment_intent, "");
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
    CHECK(cc_stripe_open("https://api.stripe.com", "pk_live_x", NULL, 1000, &s, &e) == CC_ERR_INVALID);
    CHECK(cc_stripe_open("http://evil.example", "sk_test_x", NULL, 1000, &s, &e) == CC_ERR_INVALID);
    CHECK(cc_stripe_open("https://api.stripe.com", "sk_test_x", NULL, 1000, &s, &e) == CC_OK);
    cc_checkout_params p = {.currency = "eur", .amount_minor = 1000, .credits_micro = 1, .account_id = 1, .rate_micro = 1,
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

static void api_version_pinned(void) {
    cc_stripe *s = NULL;
    cc_error e;
    CHECK(cc_stripe_open("https://api.stripe.com", "sk_test_x", NULL, 1000, &s, &e) == CC_OK);
    CHECK_STR(cc_stripe_api_version(s), CC_STRIPE_API_VERSION_DEFAULT);
    CHECK_STR(cc_stripe_api_version(s), "2026-10-28.endive");
    cc_stripe_close(s);
    CHECK(cc_stripe_open("https://api.stripe.com", "sk_test_x", "2024-06-20", 1000, &s, &e) == CC_OK);
    CHECK_STR(cc_stripe_api_version(s), "2024-06-20");
    cc_stripe_close(s);
    const char *bad[] = {"latest", "2024-6-20", "2024-06-20.", "2024-06-20.Acacia", "2024-06-20;x", "2024-06-20\r\nX: y",
                         "2024-06-20.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL};
    for (int i = 0; bad[i]; i++) {
        s = NULL;
        CHECK(cc_stripe_open("https://api.stripe.com", "sk_test_x", bad[i], 1000, &s, &e) == CC_ERR_INVALID);
        CHECK(s == NULL);
    }
}

static cc_checkout_params usd_params(void) {
    cc_checkout_params p = {.currency = "usd", .amount_minor = 1000, .credits_micro = 2110000000, .account_id = 7,
                            .rate_micro = 211000000, .customer_email = "a@b.co",
                            .success_url = "http://127.0.0.1/ok?s={CHECKOUT_SESSION_ID}",
                            .cancel_url = "http://127.0.0.1/no", .idempotency_key = "k1",
                            .methods = CC_PAY_CARD | CC_PAY_WECHAT | CC_PAY_ALIPAY};
    return p;
}

static void body_per_version(void) {
    cc_checkout_params p = usd_params();
    cc_error e;
    char *b = NULL;
    /* before endive: payment_method_types */
    CHECK(cc_stripe_checkout_body("2024-06-20", &p, &b, &e) == CC_OK);
    CHECK(b && strstr(b, "payment_method_types%5B0%5D=card&payment_method_types%5B1%5D=wechat_pay&"
                         "payment_method_types%5B2%5D=alipay") != NULL);
    CHECK(b && !strstr(b, "allowed_payment_method_types"));
    CHECK(b && strstr(b, "metadata%5Bcredits_micro%5D=2110000000") && strstr(b, "metadata%5Bamount_minor%5D=1000") &&
          strstr(b, "metadata%5Bcurrency%5D=usd") && strstr(b, "metadata%5Brate_micro%5D=211000000") &&
          strstr(b, "metadata%5Bmethod%5D=card%2Cwechat_pay%2Calipay"));
    CHECK(b && strstr(b, "payment_method_options%5Bwechat_pay%5D%5Bclient%5D=web"));
    free(b);
    /* the last version before endive still has it */
    CHECK(cc_stripe_checkout_body("2026-08-26.dahlia", &p, &b, &e) == CC_OK);
    CHECK(b && strstr(b, "&payment_method_types%5B0%5D=card") && !strstr(b, "allowed_payment_method_types"));
    free(b);
    /* endive and later: allowed_payment_method_types only */
    const char *endive[] = {"2026-09-30.endive", "2026-10-28.endive", "2027-01-01", NULL};
    for (int i = 0; endive[i]; i++) {
        CHECK(cc_stripe_checkout_body(endive[i], &p, &b, &e) == CC_OK);
        CHECK(b && strstr(b, "allowed_payment_method_types%5B0%5D=card&allowed_payment_method_types%5B1%5D=wechat_pay"));
        CHECK(b && !strstr(b, "&payment_method_types"));
        free(b);
    }
    p.methods = CC_PAY_ALIPAY;
    CHECK(cc_stripe_checkout_body("2026-10-28.endive", &p, &b, &e) == CC_OK);
    CHECK(b && strstr(b, "allowed_payment_method_types%5B0%5D=alipay") && !strstr(b, "wechat_pay"));
    free(b);
    CHECK(cc_stripe_checkout_body("nonsense", &p, &b, &e) == CC_ERR_INVALID && b == NULL);
    p.rate_micro = 0;
    CHECK(cc_stripe_checkout_body("2024-06-20", &p, &b, &e) == CC_ERR_INVALID && b == NULL);
    CHECK_STR(e.field, "rate_micro");
}

static void minimum_charge(void) {
    CHECK_EQ_I64(cc_stripe_min_charge_minor("usd"), 50);
    CHECK_EQ_I64(cc_stripe_min_charge_minor("EUR"), 50);
    CHECK_EQ_I64(cc_stripe_min_charge_minor("gbp"), 30);
    CHECK_EQ_I64(cc_stripe_min_charge_minor("jpy"), 50);      /* zero-decimal: yen */
    CHECK_EQ_I64(cc_stripe_min_charge_minor("hkd"), 400);
    CHECK_EQ_I64(cc_stripe_min_charge_minor("huf"), 17500);
    CHECK_EQ_I64(cc_stripe_min_charge_minor("krw"), 0);       /* none published */
    cc_checkout_params p = usd_params();
    cc_error e;
    char *b = NULL;
    p.amount_minor = 49;
    CHECK(cc_stripe_checkout_body("2024-06-20", &p, &b, &e) == CC_ERR_LIMIT && b == NULL);
    CHECK_STR(e.field, "amount_minor");
    CHECK(strstr(e.message, "minimum") != NULL);
    p.amount_minor = 50;
    p.credits_micro = 105500000;
    CHECK(cc_stripe_checkout_body("2024-06-20", &p, &b, &e) == CC_OK);
    free(b);
    p.currency = "jpy";
    p.methods = CC_PAY_CARD;
    p.amount_minor = 49;
    CHECK(cc_stripe_checkout_body("2024-06-20", &p, &b, &e) == CC_ERR_LIMIT);
}

static void method_used_shapes(void) {
    cc_checkout_session s;
    cc_error e;
    const char *head = "{\"id\":\"cs_test_m\",\"object\":\"checkout.session\",\"status\":\"complete\","
                       "\"payment_status\":\"paid\",\"metadata\":{\"method\":\"card,wechat_pay,alipay\"},";
    char js[1024];
    snprintf(js, sizeof js, "%s\"payment_intent\":null}", head);
    CHECK(cc_stripe_session_parse(js, strlen(js), &s, &e) == CC_OK);
    CHECK_STR(s.method_used, "");
    CHECK_STR(s.payment_intent, "");
    snprintf(js, sizeof js, "%s\"payment_intent\":\"pi_123\"}", head);
    CHECK(cc_stripe_session_parse(js, strlen(js), &s, &e) == CC_OK);
    CHECK_STR(s.payment_intent, "pi_123");
    CHECK_STR(s.method_used, "");
    snprintf(js, sizeof js, "%s\"payment_intent\":{\"id\":\"pi_9\",\"latest_charge\":\"ch_1\"}}", head);
    CHECK(cc_stripe_session_parse(js, strlen(js), &s, &e) == CC_OK);
    CHECK_STR(s.payment_intent, "pi_9");
    CHECK_STR(s.method_used, "");
    snprintf(js, sizeof js, "%s\"payment_intent\":{\"id\":\"pi_9\",\"latest_charge\":{\"id\":\"ch_1\","
             "\"payment_method_details\":{\"type\":\"wechat_pay\",\"wechat_pay\":{}}}}}", head);
    CHECK(cc_stripe_session_parse(js, strlen(js), &s, &e) == CC_OK);
    CHECK_STR(s.method_used, "wechat_pay");
    CHECK_STR(s.methods_offered, "card,wechat_pay,alipay");
}

static void long_strings_refused(void) {
    cc_checkout_session s;
    cc_error e;
    size_t n = CC_STRIPE_URL_BYTES_MAX + 200;
    char *js = malloc(n + 200), *url = malloc(n + 1);
    /* a url one byte too long is refused (not truncated); one that fits is kept whole */
    for (int over = 0; over < 2; over++) {
        size_t len = CC_STRIPE_URL_BYTES_MAX + (size_t)over;
        memcpy(url, "https://checkout.stripe.com/c/pay/", 34);
        memset(url + 34, 'a', len - 34);
        url[len] = 0;
        snprintf(js, n + 200, "{\"id\":\"cs_test_l\",\"object\":\"checkout.session\",\"url\":\"%s\"}", url);
        cc_rc rc = cc_stripe_session_parse(js, strlen(js), &s, &e);
        if (over) {
            CHECK(rc == CC_ERR_LIMIT);
            CHECK_STR(e.field, "url");
        } else {
            CHECK(rc == CC_OK);
            CHECK_EQ_I64(strlen(s.url), CC_STRIPE_URL_BYTES_MAX);
        }
    }
    const char *m = "{\"id\":\"cs_test_l\",\"object\":\"checkout.session\",\"payment_intent\":{\"id\":\"pi_1\","
                    "\"latest_charge\":{\"payment_method_details\":{\"type\":\"a_payment_method_type_longer_than_32\"}}}}";
    CHECK(cc_stripe_session_parse(m, strlen(m), &s, &e) == CC_ERR_LIMIT);
    CHECK_STR(e.field, "payment_method_details.type");
    const char *o = "{\"id\":\"cs_test_l\",\"object\":\"checkout.session\",\"metadata\":{\"method\":"
                    "\"card,wechat_pay,alipay,card,wechat_pay,alipay,card,wechat_pay,alipay\"}}";
    CHECK(cc_stripe_session_parse(o, strlen(o), &s, &e) == CC_ERR_LIMIT);
    CHECK_STR(e.field, "metadata.method");
    free(js);
    free(url);
}

void suite_stripe(void) {
    RUN(webhook_vectors);
    RUN(parse_session);
    RUN(method_rules);
    RUN(api_version_pinned);
    RUN(body_per_version);
    RUN(minimum_charge);
    RUN(method_used_shapes);
    RUN(long_strings_refused);
}
