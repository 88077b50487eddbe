/*
** stripe.c — Stripe Checkout client and webhook signature check.
** See stripe.h. Stripe facts: shared/reference/anchors.md §4.
*/
#include "stripe.h"
#include "curl_mem.h"
#include "money.h"
#include "tls.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <string.h>

struct cc_stripe {
    char *base;
    char *auth_header; /* "Authorization: Bearer sk_..." */
    char version[CC_STRIPE_VERSION_BYTES_MAX + 1];
    char version_header[CC_STRIPE_VERSION_BYTES_MAX + 32]; /* "Stripe-Version: ..." */
    int timeout_ms;
};


/* docs.stripe.com/currencies#minimum-and-maximum-charge-amounts (minor units). */
static const struct { const char *code; int64_t minor; } MIN_CHARGE[] = {
    {"usd", 50},   {"aed", 200}, {"aud", 50},  {"bgn", 100}, {"brl", 50},   {"cad", 50},
    {"chf", 50},   {"czk", 1500}, {"dkk", 250}, {"eur", 50},  {"gbp", 30},   {"hkd", 400},
    {"huf", 17500}, {"inr", 50}, {"jpy", 50},  {"mxn", 1000}, {"myr", 200}, {"nok", 300},
    {"nzd", 50},   {"pln", 200}, {"ron", 200}, {"sek", 300}, {"sgd", 50},   {"thb", 1000},
};

int64_t cc_stripe_min_charge_minor(const char *currency) {
    if (!currency) return 0;
    for (size_t i = 0; i < sizeof MIN_CHARGE / sizeof MIN_CHARGE[0]; i++)
        if (cc_strcasecmp(currency, MIN_CHARGE[i].code) == 0) return MIN_CHARGE[i].minor;
    return 0;
}

int cc_stripe_api_version_valid(const char *v) {
    /* YYYY-MM-DD, optionally .name (Stripe's release name, lower-case letters) */
    size_t n = v ? strnlen(v, CC_STRIPE_VERSION_BYTES_MAX + 1) : 0;
    if (n < 10 || n > CC_STRIPE_VERSION_BYTES_MAX) return 0;
    for (int i = 0; i < 10; i++) {
        int dash = i == 4 || i == 7;
        if (dash ? v[i] != '-' : (v[i] < '0' || v[i] > '9')) return 0;
    }
    if (n == 10) return 1;
    if (v[10] != '.' || n == 11) return 0;
    for (size_t i = 11; i < n; i++)
        if (v[i] < 'a' || v[i] > 'z') return 0;
    return 1;
}

static int uses_allowed_types(const char *version) {
    return strncmp(version, CC_STRIPE_VERSION_ALLOWED_TYPES, 10) >= 0; /* ISO dates order as strings */
}

const char *cc_stripe_api_version(const cc_stripe *s) { return s->version; }

int cc_stripe_methods_allowed(const char *currency) {
    if (!currency || cc_strcasecmp(currency, "usd") != 0) return CC_PAY_CARD;
    return CC_PAY_CARD | CC_PAY_WECHAT | CC_PAY_ALIPAY;
}

