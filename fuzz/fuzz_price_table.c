/* Price tables (operator JSON) and estimates: any table that parses prices
** any node class and inputs to an amount >= 0, and actual() never exceeds
** its own bounds. Input: table JSON 0xff inputs JSON. */
#include <stdio.h>
#include "fuzz_util.h"
#include "pricing.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    char *table, *inputs;
    fz_split(d, n, &table, &inputs);
    cc_price_table *t = NULL;
    cc_error e;
    if (cc_price_table_parse(table, strlen(table), &t, &e) == CC_OK) {
        int count = cc_price_table_count(t);
        for (int i = 0; i < count && i < 8; i++) {
            const char *name = cc_price_table_name(t, i);
            FZ_CHECK(name && cc_price_table_has(t, name));
            cc_price_result r;
            if (cc_price_estimate(t, name, inputs, strlen(inputs), &r, &e) == CC_OK) FZ_CHECK(r.micro >= 0);
            cc_usage u;
            cc_usage_init(&u);
            u.input_tokens = 1000;
            u.output_tokens = 500;
            if (cc_price_actual(t, name, inputs, strlen(inputs), &u, 1000000, &r, &e) == CC_OK) FZ_CHECK(r.micro >= 0);
        }
        /* A class without a rule is priced by "default" (the table may name a rule "NoSuchNode":
        ** the fuzzer found that one, kept as seed nosuchnode-rule). */
        cc_price_result r;
        if (!cc_price_table_has(t, "NoSuchNode") &&
            cc_price_estimate(t, "NoSuchNode", inputs, strlen(inputs), &r, &e) == CC_OK)
            FZ_CHECK(r.used_default);
        cc_price_table_free(t);
    }
    free(table);
    free(inputs);
    return 0;
}
