/*
** money.c — exact integer money. See money.h for the contract.
*/
#include "money.h"

#include <ctype.h>
#include <string.h>

cc_rc cc_decimal_to_scaled(const char *s, int scale, int64_t *out,
                           const char *field, cc_error *err) {
    CC_ASSERT(scale >= 0 && scale <= 9);
    if (!s || !*s) return cc_fail(err, CC_ERR_INVALID, field, "%s is empty", field);
    const char *p = s;
    int neg = 0;
    if (*p == '-') { neg = 1; p++; }
    cc_i128 v = cc_i128_from_i64(0);
    const cc_i128 ten = cc_i128_from_i64(10);
    const cc_i128 digits_max = cc_i128_mul_i64(CC_BALANCE_MAX, 1000000000);
    int int_digits = 0, frac_digits = 0, seen_dot = 0;
    for (; *p; p++) {
        if (*p == '.') {
            if (seen_dot) goto bad;
            seen_dot = 1;
            continue;
        }
        if (*p < '0' || *p > '9') goto bad;
        if (seen_dot) {
            if (++frac_digits > scale)
                return cc_fail(err, CC_ERR_INVALID, field,
                               "%s '%.40s' has more than %d decimal places", field, s, scale);
        } else {
            int_digits++;
        }
        v = cc_i128_add(cc_i128_mul(v, ten), cc_i128_from_i64(*p - '0'));
        if (cc_i128_cmp(v, digits_max) > 0) goto big;
    }
    if (int_digits == 0 && frac_digits == 0) goto bad;
    for (int i = frac_digits; i < scale; i++) v = cc_i128_mul(v, ten);
    if (cc_i128_cmp_i64(v, CC_BALANCE_MAX) > 0) goto big;
    int64_t mag = 0;
    int fits = cc_i128_to_i64(v, &mag) == 0;
    CC_ASSERT(fits);
    *out = neg ? -mag : mag;
    return CC_OK;
bad:
    return cc_fail(err, CC_ERR_INVALID, field, "%s '%.40s' is not a decimal number", field, s);
big:
    return cc_fail(err, CC_ERR_INVALID, field, "%s '%.40s' is too large", field, s);
}

int cc_scaled_to_decimal(int64_t v, int scale, int min_frac, char *buf, size_t buf_bytes) {
    CC_ASSERT(scale >= 0 && scale <= 9 && min_frac >= 0 && min_frac <= scale);
    int64_t pow10 = 1;
    for (int i = 0; i < scale; i++) pow10 *= 10;
    /* Work on the magnitude as unsigned so INT64_MIN is representable. */
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    uint64_t ip = mag / (uint64_t)pow10, fp = mag % (uint64_t)pow10;
    char frac[16];
    int nfrac = scale;
    for (int i = scale - 1; i >= 0; i--) { frac[i] = (char)('0' + fp % 10); fp /= 10; }
    while (nfrac > min_frac && frac[nfrac - 1] == '0') nfrac--;
    frac[nfrac] = 0;
    int n = snprintf(buf, buf_bytes, "%s%llu%s%s", v < 0 ? "-" : "",
                     (unsigned long long)ip, nfrac ? "." : "", frac);
    if (n < 0 || (size_t)n >= buf_bytes) return -1;
    return n;
}

cc_rc cc_muldiv_half_up(int64_t a, int64_t b, int64_t d, int64_t *out, cc_error *err) {
    if (a < 0 || b < 0 || d <= 0)
        return cc_fail(err, CC_ERR_INVALID, "amount", "negative amount in conversion");
    cc_i128 q, r;
    cc_i128_divmod(cc_i128_mul_i64(a, b), cc_i128_from_i64(d), &q, &r);
    if (cc_i128_cmp_i64(cc_i128_add(r, r), d) >= 0) /* half-up: exact halves go up */
        q = cc_i128_add(q, cc_i128_from_i64(1));
    if (cc_i128_to_i64(q, out) != 0)
        return cc_fail(err, CC_ERR_INVALID, "amount", "amount overflows 64-bit micro-credits");
    return CC_OK;
}

/* Stripe's zero- and three-decimal currency lists; everything else ISO-known
** here is two-decimal. Unknown codes are refused rather than guessed. */
static const char *const ZERO_DECIMAL[] = {
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg",
    "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf", NULL};
static const char *const THREE_DECIMAL[] = {"bhd", "jod", "kwd", "omr", "tnd", NULL};
static const char *const TWO_DECIMAL[] = {
    "usd", "eur", "gbp", "cad", "aud", "nzd", "chf", "cny", "hkd", "sgd",
    "sek", "nok", "dkk", "pln", "czk", "huf", "ron", "bgn", "inr", "brl",
    "mxn", "myr", "thb", "php", "idr", "twd", "zar", "try", "ils", "aed",
    "sar", "ars", "cop", "pen", NULL};

