/* test_pricing.c — price table parsing, estimate/actual semantics, and every
** shipped rule in comfy_credits_ext/prices.json against hand-computed figures
** (micro-credits = micro-USD x 211). */
#include "ctest.h"
#include "pricing.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

static cc_price_table *parse_str(const char *json, cc_error *e) {
    cc_price_table *t = NULL;
    if (cc_price_table_parse(json, strlen(json), &t, e) != CC_OK) return NULL;
    return t;
}

/* Parses a table that must be refused; returns the error. */
static cc_error refuse(const char *json) {
    cc_error e;
    memset(&e, 0, sizeof e);
    cc_price_table *t = parse_str(json, &e);
    CHECK(t == NULL);
    CHECK(e.rc != CC_OK);
    cc_price_table_free(t);
    return e;
}

static cc_rc est_rc(const cc_price_table *t, const char *cls, const char *inputs) {
    cc_price_result r;
    cc_error e;
    return cc_price_estimate(t, cls, inputs, strlen(inputs), &r, &e);
}

static int64_t est(const cc_price_table *t, const char *cls, const char *inputs, cc_price_result *r) {
    cc_price_result tmp;
    cc_error e;
    if (!r) r = &tmp;
    if (cc_price_estimate(t, cls, inputs, inputs ? strlen(inputs) : 0, r, &e) != CC_OK) {
        fprintf(stderr, "  estimate %s %s: %s\n", cls, inputs ? inputs : "", e.message);
        return -1;
    }
    return r->micro;
}

#define HDR "{\"format\":1,\"credits_per_usd\":211,\"default\":{\"usd\":\"1\"},\"nodes\":"

static void test_parse_errors(void) {
    cc_error e = refuse("{\"format\":1,");
    CHECK_STR(e.field, "json");
    refuse("");
    refuse("[]");
    refuse("{\"format\":1,\"credits_per_usd\":211,\"default\":{\"usd\":\"1\"},\"nodes\":{}} x");
    refuse("{\"credits_per_usd\":211,\"default\":{\"usd\":\"1\"},\"nodes\":{}}");
    refuse("{\"format\":2,\"credits_per_usd\":211,\"default\":{\"usd\":\"1\"},\"nodes\":{}}");
    refuse("{\"format\":1,\"credits_per_usd\":0,\"default\":{\"usd\":\"1\"},\"nodes\":{}}");
    e = refuse("{\"format\":1,\"credits_per_usd\":211.5,\"default\":{\"usd\":\"1\"},\"nodes\":{}}");
    CHECK_STR(e.field, "credits_per_usd");
    refuse("{\"format\":1,\"credits_per_usd\":1e300,\"default\":{\"usd\":\"1\"},\"nodes\":{}}");
    e = refuse("{\"format\":1,\"credits_per_usd\":211,\"nodes\":{}}");
    CHECK_STR(e.field, "default");
    refuse("{\"format\":1,\"credits_per_usd\":211,\"default\":{\"usd\":\"1\"}}");
    refuse(HDR "[]}");
    refuse(HDR "{\"X\":null}}");
    refuse(HDR "{\"X\":\"0.04\"}}");
    refuse(HDR "{\"X\":{}}}");                                  /* no price */
    refuse("{\"format\":1,\"credits_per_usd\":211,\"default\":{\"usd\":\"1\"},\"nodes\":{},\"extra\":1}");

    /* a float price is refused with the rule and the field named */
    e = refuse(HDR "{\"OpenAIDalle3\":{\"usd\":0.04}}}");
    CHECK(strstr(e.message, "OpenAIDalle3") != NULL);
    CHECK(strstr(e.message, "usd") != NULL);
    CHECK(strstr(e.message, "decimal string") != NULL);
    CHECK_STR(e.field, "usd");
    e = refuse(HDR "{\"X\":{\"table\":{\"entries\":[{\"when\":{\"a\":\"b\"},\"usd\":0.5}]}}}}");
    CHECK(strstr(e.message, "table.entries[0].usd") != NULL);
    e = refuse(HDR "{\"X\":{\"usd\":\"0.1234567\"}}}");         /* > 6 decimals */
    CHECK(strstr(e.message, "'X'") != NULL);
    refuse(HDR "{\"X\":{\"usd\":\"-1\"}}}");
    refuse(HDR "{\"X\":{\"usd\":\"1e3\"}}}");
    refuse(HDR "{\"X\":{\"usd\":\"0\"}}}");                      /* never free */
    refuse(HDR "{\"X\":{\"usd\":true}}}");
    refuse(HDR "{\"X\":{\"usd\":\"1\",\"credits\":\"1\"}}}");
    refuse(HDR "{\"X\":{\"usd\":\"99999999999999999999\"}}}");   /* huge */
    refuse(HDR "{\"X\":{\"usd\":\"10000000\"}}}");               /* 2.11e15 micro > CC_AMOUNT_MAX */
    refuse(HDR "{\"X\":{\"usd\":1e300}}}");
    /* unknown keys are refused (typos must not silently drop a price) */
    e = refuse(HDR "{\"X\":{\"usd\":\"1\",\"mutliply\":[]}}}");
    CHECK(strstr(e.message, "mutliply") != NULL);
    CHECK(strstr(e.message, "unknown key") != NULL);
    refuse(HDR "{\"X\":{\"usd\":\"1\",\"usd\":\"2\"}}}");         /* duplicate key */
    /* the field is named with its whole path (formatted only on an error) */
    e = refuse(HDR "{\"X\":{\"table\":{\"entries\":[{\"when\":{\"a\":\"b\"},\"usd\":\"1\",\"usd\":\"2\"}]}}}}");
    CHECK_STR(e.field, "table.entries[0].usd");
    CHECK(strstr(e.message, "'X', field 'table.entries[0].usd': duplicate key") != NULL);
    e = refuse(HDR "{\"X\":{\"table\":{\"entries\":[{\"when\":{\"a\":\"b\"},\"usd\":\"1\",\"mutliply\":[]}]}}}}");
    CHECK_STR(e.field, "table.entries[0].mutliply");
    CHECK(strstr(e.message, "unknown key (allowed: when, usd, credits, multiply, source)") != NULL);
    e = refuse("{\"format\":1,\"credits_per_usd\":211,\"default\":{\"usd\":\"1\"},\"nodes\":{},\"nodes\":{}}");
    CHECK_STR(e.field, "nodes");
    CHECK(strstr(e.message, "duplicate key") != NULL);
    refuse(HDR "{\"X\":{\"usd\":\"1\"},\"X\":{\"usd\":\"2\"}}}"); /* duplicate class */
    refuse(HDR "{\"X\":{\"usd\":\"1\",\"table\":{\"entries\":[{\"when\":{},\"usd\":\"1\"}]}}}}");
    refuse(HDR "{\"X\":{\"table\":{\"entries\":[]}}}}");
    refuse(HDR "{\"X\":{\"table\":{\"entries\":[{\"usd\":\"1\"}]}}}}");          /* no when */
    refuse(HDR "{\"X\":{\"table\":{\"entries\":[{\"when\":{\"a\":1.5},\"usd\":\"1\"}]}}}}");
    refuse(HDR "{\"X\":{\"table\":{\"entries\":[{\"when\":{\"a\":{\"present\":1}},\"usd\":\"1\"}]}}}}");
    refuse(HDR "{\"X\":{\"usd\":\"1\",\"multiply\":[{\"input\":\"n\"}]}}}");        /* no max */
    refuse(HDR "{\"X\":{\"usd\":\"1\",\"multiply\":[{\"input\":\"n\",\"max\":2000000}]}}}");
    refuse(HDR "{\"X\":{\"usd\":\"1\",\"multiply\":[{\"input\":\"n\",\"max\":4,\"default\":9}]}}}");
    e = refuse(HDR "{\"X\":{\"tokens\":{\"max_output_default\":10}}}}");         /* no units */
    CHECK(strstr(e.message, "units") != NULL);
    refuse(HDR "{\"X\":{\"units\":{\"input_tokens_per_1m\":{\"usd\":\"1\"}},"
               "\"tokens\":{\"max_output_default\":10}}}}");                    /* no output price */
    refuse(HDR "{\"X\":{\"usd\":\"1\",\"units_by_model\":{\"m\":{\"image\":{\"usd\":\"1\"}}}}}}"); /* no model_input */
    refuse(HDR "{\"X\":{\"usd\":\"1\",\"family\":\"0123456789012345678901234567890123456789"
               "012345678901234567890123456789\"}}}");                          /* family too long */

    /* deep nesting and a 200-byte class name never crash */
    size_t n = 200000;
    char *deep = malloc(n + 1);
    memset(deep, '[', n);
    deep[n] = 0;
    refuse(deep);
    memcpy(deep, HDR "{\"X\":{\"usd\":\"1\",\"source\":", strlen(HDR "{\"X\":{\"usd\":\"1\",\"source\":"));
    refuse(deep);
    free(deep);
    char name[260];
    memset(name, 'A', 200);
    name[200] = 0;
    char buf[512];
    snprintf(buf, sizeof buf, HDR "{\"%s\":{\"usd\":\"1\"}}}", name);
    refuse(buf);
}

