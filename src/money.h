/*
** money.h — exact integer money: decimal parsing, currencies, conversion.
**
** Contract:
**   - cc_decimal_to_scaled("0.04", 6, &v) gives v = 40000: a decimal string
**     (optional leading '-', digits, optional '.', at most `scale` fraction
**     digits) becomes an integer scaled by 10^scale. More fraction digits than
**     `scale`, exponents, spaces, or overflow past CC_BALANCE_MAX are errors,
**     never silent rounding.
**   - cc_muldiv_half_up(a, b, d) = round_half_up(a*b/d) computed in 128-bit
**     integers; a, b >= 0, d > 0. Overflow of the int64 result is an error.
**   - A currency is an ISO 4217 code (case-insensitive on input, stored lower
**     case) with its minor-unit exponent: 2 for USD/EUR, 0 for JPY/KRW and
**     the other zero-decimal currencies Stripe lists, 3 for BHD/KWD/...
**   - A rate table maps a currency to micro-credits per major unit
**     (USD default 211,000,000 = 211 credits, Comfy.org's rate). Converting a
**     payment rounds half-up to whole credits, as Comfy.org's frontend does
**     (950 US cents -> 2,005 credits; 14,650 cents -> 30,912).
*/
#ifndef CC_MONEY_H
#define CC_MONEY_H

#include "cc_common.h"

#define CC_CREDITS_PER_USD_DEFAULT 211
#define CC_RATES_MAX 64 /* currencies in one rate table */

cc_rc cc_decimal_to_scaled(const char *s, int scale, int64_t *out,
                           const char *field, cc_error *err);

/* Formats v (scaled by 10^scale) as a decimal with exactly `scale` fraction
** digits trimmed of trailing zeros (keeps at least `min_frac` digits).
** Returns the number of bytes written (excluding NUL) or -1 if buf is small. */
int cc_scaled_to_decimal(int64_t v, int scale, int min_frac, char *buf,
                         size_t buf_bytes);

cc_rc cc_muldiv_half_up(int64_t a, int64_t b, int64_t d, int64_t *out,
                        cc_error *err);

/* Minor-unit exponent of an ISO currency, or -1 if the code is unknown or
** malformed. Accepts upper or lower case. */
int cc_currency_exponent(const char *code);

typedef struct cc_rate {
    char currency[4];            /* lower case ISO code */
    int64_t micro_per_major;     /* micro-credits per one major unit */
} cc_rate;

typedef struct cc_rates {
    int n;
    cc_rate r[CC_RATES_MAX];
    int64_t rounding_micro;      /* granularity of conversion results */
} cc_rates;

/* USD only, 211 credits per dollar, rounding to whole credits. */
void cc_rates_default(cc_rates *rates);

/* Adds or replaces one currency's rate. micro_per_major must be > 0 and at
** most CC_AMOUNT_MAX. */
cc_rc cc_rates_set(cc_rates *rates, const char *currency,
                   int64_t micro_per_major, cc_error *err);

/* Credits (in micro-credits) bought by amount_minor minor units of currency,
** rounded half-up to rates->rounding_micro. amount_minor must be > 0. */
cc_rc cc_rates_convert(const cc_rates *rates, const char *currency,
                       int64_t amount_minor, int64_t *micro_out, cc_error *err);

#endif