cc_rc cc_stripe_open(const char *api_base, const char *secret_key, const char *api_version, int timeout_ms,
                     cc_stripe **out, cc_error *err) {
    *out = NULL;
    if (cc_curl_init() != CURLE_OK) return cc_fail(err, CC_ERR_STORAGE, "", "libcurl failed to initialise");
    if (!api_base || (strncmp(api_base, "https://", 8) && strncmp(api_base, "http://127.", 11) &&
                      strncmp(api_base, "http://localhost", 16)))
        return cc_fail(err, CC_ERR_INVALID, "api_base",
                       "Stripe API base must be https:// (plain http only for a loopback test server)");
    if (strlen(api_base) > 512) return cc_fail(err, CC_ERR_INVALID, "api_base", "Stripe API base is too long");
    if (!secret_key || (strncmp(secret_key, "sk_", 3) && strncmp(secret_key, "rk_", 3)) || strlen(secret_key) > 255)
        return cc_fail(err, CC_ERR_INVALID, "secret_key", "the Stripe secret key must start with sk_ or rk_");
    for (const char *p = secret_key; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return cc_fail(err, CC_ERR_INVALID, "secret_key", "the Stripe secret key contains invalid characters");
    if (!api_version || !*api_version) api_version = CC_STRIPE_API_VERSION_DEFAULT;
    if (!cc_stripe_api_version_valid(api_version))
        return cc_fail(err, CC_ERR_INVALID, "api_version",
                       "the Stripe API version must look like 2026-10-28.endive or 2024-06-20");
    if (timeout_ms < 100 || timeout_ms > 120000)
        return cc_fail(err, CC_ERR_INVALID, "timeout_ms", "timeout must be 100..120000 ms");
    cc_stripe *s = calloc(1, sizeof *s);
    if (!s) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    s->base = strdup(api_base);
    size_t n = strlen(secret_key) + 32;
    s->auth_header = malloc(n);
    if (!s->base || !s->auth_header) {
        cc_stripe_close(s);
        return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    snprintf(s->auth_header, n, "Authorization: Bearer %s", secret_key);
    size_t bl = strlen(s->base);
    while (bl && s->base[bl - 1] == '/') s->base[--bl] = 0;
    s->timeout_ms = timeout_ms;
    snprintf(s->version, sizeof s->version, "%s", api_version);
    snprintf(s->version_header, sizeof s->version_header, "Stripe-Version: %s", api_version);
    *out = s;
    return CC_OK;
}

void cc_stripe_close(cc_stripe *s) {
    if (!s) return;
    if (s->auth_header) {
        OPENSSL_cleanse(s->auth_header, strlen(s->auth_header));
        free(s->auth_header);
    }
    free(s->base);
    free(s);
}

/* ---------------------------------------------------------------- form body */

typedef struct buf {
    char *p;
    size_t len, cap;
    int oom;
} buf;

static void buf_add(buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 1024;
        while (nc < b->len + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) { b->oom = 1; return; }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void form(buf *b, CURL *c, const char *key, const char *value) {
    if (b->len) buf_add(b, "&", 1);
    char *k = curl_easy_escape(c, key, 0), *v = curl_easy_escape(c, value, 0);
    if (!k || !v) b->oom = 1;
    else {
        buf_add(b, k, strlen(k));
        buf_add(b, "=", 1);
        buf_add(b, v, strlen(v));
    }
    curl_free(k);
    curl_free(v);
}

static void form_i64(buf *b, CURL *c, const char *key, int64_t v) {
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    form(b, c, key, tmp);
}

/* ---------------------------------------------------------------- HTTP */

static size_t collect(char *data, size_t size, size_t n, void *ud) {
    buf *b = ud;
    size_t k = size * n;
    if (b->len + k > CC_STRIPE_RESPONSE_BYTES_MAX) return 0;
    buf_add(b, data, k);
    return b->oom ? 0 : k;
}

static cc_rc call(cc_stripe *s, const char *method, const char *path, const char *body, const char *idem,
                  buf *resp, long *status, cc_error *err) {
    char url[1024];
    if ((size_t)snprintf(url, sizeof url, "%s%s", s->base, path) >= sizeof url)
        return cc_fail(err, CC_ERR_LIMIT, "path", "Stripe request URL is too long");
    CURL *c = curl_easy_init();
    if (!c) return cc_fail(err, CC_ERR_NOMEM, "", "cannot create a libcurl handle");
    struct curl_slist *h = NULL, *t;
    char idem_h[300];
    cc_rc rc = CC_OK;
    if (!(t = curl_slist_append(h, s->auth_header))) rc = CC_ERR_NOMEM; else h = t;
    if (rc == CC_OK && !(t = curl_slist_append(h, "Content-Type: application/x-www-form-urlencoded"))) rc = CC_ERR_NOMEM; else if (rc == CC_OK) h = t;
    if (rc == CC_OK && !(t = curl_slist_append(h, s->version_header))) rc = CC_ERR_NOMEM; else if (rc == CC_OK) h = t;
    if (rc == CC_OK && idem) {
        snprintf(idem_h, sizeof idem_h, "Idempotency-Key: %s", idem);
        if (!(t = curl_slist_append(h, idem_h))) rc = CC_ERR_NOMEM; else h = t;
    }
    if (rc != CC_OK) {
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)s->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(s->timeout_ms < 10000 ? s->timeout_ms : 10000));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    cc_tls_apply(c); /* explicit CA bundle: the wheel's libcurl has the build machine's path */
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
    }
    CURLcode cr = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    OPENSSL_cleanse(idem_h, sizeof idem_h);
    if (cr != CURLE_OK)
        return cc_fail(err, CC_ERR_STORAGE, "stripe", "cannot reach Stripe: %s",
                       errbuf[0] ? errbuf : curl_easy_strerror(cr));
    return CC_OK;
}

static void copy_str(char *dst, size_t cap, const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    dst[0] = 0;
    if (cJSON_IsString(v) && v->valuestring) snprintf(dst, cap, "%s", v->valuestring);
}

/* A string field of a Stripe object into a fixed buffer: refused, never
** truncated, when it does not fit. */
static cc_rc take_str(char *dst, size_t cap, const cJSON *o, const char *k, const char *field, cc_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    dst[0] = 0;
    if (!cJSON_IsString(v) || !v->valuestring) return CC_OK;
    size_t n = strlen(v->valuestring);
    if (n >= cap)
        return cc_fail(err, CC_ERR_LIMIT, field, "Stripe sent a %s of %zu bytes; at most %zu are accepted", field, n,
                       cap - 1);
    memcpy(dst, v->valuestring, n + 1);
    return CC_OK;
}

#define TRY_RC(x) do { cc_rc rc_ = (x); if (rc_ != CC_OK) return rc_; } while (0)

static int64_t get_i64(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9e15) return 0;
    return (int64_t)v->valuedouble; /* Stripe amounts are integers in minor units */
}