static void test_parse_ok_and_lookup(void) {
    cc_error e;
    cc_price_table *t = parse_str(HDR "{\"B\":{\"usd\":2},\"A\":{\"credits\":\"12.66\"},"
                                      "\"C\":{\"credits\":\"0.000001\"}}}", &e);
    CHECK(t != NULL);
    if (!t) return;
    CHECK_EQ_I64(cc_price_table_count(t), 3);
    CHECK_STR(cc_price_table_name(t, 0), "A");
    CHECK_STR(cc_price_table_name(t, 2), "C");
    CHECK(cc_price_table_has(t, "B"));
    CHECK(!cc_price_table_has(t, "b"));
    CHECK(!cc_price_table_has(t, NULL));
    CHECK_EQ_I64(est(t, "A", "{}", NULL), 12660000);          /* credits given directly */
    CHECK_EQ_I64(est(t, "B", NULL, NULL), 422000000);          /* JSON integer $2 */
    CHECK_EQ_I64(est(t, "C", "{}", NULL), 1);                  /* smallest price */
    cc_price_result r;
    CHECK(cc_price_estimate(t, "A", "[1]", 3, &r, &e) == CC_ERR_INVALID);
    CHECK_STR(e.field, "inputs");
    CHECK(cc_price_estimate(t, "A", "{\"a\":", 5, &r, &e) == CC_ERR_INVALID);
    CHECK(cc_price_estimate(t, "", "{}", 2, &r, &e) == CC_ERR_INVALID);
    CHECK(cc_price_estimate(t, NULL, "{}", 2, &r, &e) == CC_ERR_INVALID);
    cc_price_table_free(t);
    cc_price_table_free(NULL);
}

static void test_default_rule(void) {
    cc_error e;
    cc_price_table *t = parse_str("{\"format\":1,\"credits_per_usd\":211,\"default\":{\"family\":\"unknown\","
                                  "\"usd\":\"2.00\"},\"nodes\":{\"A\":{\"family\":\"F\",\"usd\":\"1\"}}}", &e);
    CHECK(t != NULL);
    if (!t) return;
    cc_price_result r;
    CHECK_EQ_I64(est(t, "SomeNewApiNode", "{\"x\":1}", &r), 422000000);
    CHECK_EQ_I64(r.used_default, 1);
    CHECK_STR(r.rule, "default");
    CHECK(r.micro > 0);
    CHECK_EQ_I64(est(t, "A", "{}", &r), 211000000);
    CHECK_EQ_I64(r.used_default, 0);
    CHECK_STR(r.rule, "A");
    CHECK_STR(r.family, "F");
    cc_price_table_free(t);
}

static const char *SEL =
    HDR "{\"V\":{\"family\":\"Test\",\"model_input\":\"model\",\"defaults\":{\"speed\":\"DEFAULT\"},"
    "\"table\":{\"entries\":["
    "{\"when\":{\"model\":\"fast\",\"audio\":true},\"usd\":\"1.20\"},"
    "{\"when\":{\"model\":\"fast\",\"audio\":false},\"usd\":\"0.80\"},"
    "{\"when\":{\"model\":\"std\",\"audio\":true},\"usd\":\"3.20\"},"
    "{\"when\":{\"model\":\"std\",\"audio\":false},\"usd\":\"1.60\"},"
    "{\"when\":{\"model\":\"any\",\"audio\":\"*\"},\"usd\":\"0.10\"}]},"
    "\"multiply\":[{\"input\":\"n\",\"default\":1,\"max\":4},{\"input\":\"duration\",\"min\":5,\"max\":10}]},"
    "\"W\":{\"defaults\":{\"speed\":\"DEFAULT\"},\"table\":{\"entries\":["
    "{\"when\":{\"speed\":\"QUALITY\",\"char\":{\"present\":true}},\"usd\":\"0.20\"},"
    "{\"when\":{\"speed\":\"QUALITY\",\"char\":{\"present\":false}},\"usd\":\"0.09\"},"
    "{\"when\":{\"speed\":\"DEFAULT\",\"char\":{\"present\":true}},\"usd\":\"0.15\"},"
    "{\"when\":{\"speed\":\"DEFAULT\",\"char\":{\"present\":false}},\"usd\":\"0.06\"},"
    "{\"when\":{\"dur\":5},\"usd\":\"0.50\"}],"
    "\"fallback\":{\"usd\":\"0.30\"}}}}}";

