/* test_money.c — exact decimal parsing and currency conversion. */
#include "ctest.h"
#include "money.h"

static void decimals(void) {
    int64_t v;
    cc_error e;
    CHECK(cc_decimal_to_scaled("0.04", 6, &v, "p", &e) == CC_OK); CHECK_EQ_I64(v, 40000);
    CHECK(cc_decimal_to_scaled("12", 6, &v, "p", &e) == CC_OK); CHECK_EQ_I64(v, 12000000);
    CHECK(cc_decimal_to_scaled("-1.5", 6, &v, "p", &e) == CC_OK); CHECK_EQ_I64(v, -1500000);
    CHECK(cc_decimal_to_scaled(".5", 2, &v, "p", &e) == CC_OK); CHECK_EQ_I64(v, 50);
    CHECK(cc_decimal_to_scaled("0.0000001", 6, &v, "p", &e) == CC_ERR_INVALID);
    CHECK_STR(e.field, "p");
    CHECK(cc_decimal_to_scaled("1e3", 6, &v, "p", &e) == CC_ERR_INVALID);
    CHECK(cc_decimal_to_scaled("", 6, &v, "p", &e) == CC_ERR_INVALID);
    CHECK(cc_decimal_to_scaled(".", 6, &v, "p", &e) == CC_ERR_INVALID);
    CHECK(cc_decimal_to_scaled("1.2.3", 6, &v, "p", &e) == CC_ERR_INVALID);
    CHECK(cc_decimal_to_scaled(" 1", 6, &v, "p", &e) == CC_ERR_INVALID);
    CHECK(cc_decimal_to_scaled("99999999999999999999999999", 6, &v, "p", &e) == CC_ERR_INVALID);
    CHECK(cc_decimal_to_scaled("9223372036854775807", 0, &v, "p", &e) == CC_ERR_INVALID);
    char buf[64];
    CHECK(cc_scaled_to_decimal(2004500000, 6, 2, buf, sizeof buf) > 0); CHECK_STR(buf, "2004.50");
    CHECK(cc_scaled_to_decimal(-1, 6, 0, buf, sizeof buf) > 0); CHECK_STR(buf, "-0.000001");
    CHECK(cc_scaled_to_decimal(INT64_MIN, 6, 0, buf, sizeof buf) > 0);
    CHECK_STR(buf, "-9223372036854.775808");
    CHECK(cc_scaled_to_decimal(5, 0, 0, buf, 1) == -1);
}

static void muldiv(void) {
    int64_t v;
    cc_error e;
    CHECK(cc_muldiv_half_up(950, 211, 100, &v, &e) == CC_OK); CHECK_EQ_I64(v, 2005);   /* 2004.5 up */
    CHECK(cc_muldiv_half_up(949, 211, 100, &v, &e) == CC_OK); CHECK_EQ_I64(v, 2002);   /* 2002.39 */
    CHECK(cc_muldiv_half_up(INT64_MAX, 2, 1, &v, &e) == CC_ERR_INVALID);
    CHECK(cc_muldiv_half_up(INT64_MAX, INT64_MAX, INT64_MAX, &v, &e) == CC_OK); CHECK_EQ_I64(v, INT64_MAX);
    CHECK(cc_muldiv_half_up(-1, 1, 1, &v, &e) == CC_ERR_INVALID);
    CHECK(cc_muldiv_half_up(1, 1, 0, &v, &e) == CC_ERR_INVALID);
}

static void currencies(void) {
    CHECK(cc_currency_exponent("USD") == 2);
    CHECK(cc_currency_exponent("jpy") == 0);
    CHECK(cc_currency_exponent("KRW") == 0);
    CHECK(cc_currency_exponent("kwd") == 3);
    CHECK(cc_currency_exponent("xyz") == -1);
    CHECK(cc_currency_exponent("us") == -1);
    CHECK(cc_currency_exponent(NULL) == -1);
}

static void conversion(void) {
    cc_rates r;
    cc_error e;
    int64_t m;
    cc_rates_default(&r);
    /* Comfy.org's vectors (ComfyUI_frontend comfyCredits.test.ts). */
    CHECK(cc_rates_convert(&r, "usd", 950, &m, &e) == CC_OK); CHECK_EQ_I64(m, 2005 * CC_MICRO);
    CHECK(cc_rates_convert(&r, "USD", 14650, &m, &e) == CC_OK); CHECK_EQ_I64(m, 30912 * CC_MICRO);
    CHECK(cc_rates_convert(&r, "usd", 100, &m, &e) == CC_OK); CHECK_EQ_I64(m, 211 * CC_MICRO);
    CHECK(cc_rates_convert(&r, "usd", 1, &m, &e) == CC_OK); CHECK_EQ_I64(m, 2 * CC_MICRO); /* 2.11 -> 2 */
    CHECK(cc_rates_convert(&r, "eur", 100, &m, &e) == CC_ERR_INVALID); CHECK_STR(e.field, "currency");
    /* JPY is zero-decimal: 1000 yen at 1.4 credits/yen = 1400 credits. */
    CHECK(cc_rates_set(&r, "JPY", 1400000, &e) == CC_OK);
    CHECK(cc_rates_convert(&r, "jpy", 1000, &m, &e) == CC_OK); CHECK_EQ_I64(m, 1400 * CC_MICRO);
    CHECK(cc_rates_convert(&r, "jpy", 1, &m, &e) == CC_OK); CHECK_EQ_I64(m, 1 * CC_MICRO);
    /* EUR at 229.5 credits: 1.00 EUR -> 229.5 -> half up 230. */
    CHECK(cc_rates_set(&r, "eur", 229500000, &e) == CC_OK);
    CHECK(cc_rates_convert(&r, "eur", 100, &m, &e) == CC_OK); CHECK_EQ_I64(m, 230 * CC_MICRO);
    CHECK(cc_rates_set(&r, "eur", 0, &e) == CC_ERR_INVALID);
    CHECK(cc_rates_set(&r, "zzz", 5, &e) == CC_ERR_INVALID);
    CHECK(cc_rates_convert(&r, "usd", 0, &m, &e) == CC_ERR_INVALID);
    CHECK(cc_rates_convert(&r, "usd", -5, &m, &e) == CC_ERR_INVALID);
    CHECK(cc_rates_convert(&r, "usd", INT64_MAX, &m, &e) == CC_ERR_INVALID);
    CHECK(cc_rates_convert(&r, "usd", CC_AMOUNT_MAX, &m, &e) == CC_ERR_LIMIT);
}

void suite_money(void) {
    RUN(decimals);
    RUN(muldiv);
    RUN(currencies);
    RUN(conversion);
}