static int64_t parse_pos_int(const char *s) {
    if (!s || !*s || strlen(s) > 18) return 0;
    int64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return 0;
        v = v * 10 + (*s - '0');
    }
    return v;
}

/* The method used: payment_intent is null, an id, or an object whose
** latest_charge is null, an id, or a Charge with payment_method_details. */
static cc_rc method_used_from(const cJSON *o, cc_checkout_session *out, cc_error *err) {
    const cJSON *pi = cJSON_GetObjectItemCaseSensitive(o, "payment_intent");
    if (cJSON_IsString(pi))
        return take_str(out->payment_intent, sizeof out->payment_intent, o, "payment_intent", "payment_intent", err);
    if (!cJSON_IsObject(pi)) return CC_OK;
    TRY_RC(take_str(out->payment_intent, sizeof out->payment_intent, pi, "id", "payment_intent", err));
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(pi, "latest_charge");
    const cJSON *pmd = cJSON_IsObject(ch) ? cJSON_GetObjectItemCaseSensitive(ch, "payment_method_details") : NULL;
    if (!cJSON_IsObject(pmd)) return CC_OK;
    return take_str(out->method_used, sizeof out->method_used, pmd, "type", "payment_method_details.type", err);
}

static int64_t md_int(const cJSON *md, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(md, k);
    return cJSON_IsString(v) ? parse_pos_int(v->valuestring) : 0;
}

static cc_rc session_from(const cJSON *o, cc_checkout_session *out, cc_error *err) {
    memset(out, 0, sizeof *out);
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(o, "object");
    if (!cJSON_IsString(obj) || strcmp(obj->valuestring, "checkout.session") != 0)
        return cc_fail(err, CC_ERR_INVALID, "object", "not a Checkout Session object");
    TRY_RC(take_str(out->id, sizeof out->id, o, "id", "id", err));
    if (!out->id[0]) return cc_fail(err, CC_ERR_INVALID, "id", "Checkout Session without an id");
    TRY_RC(take_str(out->url, sizeof out->url, o, "url", "url", err));
    TRY_RC(take_str(out->status, sizeof out->status, o, "status", "status", err));
    TRY_RC(take_str(out->payment_status, sizeof out->payment_status, o, "payment_status", "payment_status", err));
    TRY_RC(take_str(out->currency, sizeof out->currency, o, "currency", "currency", err));
    TRY_RC(take_str(out->customer_email, sizeof out->customer_email, o, "customer_email", "customer_email", err));
    out->amount_total = get_i64(o, "amount_total");
    out->created_s = get_i64(o, "created");
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(o, "client_reference_id");
    if (cJSON_IsString(ref)) out->account_id = parse_pos_int(ref->valuestring);
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(o, "metadata");
    if (cJSON_IsObject(md)) {
        out->credits_micro = md_int(md, "credits_micro");
        out->priced_amount_minor = md_int(md, "amount_minor");
        out->rate_micro = md_int(md, "rate_micro");
        TRY_RC(take_str(out->priced_currency, sizeof out->priced_currency, md, "currency", "metadata.currency", err));
        TRY_RC(take_str(out->methods_offered, sizeof out->methods_offered, md, "method", "metadata.method", err));
    }
    return method_used_from(o, out, err);
}