static void test_linked_worst_case(void) {
    cc_error e;
    cc_price_table *t = parse_str(SEL, &e);
    CHECK(t != NULL);
    if (!t) { fprintf(stderr, "  %s\n", e.message); return; }
    cc_price_result r;
    /* all literal: first matching entry x n x duration */
    CHECK_EQ_I64(est(t, "V", "{\"model\":\"fast\",\"audio\":false,\"n\":2,\"duration\":5}", &r), 1688000000);
    CHECK_STR(r.model, "fast");
    CHECK_STR(r.warning, "");
    /* linked audio: max over entries compatible with model=fast -> 1.20 */
    CHECK_EQ_I64(est(t, "V", "{\"model\":\"fast\",\"audio\":[\"5\",0],\"n\":1,\"duration\":5}", &r), 1266000000);
    /* linked model and audio: max of the whole table -> 3.20 */
    CHECK_EQ_I64(est(t, "V", "{\"model\":[\"1\",0],\"audio\":[\"2\",1],\"n\":1,\"duration\":5}", &r), 3376000000);
    CHECK_STR(r.model, "");
    /* linked multiplier -> its max: $1.60 x n=4 x 5 = $32; absent n -> default 1 and absent duration
    ** (no default) -> max 10: $1.60 x 10 = $16 */
    CHECK_EQ_I64(est(t, "V", "{\"model\":\"std\",\"audio\":false,\"n\":[\"3\",0],\"duration\":5}", &r),
                 6752000000);
    CHECK_EQ_I64(est(t, "V", "{\"model\":\"std\",\"audio\":false}", &r), 3376000000);
    /* string digits are integers; values below min count as min */
    CHECK_EQ_I64(est(t, "V", "{\"model\":\"std\",\"audio\":false,\"n\":\"2\",\"duration\":\"5\"}", &r),
                 3376000000);
    CHECK_EQ_I64(est(t, "V", "{\"model\":\"std\",\"audio\":false,\"n\":1,\"duration\":0}", &r), 1688000000);
    /* a non-integer multiplier is priced at max, with a warning */
    CHECK_EQ_I64(est(t, "V", "{\"model\":\"std\",\"audio\":false,\"n\":\"two\",\"duration\":5}", &r),
                 6752000000);
    CHECK(r.warning[0] != 0);
    CHECK_EQ_I64(est(t, "V", "{\"model\":\"std\",\"audio\":false,\"n\":1e20,\"duration\":5}", &r), 6752000000);
    /* a huge integer multiplier is an error, not an overflow */
    CHECK(est_rc(t, "V", "{\"model\":\"std\",\"audio\":false,\"n\":2000000,\"duration\":5}") == CC_ERR_INVALID);
    /* wildcard entry */
    CHECK_EQ_I64(est(t, "V", "{\"model\":\"any\",\"audio\":[\"1\",0],\"n\":1,\"duration\":5}", &r), 105500000);
    /* literal matching no entry, no fallback -> table max (3.20), warning */
    CHECK_EQ_I64(est(t, "V", "{\"model\":\"nope\",\"audio\":true,\"n\":1,\"duration\":5}", &r), 3376000000);
    CHECK(strstr(r.warning, "no price entry") != NULL);
    /* an input that is neither literal nor link is priced at worst case */
    CHECK_EQ_I64(est(t, "V", "{\"model\":{\"x\":1},\"audio\":true,\"n\":1,\"duration\":5}", &r), 3376000000);
    CHECK(r.warning[0] != 0);

    /* presence selector; default for an absent select input */
    CHECK_EQ_I64(est(t, "W", "{\"speed\":\"QUALITY\",\"char\":[\"7\",0]}", &r), 42200000);
    CHECK_EQ_I64(est(t, "W", "{\"speed\":\"QUALITY\"}", &r), 18990000);
    CHECK_EQ_I64(est(t, "W", "{\"char\":[\"7\",0]}", &r), 31650000);            /* default DEFAULT */
    CHECK_EQ_I64(est(t, "W", "{\"speed\":null}", &r), 12660000);               /* null = absent */
    CHECK_EQ_I64(est(t, "W", "{\"speed\":[\"1\",0],\"char\":[\"7\",0]}", &r), 105500000); /* max incl. dur */
    /* integer 5 and string "5" match the same entry */
    CHECK_EQ_I64(est(t, "W", "{\"speed\":\"TURBO\",\"dur\":\"5\"}", &r), 105500000);
    CHECK_EQ_I64(est(t, "W", "{\"speed\":\"TURBO\",\"dur\":5}", &r), 105500000);
    CHECK_STR(r.warning, "");
    /* no match with a fallback -> fallback, warning */
    CHECK_EQ_I64(est(t, "W", "{\"speed\":\"TURBO\",\"dur\":6}", &r), 63300000);
    CHECK(strstr(r.warning, "fallback") != NULL);
    cc_price_table_free(t);
}

static const char *UNITS =
    HDR "{\"Chat\":{\"model_input\":\"model\",\"units_by_model\":{"
    "\"big\":{\"input_tokens_per_1m\":{\"usd\":\"2\"},\"output_tokens_per_1m\":{\"usd\":\"8\"},\"max_output_tokens\":1000},"
    "\"small\":{\"input_tokens_per_1m\":{\"usd\":\"0.10\"},\"output_tokens_per_1m\":{\"usd\":\"0.40\"}}},"
    "\"tokens\":{\"input_fixed\":100,\"input_text\":[\"prompt\"],\"input_text_linked\":500,"
    "\"input_present\":{\"images\":1000},\"max_output_input\":\"max_output_tokens\",\"max_output_default\":2000}},"
    "\"Img\":{\"usd\":\"0.04\",\"multiply\":[{\"input\":\"n\",\"default\":1,\"max\":8}],"
    "\"units\":{\"image\":{\"usd\":\"0.04\"},\"second\":{\"usd\":\"0.10\"}}},"
    "\"Tiny\":{\"usd\":\"1\",\"units\":{\"input_tokens_per_1m\":{\"credits\":\"0.000001\"}}},"
    "\"Huge\":{\"credits\":\"1000000000\",\"multiply\":[{\"input\":\"n\",\"max\":8}],"
    "\"units\":{\"input_tokens_per_1m\":{\"credits\":\"1000000000\"}}}}}";

