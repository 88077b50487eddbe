/* Money strings: parse, and every parsed amount formats and parses back to itself. */
#include <stdio.h>
#include "fuzz_util.h"
#include "money.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    char *s = fz_str(d, n);
    cc_error e;
    int64_t v;
    for (int scale = 0; scale <= 6; scale += 2) {
        if (cc_decimal_to_scaled(s, scale, &v, "amount", &e) == CC_OK) {
            char buf[64], buf2[64];
            int k = cc_scaled_to_decimal(v, scale, 0, buf, sizeof buf);
            FZ_CHECK(k > 0);
            int64_t w;
            FZ_CHECK(cc_decimal_to_scaled(buf, scale, &w, "amount", &e) == CC_OK && w == v);
            FZ_CHECK(cc_scaled_to_decimal(w, scale, 0, buf2, sizeof buf2) == k && strcmp(buf, buf2) == 0);
        }
    }
    if (n >= 3) {
        char cur[4] = {s[0], s[1], s[2], 0};
        int exp = cc_currency_exponent(cur);
        cc_rates r;
        cc_rates_default(&r);
        int64_t amount = 0;
        memcpy(&amount, d, n < 8 ? n : 8);
        int64_t out;
        if (exp >= 0 && cc_rates_convert(&r, cur, amount, &out, &e) == CC_OK) FZ_CHECK(out >= 0);
    }
    free(s);
    return 0;
}