cc_rc cc_stripe_session_parse(const char *json, size_t len, cc_checkout_session *out, cc_error *err) {
    if (!json || len == 0 || len > CC_STRIPE_RESPONSE_BYTES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "body", "empty or oversized Stripe object");
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return cc_fail(err, CC_ERR_INVALID, "body", "Stripe sent malformed JSON");
    /* Accept a session, or an event whose data.object is a session. */
    const cJSON *o = root;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    if (cJSON_IsObject(data)) {
        const cJSON *inner = cJSON_GetObjectItemCaseSensitive(data, "object");
        if (cJSON_IsObject(inner)) o = inner;
    }
    cc_rc rc = session_from(o, out, err);
    cJSON_Delete(root);
    return rc;
}

static cc_rc stripe_error(const buf *b, long status, cc_error *err) {
    char msg[240] = "", type[64] = "", code[64] = "", param[64] = "";
    cJSON *root = b->p ? cJSON_ParseWithLength(b->p, b->len) : NULL;
    const cJSON *e = root ? cJSON_GetObjectItemCaseSensitive(root, "error") : NULL;
    if (cJSON_IsObject(e)) {
        copy_str(msg, sizeof msg, e, "message");
        copy_str(type, sizeof type, e, "type");
        copy_str(code, sizeof code, e, "code");
        copy_str(param, sizeof param, e, "param");
    }
    cJSON_Delete(root);
    cc_rc rc = status == 400 || status == 404 ? CC_ERR_INVALID : status == 402 ? CC_ERR_STATE : CC_ERR_STORAGE;
    return cc_fail(err, rc, param[0] ? param : "stripe", "Stripe answered %ld %s%s%s: %s", status, type,
                   code[0] ? "/" : "", code, msg[0] ? msg : "(no message)");
}

static cc_rc parse_response(const buf *b, long status, cc_checkout_session *out, cc_error *err) {
    if (b->oom) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    if (status < 200 || status >= 300) return stripe_error(b, status, err);
    return cc_stripe_session_parse(b->p, b->len, out, err);
}

static int valid_id(const char *id) {
    size_t n = id ? strnlen(id, CC_STRIPE_ID_BYTES_MAX + 1) : 0;
    if (n < 4 || n > CC_STRIPE_ID_BYTES_MAX || strncmp(id, "cs_", 3) != 0) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return 0;
    }
    return 1;
}

static int valid_url(const char *u) {
    size_t n = u ? strnlen(u, CC_STRIPE_URL_BYTES_MAX + 1) : 0;
    if (n == 0 || n > CC_STRIPE_URL_BYTES_MAX) return 0;
    if (strncmp(u, "https://", 8) && strncmp(u, "http://", 7)) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)u[i] <= 0x20 || u[i] == 0x7f) return 0;
    return 1;
}