static void test_tokens_estimate(void) {
    cc_error e;
    cc_price_table *t = parse_str(UNITS, &e);
    CHECK(t != NULL);
    if (!t) { fprintf(stderr, "  %s\n", e.message); return; }
    cc_price_result r;
    /* big: in = 100 + 5 ("hello") = 105 tok x $2/1M = 210 micro-USD -> 44,310;
    **      out = min(literal 4000, model max 1000) = 1000 x $8/1M = 8,000 micro-USD -> 1,688,000 */
    CHECK_EQ_I64(est(t, "Chat", "{\"model\":\"big\",\"prompt\":\"hello\",\"max_output_tokens\":4000}", &r),
                 1732310);
    CHECK_STR(r.model, "big");
    /* small: in = 100 + 500 (linked prompt) + 1000 (images) = 1600 x 0.10 -> 160 micro-USD -> 33,760;
    **        out = literal 300 (no model max) x 0.40 -> 120 micro-USD -> 25,320 */
    CHECK_EQ_I64(est(t, "Chat", "{\"model\":\"small\",\"prompt\":[\"1\",0],\"images\":[\"2\",0],"
                                "\"max_output_tokens\":300}", &r), 59080);
    /* linked model -> max unit prices of all models and max of max_output (1000):
    ** in 100 x $2 -> 42,200; out 1000 x $8 -> 1,688,000 */
    CHECK_EQ_I64(est(t, "Chat", "{\"model\":[\"1\",0]}", &r), 1730200);
    /* unknown literal model: worst case + warning */
    CHECK_EQ_I64(est(t, "Chat", "{\"model\":\"gpt-99\"}", &r), 1730200);
    CHECK(r.warning[0] != 0);
    /* defaults only: small in 100 tok x $0.10/1M = 10 micro-USD -> 2,110;
    ** out default 2000 x 0.40/1M = 800 micro-USD -> 168,800 */
    CHECK_EQ_I64(est(t, "Chat", "{\"model\":\"small\"}", &r), 170910);
    cc_price_table_free(t);
}

static cc_price_result act(const cc_price_table *t, const char *cls, const char *in, cc_usage u, int64_t hold,
                           cc_rc *rc) {
    cc_price_result r;
    cc_error e;
    *rc = cc_price_actual(t, cls, in, in ? strlen(in) : 0, &u, hold, &r, &e);
    return r;
}

static void test_actual_precedence(void) {
    cc_error e;
    cc_price_table *t = parse_str(UNITS, &e);
    CHECK(t != NULL);
    if (!t) return;
    cc_rc rc;
    cc_usage u;
    cc_usage_init(&u);
    CHECK_EQ_I64(u.credits_used_micro, -1);
    CHECK_EQ_I64(u.seconds_ms, -1);
    /* 1. the header wins over counters and hold */
    u.credits_used_micro = 5;
    u.input_tokens = 1000000;
    cc_price_result r = act(t, "Chat", "{\"model\":\"big\"}", u, 999, &rc);
    CHECK(rc == CC_OK);
    CHECK_EQ_I64(r.micro, 5);
    CHECK_EQ_I64(r.from_usage, 1);
    u.credits_used_micro = 0; /* a reported zero is honoured */
    r = act(t, "Chat", "{\"model\":\"big\"}", u, 999, &rc);
    CHECK_EQ_I64(r.micro, 0);
    CHECK_EQ_I64(r.from_usage, 1);
    /* 2. counters x unit prices: 1M in x $2 = 422,000,000; 500 out x $8/1M = 4,000 micro-USD = 844,000 */
    u.credits_used_micro = -1;
    u.output_tokens = 500;
    r = act(t, "Chat", "{\"model\":\"big\"}", u, 999, &rc);
    CHECK_EQ_I64(r.micro, 422844000);
    CHECK_EQ_I64(r.from_usage, 1);
    /* model chosen by inputs: small 1M in x 0.10 = 21,100,000; 500 out x 0.40/1M = 200 micro-USD = 42,200 */
    r = act(t, "Chat", "{\"model\":\"small\"}", u, 999, &rc);
    CHECK_EQ_I64(r.micro, 21142200);
    /* 3. nothing reported -> the hold */
    cc_usage_init(&u);
    r = act(t, "Chat", "{\"model\":\"big\"}", u, 777, &rc);
    CHECK_EQ_I64(r.micro, 777);
    CHECK_EQ_I64(r.from_usage, 0);
    /* counters the rule has no price for -> the hold */
    u.images = 3;
    r = act(t, "Chat", "{\"model\":\"big\"}", u, 777, &rc);
    CHECK_EQ_I64(r.micro, 777);
    CHECK_EQ_I64(r.from_usage, 0);
    /* images and seconds: 3 x $0.04 = 25,320,000; 1,500 ms x $0.10/s = 31,650,000 */
    u.seconds_ms = 1500;
    r = act(t, "Img", NULL, u, 777, &rc);
    CHECK_EQ_I64(r.micro, 56970000);
    CHECK_EQ_I64(r.from_usage, 1);
    /* a rule without units -> hold; unknown class -> default, hold */
    r = act(t, "Nope", "{}", u, 123, &rc);
    CHECK_EQ_I64(r.micro, 123);
    CHECK_EQ_I64(r.used_default, 1);
    /* half-up: 1 micro-credit per 1M tokens */
    cc_usage_init(&u);
    u.input_tokens = 500000;
    r = act(t, "Tiny", "{}", u, 0, &rc);
    CHECK_EQ_I64(r.micro, 1);
    u.input_tokens = 499999;
    r = act(t, "Tiny", "{}", u, 0, &rc);
    CHECK_EQ_I64(r.micro, 0);
    CHECK_EQ_I64(r.from_usage, 1);
    cc_price_table_free(t);
}