static int in_list(const char *const *list, const char *code) {
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], code) == 0) return 1;
    return 0;
}

static int lower3(const char *code, char out[4]) {
    if (!code || strlen(code) != 3) return -1;
    for (int i = 0; i < 3; i++) {
        if (!isalpha((unsigned char)code[i])) return -1;
        out[i] = (char)tolower((unsigned char)code[i]);
    }
    out[3] = 0;
    return 0;
}

int cc_currency_exponent(const char *code) {
    char c[4];
    if (lower3(code, c) != 0) return -1;
    if (in_list(ZERO_DECIMAL, c)) return 0;
    if (in_list(THREE_DECIMAL, c)) return 3;
    if (in_list(TWO_DECIMAL, c)) return 2;
    return -1;
}

void cc_rates_default(cc_rates *rates) {
    memset(rates, 0, sizeof *rates);
    rates->rounding_micro = CC_MICRO;
    rates->n = 1;
    memcpy(rates->r[0].currency, "usd", 4);
    rates->r[0].micro_per_major = CC_CREDITS_PER_USD_DEFAULT * CC_MICRO;
}

cc_rc cc_rates_set(cc_rates *rates, const char *currency, int64_t micro_per_major,
                   cc_error *err) {
    char c[4];
    if (lower3(currency, c) != 0 || cc_currency_exponent(c) < 0)
        return cc_fail(err, CC_ERR_INVALID, "currency", "unknown currency '%.8s'",
                       currency ? currency : "");
    if (micro_per_major <= 0 || micro_per_major > CC_AMOUNT_MAX)
        return cc_fail(err, CC_ERR_INVALID, "rate",
                       "rate for %s must be between 1 and %lld micro-credits", c,
                       (long long)CC_AMOUNT_MAX);
    for (int i = 0; i < rates->n; i++) {
        if (strcmp(rates->r[i].currency, c) == 0) {
            rates->r[i].micro_per_major = micro_per_major;
            return CC_OK;
        }
    }
    if (rates->n >= CC_RATES_MAX)
        return cc_fail(err, CC_ERR_LIMIT, "currency", "at most %d currencies", CC_RATES_MAX);
    memcpy(rates->r[rates->n].currency, c, 4);
    rates->r[rates->n].micro_per_major = micro_per_major;
    rates->n++;
    return CC_OK;
}

cc_rc cc_rates_convert(const cc_rates *rates, const char *currency, int64_t amount_minor,
                       int64_t *micro_out, cc_error *err) {
    char c[4];
    int exp = lower3(currency, c) == 0 ? cc_currency_exponent(c) : -1;
    if (exp < 0)
        return cc_fail(err, CC_ERR_INVALID, "currency", "unknown currency '%.8s'",
                       currency ? currency : "");
    if (amount_minor <= 0 || amount_minor > CC_AMOUNT_MAX)
        return cc_fail(err, CC_ERR_INVALID, "amount_minor",
                       "amount must be a positive number of minor units");
    const cc_rate *rate = NULL;
    for (int i = 0; i < rates->n; i++)
        if (strcmp(rates->r[i].currency, c) == 0) rate = &rates->r[i];
    if (!rate)
        return cc_fail(err, CC_ERR_INVALID, "currency",
                       "no credit rate is configured for %s", c);
    CC_ASSERT(rates->rounding_micro > 0);
    int64_t pow10 = 1;
    for (int i = 0; i < exp; i++) pow10 *= 10;
    /* units of rounding_micro = round_half_up(minor * rate / (10^exp * rounding)) */
    cc_i128 d = cc_i128_mul_i64(pow10, rates->rounding_micro);
    cc_i128 q, r;
    cc_i128_divmod(cc_i128_mul_i64(amount_minor, rate->micro_per_major), d, &q, &r);
    if (cc_i128_cmp(cc_i128_add(r, r), d) >= 0) q = cc_i128_add(q, cc_i128_from_i64(1));
    cc_i128 micro = cc_i128_mul(q, cc_i128_from_i64(rates->rounding_micro));
    if (cc_i128_cmp_i64(micro, CC_AMOUNT_MAX) > 0)
        return cc_fail(err, CC_ERR_LIMIT, "amount_minor", "purchase is larger than %lld credits",
                       (long long)(CC_AMOUNT_MAX / CC_MICRO));
    int fits = cc_i128_to_i64(micro, micro_out) == 0;
    CC_ASSERT(fits);
    return CC_OK;
}