cc_rc cc_stripe_checkout_body(const char *api_version, const cc_checkout_params *p, char **body_out, cc_error *err) {
    *body_out = NULL;
    if (!cc_stripe_api_version_valid(api_version))
        return cc_fail(err, CC_ERR_INVALID, "api_version", "not a Stripe API version");
    char cur[4];
    int exp = cc_currency_exponent(p->currency);
    if (exp < 0) return cc_fail(err, CC_ERR_INVALID, "currency", "unknown currency");
    for (int i = 0; i < 3; i++) cur[i] = (char)(p->currency[i] | 0x20);
    cur[3] = 0;
    if (p->amount_minor <= 0 || p->amount_minor > 99999999)  /* Stripe's unit_amount limit (8 digits) */
        return cc_fail(err, CC_ERR_INVALID, "amount_minor", "amount must be 1..99,999,999 minor units");
    int64_t min_minor = cc_stripe_min_charge_minor(cur);
    if (p->amount_minor < min_minor)
        return cc_fail(err, CC_ERR_LIMIT, "amount_minor",
                       "Stripe's minimum charge in %s is %lld minor units; %lld is below it", cur,
                       (long long)min_minor, (long long)p->amount_minor);
    if (p->credits_micro <= 0 || p->credits_micro > CC_AMOUNT_MAX)
        return cc_fail(err, CC_ERR_INVALID, "credits_micro", "credits must be positive");
    if (p->rate_micro <= 0 || p->rate_micro > CC_AMOUNT_MAX)
        return cc_fail(err, CC_ERR_INVALID, "rate_micro", "the rate the purchase was priced at is required");
    if (p->account_id <= 0) return cc_fail(err, CC_ERR_INVALID, "account_id", "account id must be positive");
    if (!p->customer_email || !*p->customer_email || strlen(p->customer_email) > CC_EMAIL_BYTES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "customer_email", "the account's email is required");
    if (!valid_url(p->success_url)) return cc_fail(err, CC_ERR_INVALID, "success_url", "success_url must be http(s)");
    if (!valid_url(p->cancel_url)) return cc_fail(err, CC_ERR_INVALID, "cancel_url", "cancel_url must be http(s)");
    int methods = p->methods ? p->methods : CC_PAY_CARD;
    if (methods & ~(CC_PAY_CARD | CC_PAY_WECHAT | CC_PAY_ALIPAY))
        return cc_fail(err, CC_ERR_INVALID, "methods", "unknown payment method");
    if (methods & ~cc_stripe_methods_allowed(cur))
        return cc_fail(err, CC_ERR_INVALID, "methods", "WeChat Pay and Alipay are only offered when paying in USD");
    const char *name = p->product_name && *p->product_name ? p->product_name : "ComfyUI credits";
    if (strlen(name) > 200) return cc_fail(err, CC_ERR_INVALID, "product_name", "product name is too long");

    CURL *c = curl_easy_init();
    if (!c) return cc_fail(err, CC_ERR_NOMEM, "", "cannot create a libcurl handle");
    buf body = {0};
    form(&body, c, "mode", "payment");
    form(&body, c, "line_items[0][quantity]", "1");
    form(&body, c, "line_items[0][price_data][currency]", cur);
    form_i64(&body, c, "line_items[0][price_data][unit_amount]", p->amount_minor);
    form(&body, c, "line_items[0][price_data][product_data][name]", name);
    form(&body, c, "customer_email", p->customer_email);
    form_i64(&body, c, "client_reference_id", p->account_id);
    form_i64(&body, c, "metadata[account_id]", p->account_id);
    /* The price, fixed now: fulfilment credits exactly this. */
    form_i64(&body, c, "metadata[credits_micro]", p->credits_micro);
    form_i64(&body, c, "metadata[amount_minor]", p->amount_minor);
    form(&body, c, "metadata[currency]", cur);
    form_i64(&body, c, "metadata[rate_micro]", p->rate_micro);
    static const struct { int bit; const char *name; } M[] = {
        {CC_PAY_CARD, "card"}, {CC_PAY_WECHAT, "wechat_pay"}, {CC_PAY_ALIPAY, "alipay"}};
    /* The methods offered (the one used is read from the charge later). */
    char offered[CC_STRIPE_METHODS_BYTES_MAX + 1] = "";
    for (size_t k = 0; k < 3; k++)
        if (methods & M[k].bit) {
            if (offered[0]) strcat(offered, ",");
            strcat(offered, M[k].name);
        }
    form(&body, c, "metadata[method]", offered);
    /* 2026-09-30.endive removed payment_method_types from Checkout create;
    ** allowed_payment_method_types filters the methods enabled in the
    ** Dashboard instead (official SDK, stripe==16.x typed params). */
    const char *list = uses_allowed_types(api_version) ? "allowed_payment_method_types" : "payment_method_types";
    int i = 0;
    char key[64];
    for (size_t k = 0; k < 3; k++) {
        if (!(methods & M[k].bit)) continue;
        snprintf(key, sizeof key, "%s[%d]", list, i++);
        form(&body, c, key, M[k].name);
    }
    if (methods & CC_PAY_WECHAT) form(&body, c, "payment_method_options[wechat_pay][client]", "web");
    form(&body, c, "success_url", p->success_url);
    form(&body, c, "cancel_url", p->cancel_url);
    if (p->expires_at_s > 0) form_i64(&body, c, "expires_at", p->expires_at_s);
    curl_easy_cleanup(c);
    if (body.oom) {
        free(body.p);
        return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    *body_out = body.p;
    return CC_OK;
}

cc_rc cc_stripe_checkout_create(cc_stripe *s, const cc_checkout_params *p, cc_checkout_session *out, cc_error *err) {
    size_t ik = p->idempotency_key ? strnlen(p->idempotency_key, 256) : 0;
    if (ik == 0 || ik > 255) return cc_fail(err, CC_ERR_INVALID, "idempotency_key", "an Idempotency-Key (1..255) is required");
    for (size_t i = 0; i < ik; i++)
        if ((unsigned char)p->idempotency_key[i] <= 0x20 || p->idempotency_key[i] == 0x7f)
            return cc_fail(err, CC_ERR_INVALID, "idempotency_key", "Idempotency-Key has invalid characters");
    char *body = NULL;
    cc_rc rc = cc_stripe_checkout_body(s->version, p, &body, err);
    if (rc != CC_OK) return rc;
    buf resp = {0};
    long status = 0;
    rc = call(s, "POST", "/v1/checkout/sessions", body, p->idempotency_key, &resp, &status, err);
    free(body);
    if (rc == CC_OK) rc = parse_response(&resp, status, out, err);
    free(resp.p);
    return rc;
}

static cc_rc by_id(cc_stripe *s, const char *method, const char *fmt, const char *id, cc_checkout_session *out,
                   cc_error *err) {
    if (!valid_id(id)) return cc_fail(err, CC_ERR_INVALID, "session_id", "not a Checkout Session id");
    char path[400];
    snprintf(path, sizeof path, fmt, id);
    buf resp = {0};
    long status = 0;
    cc_rc rc = call(s, method, path, NULL, NULL, &resp, &status, err);
    if (rc == CC_OK) rc = parse_response(&resp, status, out, err);
    free(resp.p);
    return rc;
}

cc_rc cc_stripe_checkout_retrieve(cc_stripe *s, const char *id, cc_checkout_session *out, cc_error *err) {
    /* expand[]=payment_intent.latest_charge: the charge says which method paid */
    return by_id(s, "GET", "/v1/checkout/sessions/%s?expand%%5B%%5D=payment_intent.latest_charge", id, out, err);
}

cc_rc cc_stripe_checkout_expire(cc_stripe *s, const char *id, cc_checkout_session *out, cc_error *err) {
    return by_id(s, "POST", "/v1/checkout/sessions/%s/expire", id, out, err);
}

/* ---------------------------------------------------------------- receipts */

cc_rc cc_stripe_payment_intent_parse(const char *json, size_t len, cc_payment_receipt *out, cc_error *err) {
    memset(out, 0, sizeof *out);
    if (!json || len == 0 || len > CC_STRIPE_RESPONSE_BYTES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "body", "empty or oversized Stripe object");
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return cc_fail(err, CC_ERR_INVALID, "body", "Stripe sent malformed JSON");
    cc_rc rc = CC_OK;
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(root, "object");
    if (!cJSON_IsString(obj) || strcmp(obj->valuestring, "payment_intent") != 0) {
        rc = cc_fail(err, CC_ERR_INVALID, "object", "not a PaymentIntent object");
        goto out;
    }
    if ((rc = take_str(out->payment_intent, sizeof out->payment_intent, root, "id", "id", err)) != CC_OK ||
        (rc = take_str(out->status, sizeof out->status, root, "status", "status", err)) != CC_OK)
        goto out;
    out->livemode = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "livemode"));
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(root, "latest_charge");
    if (cJSON_IsString(ch)) { /* not expanded: the id only */
        rc = take_str(out->charge, sizeof out->charge, root, "latest_charge", "latest_charge", err);
        goto out;
    }
    if (!cJSON_IsObject(ch)) goto out; /* null: no charge yet */
    if ((rc = take_str(out->charge, sizeof out->charge, ch, "id", "latest_charge.id", err)) != CC_OK ||
        (rc = take_str(out->receipt_url, sizeof out->receipt_url, ch, "receipt_url", "receipt_url", err)) != CC_OK)
        goto out;
    if (out->receipt_url[0] && !valid_url(out->receipt_url)) {
        out->receipt_url[0] = 0;
        rc = cc_fail(err, CC_ERR_INVALID, "receipt_url", "Stripe sent a receipt_url that is not an http(s) URL");
        goto out;
    }
    const cJSON *pmd = cJSON_GetObjectItemCaseSensitive(ch, "payment_method_details");
    if (cJSON_IsObject(pmd))
        rc = take_str(out->method_used, sizeof out->method_used, pmd, "type", "payment_method_details.type", err);