static void test_overflow(void) {
    cc_error e;
    cc_price_table *t = parse_str(UNITS, &e);
    CHECK(t != NULL);
    if (!t) return;
    cc_price_result r;
    /* 1e9 credits is the single-operation maximum; x2 must be refused, not wrap */
    CHECK_EQ_I64(est(t, "Huge", "{\"n\":1}", &r), INT64_C(1000000000000000));
    CHECK(est_rc(t, "Huge", "{\"n\":2}") == CC_ERR_INVALID);
    CHECK(est_rc(t, "Huge", "{}") == CC_ERR_INVALID); /* absent -> max 8 */
    cc_rc rc;
    cc_usage u;
    cc_usage_init(&u);
    u.input_tokens = INT64_MAX;
    act(t, "Huge", "{}", u, 0, &rc);
    CHECK(rc == CC_ERR_INVALID);
    u.input_tokens = INT64_MAX;
    cc_price_result a = act(t, "Tiny", "{}", u, 0, &rc); /* INT64_MAX / 1e6 fits */
    CHECK(rc == CC_OK);
    CHECK_EQ_I64(a.micro, INT64_C(9223372036855));
    cc_usage_init(&u);
    u.credits_used_micro = INT64_MAX;
    act(t, "Img", "{}", u, 0, &rc);
    CHECK(rc == CC_ERR_INVALID);
    cc_usage_init(&u);
    act(t, "Img", "{}", u, -1, &rc);
    CHECK(rc == CC_ERR_INVALID);
    act(t, "Img", "{}", u, INT64_MAX, &rc);
    CHECK(rc == CC_ERR_INVALID);
    /* a 100k-deep inputs document is refused, not recursed into */
    size_t n = 100000;
    char *deep = malloc(n + 16);
    strcpy(deep, "{\"n\":");
    memset(deep + 5, '[', n);
    deep[n + 5] = 0;
    CHECK(cc_price_estimate(t, "Img", deep, strlen(deep), &r, &e) == CC_ERR_INVALID);
    free(deep);
    cc_price_table_free(t);
}

/* ---- every shipped rule, with figures computed by hand ($ x 211,000,000) */

typedef struct shipped_case {
    const char *cls;
    const char *inputs;
    int64_t micro;
} shipped_case;