out:
    cJSON_Delete(root);
    return rc;
}

static int valid_pi(const char *id) {
    size_t n = id ? strnlen(id, CC_STRIPE_ID_BYTES_MAX + 1) : 0;
    if (n < 4 || n > CC_STRIPE_ID_BYTES_MAX || strncmp(id, "pi_", 3) != 0) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return 0;
    }
    return 1;
}

cc_rc cc_stripe_payment_receipt(cc_stripe *s, const char *id, cc_payment_receipt *out, cc_error *err) {
    memset(out, 0, sizeof *out);
    if (!valid_pi(id)) return cc_fail(err, CC_ERR_INVALID, "payment_intent", "not a PaymentIntent id");
    char path[400];
    snprintf(path, sizeof path, "/v1/payment_intents/%s?expand%%5B%%5D=latest_charge", id);
    buf resp = {0};
    long status = 0;
    cc_rc rc = call(s, "GET", path, NULL, NULL, &resp, &status, err);
    if (rc == CC_OK) {
        if (resp.oom) rc = cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
        else if (status < 200 || status >= 300) rc = stripe_error(&resp, status, err);
        else rc = cc_stripe_payment_intent_parse(resp.p, resp.len, out, err);
    }
    free(resp.p);
    return rc;
}

/* ---------------------------------------------------------------- webhooks */

cc_rc cc_stripe_webhook_verify(const char *secret, const char *sig_header, const char *body, size_t len,
                               int64_t now_s, int64_t tolerance_s, cc_error *err) {
    if (!secret || !*secret || strlen(secret) > 255)
        return cc_fail(err, CC_ERR_INVALID, "secret", "no webhook signing secret is configured");
    if (!sig_header || strlen(sig_header) > 4096)
        return cc_fail(err, CC_ERR_INVALID, "Stripe-Signature", "missing or oversized Stripe-Signature header");
    if (!body || len > CC_STRIPE_RESPONSE_BYTES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "body", "missing or oversized webhook body");
    if (tolerance_s <= 0) tolerance_s = CC_STRIPE_TOLERANCE_S_DEFAULT;
    int64_t t = -1;
    /* Collect the v1 signatures; ignore other schemes (v0) as Stripe does. */
    enum { SIGS_MAX = 8 };
    char sigs[SIGS_MAX][65];
    int nsig = 0;
    const char *p = sig_header;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n && *p == ' ') { p++; n--; }
        if (n > 2 && p[0] == 't' && p[1] == '=') {
            char tmp[24];
            if (n - 2 < sizeof tmp) {
                memcpy(tmp, p + 2, n - 2);
                tmp[n - 2] = 0;
                t = parse_pos_int(tmp);
            }
        } else if (n == 67 && strncmp(p, "v1=", 3) == 0 && nsig < SIGS_MAX) {
            memcpy(sigs[nsig], p + 3, 64);
            sigs[nsig][64] = 0;
            nsig++;
        }
        if (!end) break;
        p = end + 1;
    }
    if (t <= 0) return cc_fail(err, CC_ERR_INVALID, "Stripe-Signature", "Stripe-Signature has no timestamp");
    if (nsig == 0) return cc_fail(err, CC_ERR_INVALID, "Stripe-Signature", "Stripe-Signature has no v1 signature");
    char tstr[24];
    int tl = snprintf(tstr, sizeof tstr, "%lld.", (long long)t);
    unsigned char mac[32];
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = m ? EVP_MAC_CTX_new(m) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0), OSSL_PARAM_construct_end()};
    size_t outl = 0;
    int ok = ctx && EVP_MAC_init(ctx, (const unsigned char *)secret, strlen(secret), params) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)tstr, (size_t)tl) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)body, len) == 1 &&
             EVP_MAC_final(ctx, mac, &outl, sizeof mac) == 1 && outl == 32;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(m);
    if (!ok) return cc_fail(err, CC_ERR_STORAGE, "", "HMAC failed");
    char want[65];
    cc_hex_encode(mac, 32, want);
    int match = 0;
    for (int i = 0; i < nsig; i++) match |= CRYPTO_memcmp(want, sigs[i], 64) == 0;
    OPENSSL_cleanse(mac, sizeof mac);
    if (!match) return cc_fail(err, CC_ERR_INVALID, "Stripe-Signature", "webhook signature does not match");
    if (now_s - t > tolerance_s || t - now_s > tolerance_s)
        return cc_fail(err, CC_ERR_STATE, "Stripe-Signature", "webhook timestamp is outside the %llds tolerance",
                       (long long)tolerance_s);
    return CC_OK;
}