static const shipped_case SHIPPED[] = {
    /* seedance lite 720p $0.041/s x 10 s = $0.41 */
    {"ByteDanceFirstLastFrameNode", "{\"model\":\"seedance-1-0-lite-i2v-250428\",\"resolution\":\"720p\",\"duration\":10}", 86510000},
    {"ByteDanceImageEditNode", "{\"model\":\"seededit-3-0-i2i-250628\"}", 6330000},
    {"ByteDanceImageNode", "{\"model\":\"seedream-3-0-t2i-250415\"}", 6330000},
    /* lite 480p $0.018 x 5 = $0.09 */
    {"ByteDanceImageReferenceNode", "{\"model\":\"seedance-1-0-lite-i2v-250428\",\"resolution\":\"480p\",\"duration\":5}", 18990000},
    /* pro 1080p $0.122 x 12 = $1.464 */
    {"ByteDanceImageToVideoNode", "{\"model\":\"seedance-1-0-pro-250528\",\"resolution\":\"1080p\",\"duration\":12}", 308904000},
    /* $0.03 x 4 images */
    {"ByteDanceSeedreamNode", "{\"sequential_image_generation\":\"auto\",\"max_images\":4}", 25320000},
    /* pro 480p $0.024 x 3 = $0.072 */
    {"ByteDanceTextToVideoNode", "{\"model\":\"seedance-1-0-pro-250528\",\"resolution\":\"480p\",\"duration\":3}", 15192000},
    {"FluxKontextMaxImageNode", "{\"prompt\":\"x\"}", 16880000},
    {"FluxKontextProImageNode", "{\"prompt\":\"x\"}", 8440000},
    {"FluxProCannyNode", "{}", 10550000},
    {"FluxProDepthNode", "{}", 10550000},
    {"FluxProExpandNode", "{}", 10550000},
    {"FluxProFillNode", "{}", 10550000},
    {"FluxProImageNode", "{}", 8440000},
    {"FluxProUltraImageNode", "{}", 12660000},
    /* in 1024+5 tok x $0.30/1M = 308.7 micro-USD -> 65,135.7 -> 65,136; out 32768 x $30/1M -> 207,421,440 */
    {"GeminiImageNode", "{\"model\":\"gemini-2.5-flash-image\",\"prompt\":\"a cat\"}", 207486576},
    /* in 1024+5+20000 = 21029 x $0.30/1M -> 1,331,135.7 -> 1,331,136; out 65536 x $2.50/1M -> 34,570,240 */
    {"GeminiNode", "{\"model\":\"gemini-2.5-flash\",\"prompt\":\"hello\",\"images\":[\"3\",0]}", 35901376},
    /* turbo $0.02 x 3 */
    {"IdeogramV1", "{\"turbo\":true,\"num_images\":3}", 12660000},
    {"IdeogramV2", "{\"turbo\":false}", 16880000},
    /* TURBO with character image $0.10 */
    {"IdeogramV3", "{\"rendering_speed\":\"TURBO\",\"num_images\":1,\"character_image\":[\"9\",0]}", 21100000},
    {"KlingCameraControlI2VNode", "{}", 103390000},
    {"KlingCameraControlT2VNode", "{}", 29540000},
    {"KlingDualCharacterVideoEffectNode", "{\"model_name\":\"kling-v1-6\",\"mode\":\"pro\",\"duration\":\"10\",\"effect_scene\":\"hug\"}", 206780000},
    {"KlingImage2VideoNode", "{\"model_name\":\"kling-v2-master\",\"mode\":\"std\",\"duration\":\"10\"}", 590800000},
    /* i2i kling-v1-5 $0.028 x 2 */
    {"KlingImageGenerationNode", "{\"model_name\":\"kling-v1-5\",\"n\":2,\"image\":[\"4\",0]}", 11816000},
    {"KlingLipSyncAudioToVideoNode", "{}", 21100000},
    {"KlingLipSyncTextToVideoNode", "{}", 21100000},
    {"KlingSingleImageVideoEffectNode", "{\"effect_scene\":\"dizzydizzy\"}", 103390000},
    {"KlingStartEndFrameNode", "{\"mode\":\"pro mode / 10s duration / kling-v1-6\"}", 206780000},
    {"KlingTextToVideoNode", "{\"mode\":\"pro mode / 5s duration / kling-v2-5-turbo\"}", 73850000},
    {"KlingVideoExtendNode", "{}", 59080000},
    {"KlingVirtualTryOnNode", "{\"model_name\":\"kolors-virtual-try-on-v1\"}", 14770000},
    {"LumaImageModifyNode", "{\"model\":\"photon-1\"}", 1540300},
    {"LumaImageNode", "{\"model\":\"photon-flash-1\"}", 400900},
    {"LumaImageToVideoNode", "{\"model\":\"ray-2\",\"resolution\":\"4k\",\"duration\":\"9s\"}", 2420170000},
    {"LumaVideoNode", "{\"model\":\"ray-flash-2\",\"resolution\":\"540p\",\"duration\":\"9s\"}", 53172000},
    {"MinimaxHailuoVideoNode", "{\"resolution\":\"1080P\",\"duration\":6}", 103390000},
    {"MinimaxImageToVideoNode", "{\"model\":\"I2V-01\"}", 90730000},
    {"MinimaxSubjectToVideoNode", "{\"model\":\"S2V-01\"}", 137150000},
    {"MinimaxTextToVideoNode", "{\"model\":\"T2V-01\"}", 90730000},
    {"MoonvalleyImg2VideoNode", "{}", 316500000},
    {"MoonvalleyTxt2VideoNode", "{}", 316500000},
    {"MoonvalleyVideo2VideoNode", "{}", 474750000},
    /* in 4096+2 tok x $1.10/1M -> 951,145.8 -> 951,146; out 100,000 x $4.40/1M -> 92,840,000 */
    {"OpenAIChatNode", "{\"model\":\"o4-mini\",\"prompt\":\"hi\",\"persist_context\":true}", 93791146},
    /* 512x512 $0.018 x 3 = $0.054 */
    {"OpenAIDalle2", "{\"size\":\"512x512\",\"n\":3}", 11394000},
    {"OpenAIDalle3", "{\"size\":\"1024x1024\",\"quality\":\"hd\"}", 16880000},
    /* high $0.30 x 2 */
    {"OpenAIGPTImage1", "{\"quality\":\"high\",\"n\":2}", 126600000},
    /* sora-2-pro 1024p $0.50/s x 12 s = $6 */
    {"OpenAIVideoSora2", "{\"model\":\"sora-2-pro\",\"size\":\"1792x1024\",\"duration\":12}", 1266000000},
    {"PikaImageToVideoNode2_2", "{\"duration\":10,\"resolution\":\"720p\"}", 126600000},
    {"PikaScenesV2_2", "{\"duration\":10,\"resolution\":\"1080p\"}", 316500000},
    {"PikaStartEndFrameNode2_2", "{\"duration\":10,\"resolution\":\"720p\"}", 52750000},
    {"PikaTextToVideoNode2_2", "{\"duration\":5,\"resolution\":\"1080p\"}", 94950000},
    {"Pikadditions", "{}", 63300000},
    {"Pikaffects", "{\"pikaffect\":\"Cake-ify\"}", 94950000},
    {"Pikaswaps", "{}", 63300000},
    {"PixverseImageToVideoNode", "{\"quality\":\"540p\",\"duration_seconds\":5,\"motion_mode\":\"normal\"}", 94950000},
    {"PixverseTextToVideoNode", "{\"quality\":\"1080p\",\"duration_seconds\":8,\"motion_mode\":\"normal\"}", 253200000},
    {"PixverseTransitionVideoNode", "{\"quality\":\"360p\",\"duration_seconds\":8,\"motion_mode\":\"normal\"}", 189900000},
    {"RecraftCreativeUpscaleNode", "{}", 52750000},
    {"RecraftCrispUpscaleNode", "{}", 844000},
    {"RecraftImageInpaintingNode", "{\"n\":2}", 16880000},
    {"RecraftImageToImageNode", "{\"n\":1}", 8440000},
    {"RecraftRemoveBackgroundNode", "{}", 2110000},
    {"RecraftReplaceBackgroundNode", "{\"n\":6}", 50640000},
    {"RecraftTextToImageNode", "{\"n\":4}", 33760000},
    {"RecraftTextToVectorNode", "{\"n\":2}", 33760000},
    {"RecraftVectorizeImageNode", "{}", 2110000},
    {"Rodin3D_Detail", "{}", 84400000},
    {"Rodin3D_Gen2", "{}", 84400000},
    {"Rodin3D_Regular", "{}", 84400000},
    {"Rodin3D_Sketch", "{}", 84400000},
    {"Rodin3D_Smooth", "{}", 84400000},
    /* $0.05/s x 10 s */
    {"RunwayFirstLastFrameNode", "{\"duration\":10}", 105500000},
    {"RunwayImageToVideoNodeGen3a", "{\"duration\":5}", 52750000},
    {"RunwayImageToVideoNodeGen4", "{\"duration\":10}", 105500000},
    {"RunwayTextToImageNode", "{}", 16880000},
    {"StabilityAudioInpaint", "{\"model\":\"stable-audio-2.5\"}", 42200000},
    {"StabilityAudioToAudio", "{\"model\":\"stable-audio-2.5\"}", 42200000},
    {"StabilityStableImageSD_3_5Node", "{\"model\":\"sd3.5-large\"}", 13715000},
    {"StabilityStableImageUltraNode", "{}", 16880000},
    {"StabilityTextToAudio", "{\"model\":\"stable-audio-2.5\"}", 42200000},
    {"StabilityUpscaleConservativeNode", "{}", 52750000},
    {"StabilityUpscaleCreativeNode", "{}", 52750000},
    {"StabilityUpscaleFastNode", "{}", 2110000},
    {"TripoConversionNode", "{}", 21100000},
    /* styled, quad, textured, detailed: $0.50 */
    {"TripoImageToModelNode", "{\"style\":\"object:clay\",\"quad\":true,\"texture\":true,\"texture_quality\":\"detailed\"}", 105500000},
    {"TripoMultiviewToModelNode", "{\"quad\":false,\"texture\":false}", 42200000},
    {"TripoRefineNode", "{}", 63300000},
    {"TripoRetargetNode", "{}", 21100000},
    {"TripoRigNode", "{}", 52750000},
    {"TripoTextToModelNode", "{\"style\":\"None\",\"quad\":true,\"texture\":false,\"texture_quality\":\"standard\"}", 42200000},
    {"TripoTextureNode", "{\"texture_quality\":\"detailed\"}", 42200000},
    {"Veo3VideoGenerationNode", "{\"model\":\"veo-3.0-fast-generate-001\",\"generate_audio\":true}", 253200000},
    /* Veo 2: $0.50 x 8 s */
    {"VeoVideoGenerationNode", "{\"duration_seconds\":8}", 844000000},
    {"ViduImageToVideoNode", "{\"model\":\"viduq1\"}", 84400000},
    {"ViduReferenceVideoNode", "{\"model\":\"viduq1\"}", 84400000},
    {"ViduStartEndToVideoNode", "{\"model\":\"viduq1\"}", 84400000},
    {"ViduTextToVideoNode", "{\"model\":\"viduq1\"}", 84400000},
    {"WanImageToImageApi", "{}", 6330000},
    /* 1080P $0.15/s x 10 s */
    {"WanImageToVideoApi", "{\"resolution\":\"1080P\",\"duration\":10}", 316500000},
    {"WanTextToImageApi", "{}", 6330000},
    /* 720p $0.10/s x 5 s */
    {"WanTextToVideoApi", "{\"size\":\"720p: 16:9 (1280x720)\",\"duration\":5}", 105500000},
};

static cc_price_table *load_shipped(void) {
    FILE *f = fopen("comfy_credits_ext/prices.json", "rb");
    CHECK(f != NULL);
    if (!f) return NULL;
    size_t cap = CC_PRICE_TABLE_BYTES_MAX;
    char *buf = malloc(cap);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    cc_price_table *t = NULL;
    cc_error e;
    if (cc_price_table_parse(buf, n, &t, &e) != CC_OK) fprintf(stderr, "  prices.json: %s\n", e.message);
    free(buf);
    CHECK(t != NULL);
    return t;
}

static void test_shipped_rules(void) {
    cc_price_table *t = load_shipped();
    if (!t) return;
    size_t ncases = sizeof SHIPPED / sizeof SHIPPED[0];
    for (size_t i = 0; i < ncases; i++) {
        cc_price_result r;
        int64_t got = est(t, SHIPPED[i].cls, SHIPPED[i].inputs, &r);
        if (got != SHIPPED[i].micro || r.used_default || r.warning[0])
            fprintf(stderr, "  shipped %s %s: got %lld want %lld (default=%d warning='%s')\n", SHIPPED[i].cls,
                    SHIPPED[i].inputs, (long long)got, (long long)SHIPPED[i].micro, r.used_default, r.warning);
        CHECK_EQ_I64(got, SHIPPED[i].micro);
        CHECK_EQ_I64(r.used_default, 0);
        CHECK(r.family[0] != 0);
    }
    /* every rule in the shipped table has a hand-computed case above */
    for (int i = 0; i < cc_price_table_count(t); i++) {
        const char *name = cc_price_table_name(t, i);
        int found = 0;
        for (size_t j = 0; j < ncases; j++) found |= strcmp(SHIPPED[j].cls, name) == 0;
        if (!found) fprintf(stderr, "  shipped rule %s has no test case\n", name);
        CHECK(found);
    }
    CHECK_EQ_I64(cc_price_table_count(t), (int64_t)ncases);
    cc_price_table_free(t);
}

static void test_shipped_worst_cases(void) {
    cc_price_table *t = load_shipped();
    if (!t) return;
    cc_price_result r;
    /* unknown class: the shipped default ($2.00) */
    CHECK_EQ_I64(est(t, "SomeFutureApiNode", "{}", &r), 422000000);
    CHECK_EQ_I64(r.used_default, 1);
    /* DALL-E 3 with linked size and quality: the 1792 hd price $0.12 */
    CHECK_EQ_I64(est(t, "OpenAIDalle3", "{\"size\":[\"1\",0],\"quality\":[\"2\",0]}", NULL), 25320000);
    /* Kling I2V with a linked model: v2 master 10 s $2.80 */
    CHECK_EQ_I64(est(t, "KlingImage2VideoNode", "{\"model_name\":[\"1\",0],\"mode\":\"std\",\"duration\":\"10\"}", NULL),
                 590800000);
    /* Ideogram V3 without character image, default speed, 8 images: $0.06 x 8 */
    CHECK_EQ_I64(est(t, "IdeogramV3", "{\"num_images\":8}", NULL), 101280000);
    /* Veo 3 with only the defaults: veo-3.0-generate-001 without audio $1.60 */
    CHECK_EQ_I64(est(t, "Veo3VideoGenerationNode", "{}", NULL), 337600000);
    /* Sora: sora-2 at a 1024p size is refused by the node; priced at the table max $0.50/s x 8 */
    CHECK_EQ_I64(est(t, "OpenAIVideoSora2", "{\"model\":\"sora-2\",\"size\":\"1792x1024\",\"duration\":8}", &r),
                 844000000);
    CHECK(r.warning[0] != 0);
    /* Hailuo 1080P 10 s is not offered: table max $0.56 with a warning */
    CHECK_EQ_I64(est(t, "MinimaxHailuoVideoNode", "{\"resolution\":\"1080P\",\"duration\":10}", &r), 118160000);
    CHECK(r.warning[0] != 0);
    /* Luma image: unknown model uses the published fallback $0.0172 */
    CHECK_EQ_I64(est(t, "LumaImageNode", "{\"model\":\"photon-2\"}", NULL), 3629200);
    /* Runway duration linked: max 10 s */
    CHECK_EQ_I64(est(t, "RunwayImageToVideoNodeGen4", "{\"duration\":[\"3\",0]}", NULL), 105500000);
    /* GPT-Image-1 settles on tokens: 1,000 in x $10/1M = 2,110,000; 4,160 out x $40/1M = 35,110,400 */
    cc_rc rc;
    cc_usage u;
    cc_usage_init(&u);
    u.input_tokens = 1000;
    u.output_tokens = 4160;
    r = act(t, "OpenAIGPTImage1", "{\"quality\":\"high\"}", u, 63300000, &rc);
    CHECK(rc == CC_OK);
    CHECK_EQ_I64(r.micro, 37220400);
    CHECK_EQ_I64(r.from_usage, 1);
    /* chat gpt-5 settles on tokens: 2,000 in x $1.25/1M = 527,500; 1,000 out x $10/1M = 2,110,000 */
    u.input_tokens = 2000;
    u.output_tokens = 1000;
    r = act(t, "OpenAIChatNode", "{\"model\":\"gpt-5\"}", u, 1, &rc);
    CHECK(rc == CC_OK);
    CHECK_EQ_I64(r.micro, 2637500);
    CHECK_STR(r.model, "gpt-5");
    cc_price_table_free(t);
}

/* A node that calls once per image of its batch is held for every image. */
static void test_batch_calls(void) {
    cc_error e;
    cc_price_table *t = parse_str(HDR "{\"Up\":{\"calls_per_batch_of\":\"image\",\"usd\":\"0.25\","
                                  "\"units\":{\"image\":{\"usd\":\"0.25\"}}},"
                                  "\"I2I\":{\"calls_per_batch_of\":\"image\",\"usd\":\"0.04\","
                                  "\"multiply\":[{\"input\":\"n\",\"default\":1,\"max\":6}]},"
                                  "\"Flat\":{\"usd\":\"0.04\"}}}", &e);
    CHECK(t != NULL);
    if (!t) return;
    cc_price_result r;
    CHECK_EQ_I64(est(t, "Up", "{\"image\":[\"comfy_credits_batch\",3]}", &r), 3 * 52750000);
    CHECK_EQ_I64(r.calls, 3);
    /* n per call, and one call per image. */
    CHECK_EQ_I64(est(t, "I2I", "{\"n\":2,\"image\":[\"comfy_credits_batch\",5]}", &r), 5 * 2 * 8440000);
    CHECK_EQ_I64(r.calls, 5);
    /* Not known yet (a link in a queued prompt), absent, or an empty batch: one call. */
    CHECK_EQ_I64(est(t, "Up", "{\"image\":[\"4\",0]}", &r), 52750000);
    CHECK_EQ_I64(r.calls, 1);
    CHECK_EQ_I64(est(t, "Up", "{}", &r), 52750000);
    CHECK_EQ_I64(est(t, "Up", "{\"image\":[\"comfy_credits_batch\",0]}", &r), 52750000);
    /* A rule without calls_per_batch_of ignores a batch: one call. */
    CHECK_EQ_I64(est(t, "Flat", "{\"image\":[\"comfy_credits_batch\",7]}", &r), 8440000);
    CHECK_EQ_I64(r.calls, 1);
    /* ComfyUI's largest batch is held; beyond it nothing is. */
    CHECK_EQ_I64(est(t, "Up", "{\"image\":[\"comfy_credits_batch\",4096]}", &r), 4096LL * 52750000);
    CHECK(est_rc(t, "Up", "{\"image\":[\"comfy_credits_batch\",4097]}") == CC_ERR_LIMIT);
    CHECK(est_rc(t, "Up", "{\"image\":[\"comfy_credits_batch\",-1]}") == CC_ERR_INVALID);
    CHECK(est_rc(t, "Up", "{\"image\":[\"comfy_credits_batch\",1.5]}") == CC_ERR_INVALID);
    cc_price_table_free(t);
    /* The key takes an input name. */
    e = refuse(HDR "{\"Up\":{\"calls_per_batch_of\":3,\"usd\":\"0.25\"}}}");
    CHECK(strstr(e.field, "calls_per_batch_of") != NULL);
    /* Shipped: Recraft's per-image nodes. */
    t = load_shipped();
    if (!t) return;
    CHECK_EQ_I64(est(t, "RecraftCreativeUpscaleNode", "{\"image\":[\"comfy_credits_batch\",3]}", &r), 3 * 52750000);
    CHECK_EQ_I64(est(t, "RecraftImageToImageNode", "{\"n\":1,\"image\":[\"comfy_credits_batch\",2]}", &r),
                 2 * 8440000);
    CHECK_EQ_I64(est(t, "OpenAIDalle3", "{\"image\":[\"comfy_credits_batch\",3]}", &r), est(t, "OpenAIDalle3", "{}", NULL));
    cc_price_table_free(t);
}

/* cc_price_estimate_tree() on the parsed inputs gives exactly what
** cc_price_estimate() gives on their text: every shipped case, linked and
** odd inputs, an unknown class, and its own errors. */
static int same_result(const cc_price_result *a, const cc_price_result *b) {
    return a->micro == b->micro && a->used_default == b->used_default && a->from_usage == b->from_usage &&
           !strcmp(a->rule, b->rule) && !strcmp(a->family, b->family) && !strcmp(a->model, b->model) &&
           !strcmp(a->warning, b->warning) && a->calls == b->calls;
}

static void tree_vs_text(const cc_price_table *t, const char *cls, const char *inputs) {
    cc_price_result a, b;
    cc_error ea, eb;
    cc_rc ra = cc_price_estimate(t, cls, inputs, strlen(inputs), &a, &ea);
    cJSON *root = cJSON_Parse(inputs);
    CHECK(root != NULL);
    cc_rc rb = cc_price_estimate_tree(t, cls, root, &b, &eb);
    cJSON_Delete(root);
    if (ra != rb || (ra == CC_OK && !same_result(&a, &b)) || (ra != CC_OK && strcmp(ea.message, eb.message)))
        fprintf(stderr, "  tree vs text %s %s: %lld/%lld '%s'/'%s'\n", cls, inputs, (long long)a.micro,
                (long long)b.micro, ra == CC_OK ? "" : ea.message, rb == CC_OK ? "" : eb.message);
    CHECK(ra == rb);
    if (ra == CC_OK) CHECK(same_result(&a, &b));
    else CHECK_STR(ea.message, eb.message);
}

static void test_estimate_tree(void) {
    cc_price_table *t = load_shipped();
    if (!t) return;
    for (size_t i = 0; i < sizeof SHIPPED / sizeof SHIPPED[0]; i++) tree_vs_text(t, SHIPPED[i].cls, SHIPPED[i].inputs);
    tree_vs_text(t, "SomeFutureApiNode", "{}");
    tree_vs_text(t, "OpenAIDalle3", "{\"size\":[\"1\",0],\"quality\":[\"2\",0]}");
    tree_vs_text(t, "OpenAIDalle2", "{\"n\":2000000}");               /* error: above any multiplier */
    tree_vs_text(t, "OpenAIDalle2", "{\"n\":{\"a\":[1,2]},\"size\":true}");
    tree_vs_text(t, "OpenAIChatNode", "{\"model\":\"gpt-5\",\"prompt\":\"h\\u00e9llo\",\"max_output_tokens\":1.0}");
    cc_price_result r;
    cc_error e;
    cJSON *arr = cJSON_Parse("[1]");
    CHECK(cc_price_estimate_tree(t, "OpenAIDalle2", arr, &r, &e) == CC_ERR_INVALID);
    CHECK_STR(e.message, "inputs must be a JSON object");
    cJSON_Delete(arr);
    CHECK(cc_price_estimate_tree(t, "", NULL, &r, &e) == CC_ERR_INVALID);
    CHECK(cc_price_estimate_tree(t, "OpenAIDalle3", NULL, &r, &e) == CC_OK);
    CHECK_EQ_I64(r.micro, est(t, "OpenAIDalle3", "{}", NULL));
    cc_price_table_free(t);
}

void suite_pricing(void) {
    RUN(test_batch_calls);
    RUN(test_estimate_tree);
    RUN(test_parse_errors);
    RUN(test_parse_ok_and_lookup);
    RUN(test_default_rule);
    RUN(test_linked_worst_case);
    RUN(test_tokens_estimate);
    RUN(test_actual_precedence);
    RUN(test_overflow);
    RUN(test_shipped_rules);
    RUN(test_shipped_worst_cases);
}
