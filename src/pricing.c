/*
** pricing.c — price tables for API nodes. See pricing.h for the contract.
**
** JSON format (format 1)
** ----------------------
**   {
**     "format": 1,                      required, the integer 1
**     "credits_per_usd": 211,           required, integer 1..1,000,000
**     "comment": "...",                 optional, ignored
**     "default": <rule>,                required: prices classes with no rule
**     "nodes": { "<NodeClass>": <rule>, ... }   required, at most
**                                       CC_PRICE_RULES_MAX, no duplicates
**   }
**
** A <price> is written on the object that carries it as exactly one of
**   "usd": "0.04"        US dollars, decimal string, at most 6 decimals;
**                        micro-credits = micro-USD x credits_per_usd (exact)
**   "credits": "12.66"   credits, decimal string, at most 6 decimals
** A JSON integer (e.g. "usd": 2) is accepted; a JSON number with a fraction
** (0.04) is refused: binary floats are not exact money.
**
** <rule> (every key optional unless noted; unknown keys are refused):
**   "family":  "OpenAI"             display family (< 64 bytes)
**   "model":   "dall-e-3"           literal model name for history
**   "model_input": "model"          input whose literal string value names
**                                   the model (wins over "model")
**   "source":  "..."                where the numbers come from (ignored)
**   "usd"|"credits": <price>        flat price per run
**   "defaults": {"<input>": v}      value used when an input is absent
**                                   (v: string, integer or bool)
**   "table": {                      price chosen by input values
**     "entries": [ {"when": {"<input>": <cond>, ...},
**                   "usd"|"credits": <price>,
**                   "multiply": [<mult>...],   optional, this entry only
**                   "source": "..."}, ... ],
**     "fallback": {"usd"|"credits": <price>}   optional
**   }
**       <cond> is a string, integer or bool compared with the input's
**       value (an integer matches the same digits as a string: 5 == "5";
**       a bool matches true/false), "*" (anything, even absent), or
**       {"present": true|false} (the input is connected / given, or not).
**       Entries are tried in order; the first whose conditions all hold
**       wins. When an input the conditions name is linked ([node, slot]) or
**       absent without a default, the price is the maximum over every entry
**       that could still match. A literal that matches no entry is priced at
**       "fallback", or else at the table's maximum, with a warning.
**   "multiply": [ {"input": "n", "default": 1, "min": 1, "max": 8}, ... ]
**       the price is multiplied by each input's integer value (JSON integer
**       or a string of digits such as "5"); "max" is required and is used
**       when the input is linked, absent without a default, or not an
**       integer; values below "min" (default 1) count as "min".
**   "calls_per_batch_of": "image"   the node makes one upstream call per
**                                   item of this tensor input's batch: the
**                                   estimate is multiplied by the batch size
**                                   (["comfy_credits_batch", N] at execution;
**                                   1 while it is a link), see pricing.h
**   "units": <units>                unit prices for actual()
**   "units_by_model": {"<model value>": <units>, ...}
**       unit prices chosen by the value of "model_input"; "units" (if
**       given) is the fallback for an unlisted model, else the maximum of
**       every listed model is used.
**   "tokens": {                     token-billed estimate (needs units)
**     "input_fixed": 1000,          tokens always assumed for the input
**     "input_text": ["prompt"],     literal string inputs: 1 token per byte
**     "input_text_linked": 32768,   tokens for a linked text input
**     "input_present": {"images": 10000},  tokens added when given/linked
**     "max_output_input": "max_output_tokens",  literal int input bounding
**                                   the output (capped by the model's max)
**     "max_output_default": 16384   required: output tokens otherwise
**   }
**     estimate += input_tokens x input price + max_output x output price
**   <units> = { "input_tokens_per_1m": {<price>},
**               "output_tokens_per_1m": {<price>},
**               "image": {<price>}, "second": {<price>},
**               "max_output_tokens": 128000 }     (all optional)
**
** A rule has a flat price or a table (not both), tokens, or both a flat
** price/table and tokens; flat and table prices must be > 0 so no run is
** ever free. estimate = (flat or table entry) x multipliers + token part.
** Unit-price arithmetic rounds half-up to the micro-credit.
** actual(): credits_used_micro >= 0 wins; else reported counters times unit
** prices (if the rule has a unit price for at least one reported counter);
** else hold_micro.
**
** After parse the table is immutable; estimate/actual only read it and use
** per-call cJSON trees, so they are safe to call from any thread.
*/
#include "pricing.h"
#include "money.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <string.h>

/* Limits, units last. */
#define CC_PRICE_NAME_BYTES_MAX 127       /* node class, input names, values */
#define CC_PRICE_FAMILY_BYTES_MAX 63
#define CC_PRICE_SOURCE_BYTES_MAX 1024
#define CC_PRICE_ENTRIES_MAX 512          /* table entries in one rule */
#define CC_PRICE_CONDS_MAX 8              /* conditions in one entry */
#define CC_PRICE_MULTS_MAX 4              /* multipliers in one list */
#define CC_PRICE_DEFAULTS_MAX 32          /* defaults in one rule */
#define CC_PRICE_MODELS_MAX 64            /* units_by_model entries */
#define CC_PRICE_TEXT_INPUTS_MAX 8        /* tokens.input_text entries */
#define CC_PRICE_PRESENT_INPUTS_MAX 8     /* tokens.input_present entries */
#define CC_PRICE_CREDITS_PER_USD_MAX 1000000
#define CC_PRICE_MULT_MAX 1000000         /* largest multiplier value */
#define CC_PRICE_TOKENS_MAX INT64_C(100000000)   /* any token count */
#define CC_PRICE_INT_PRICE_MAX INT64_C(1000000000) /* JSON-integer price */

/* ---------------------------------------------------------------- model */

enum { COND_EQ = 0, COND_ANY = 1, COND_PRESENT = 2 };

typedef struct pcond {
    const char *input;
    int kind;
    const char *value;  /* COND_EQ: canonical text */
    int present;        /* COND_PRESENT: required presence */
} pcond;

typedef struct pmult {
    const char *input;
    int has_def;
    int64_t def, min, max;
} pmult;

typedef struct pentry {
    pcond *conds;
    int nconds;
    int64_t micro;
    pmult *mults;
    int nmults;
} pentry;

typedef struct pdefault {
    const char *input;
    const char *text;   /* canonical */
    int is_int;
    int64_t i;
} pdefault;

enum { U_IN = 1, U_OUT = 2, U_IMAGE = 4, U_SECOND = 8, U_MAXOUT = 16 };

typedef struct punits {
    const char *model;  /* units_by_model key */
    unsigned has;
    int64_t in_1m, out_1m, image, second; /* micro-credits */
    int64_t max_out;
} punits;

typedef struct prule {
    const char *name, *family, *model, *model_input;
    int has_flat;
    int64_t flat;
    int has_table;
    pentry *entries;
    int nentries;
    int has_fallback;
    int64_t fallback;
    pmult *mults;
    int nmults;
    pdefault *defaults;
    int ndefaults;
    int has_units;
    punits units;
    punits *by_model;
    int nby_model;
    punits units_max; /* component-wise max over by_model (+ units) */
    int has_tokens;
    int64_t tok_fixed, tok_text_linked, tok_max_out_default;
    const char **tok_text;
    int ntok_text;
    const char **tok_present;
    int64_t *tok_present_n;
    int ntok_present;
    const char *tok_max_out_input;
    const char *batch_input;  /* calls_per_batch_of, or NULL */
} prule;

struct cc_price_table {
    int64_t credits_per_usd;
    prule def;
    prule *rules; /* sorted by name */
    int nrules;
    void **allocs;
    size_t nallocs, cap_allocs;
};

void cc_usage_init(cc_usage *u) {
    u->credits_used_micro = -1;
    u->input_tokens = -1;
    u->output_tokens = -1;
    u->images = -1;
    u->seconds_ms = -1;
}

/* ---------------------------------------------------------------- parse */

typedef struct pctx {
    cc_price_table *t;
    const char *rule;  /* node class being parsed, or NULL at top level */
    cc_error *err;
} pctx;

static void *tmalloc(pctx *c, size_t n) {
    cc_price_table *t = c->t;
    if (t->nallocs == t->cap_allocs) {
        size_t cap = t->cap_allocs ? t->cap_allocs * 2 : 64;
        void **p = realloc(t->allocs, cap * sizeof *p);
        if (!p) return NULL;
        t->allocs = p;
        t->cap_allocs = cap;
    }
    void *m = calloc(1, n ? n : 1);
    if (m) t->allocs[t->nallocs++] = m;
    return m;
}

static cc_rc rfail(pctx *c, const char *path, const char *fmt, ...)
#if defined(__GNUC__)
    CC_PRINTF_LIKE(3, 4)
#endif
    ;
static cc_rc rfail(pctx *c, const char *path, const char *fmt, ...) {
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->rule)
        return cc_fail(c->err, CC_ERR_INVALID, path, "price table: rule '%.100s', field '%.80s': %s",
                       c->rule, path, msg);
    return cc_fail(c->err, CC_ERR_INVALID, path, "price table: field '%.80s': %s", path, msg);
}

static cc_rc nomem(pctx *c) { return cc_fail(c->err, CC_ERR_NOMEM, "", "out of memory"); }

static cc_rc dup_str(pctx *c, const char *s, size_t max_bytes, const char *path, const char **out) {
    size_t n = strnlen(s, max_bytes + 1);
    if (n > max_bytes) return rfail(c, path, "longer than %zu bytes", max_bytes);
    char *p = tmalloc(c, n + 1);
    if (!p) return nomem(c);
    memcpy(p, s, n);
    p[n] = 0;
    *out = p;
    return CC_OK;
}

static cc_rc get_string(pctx *c, const cJSON *v, size_t max_bytes, const char *path, const char **out) {
    if (!cJSON_IsString(v) || !v->valuestring) return rfail(c, path, "must be a string");
    if (!v->valuestring[0]) return rfail(c, path, "must not be empty");
    return dup_str(c, v->valuestring, max_bytes, path, out);
}

/* An exact integer in [lo, hi]; a JSON number with a fraction is refused. */
static cc_rc get_int(pctx *c, const cJSON *v, int64_t lo, int64_t hi, const char *path, int64_t *out) {
    *out = 0;
    if (!cJSON_IsNumber(v)) return rfail(c, path, "must be an integer");
    double d = v->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi))
        return rfail(c, path, "must be an integer between %lld and %lld", (long long)lo, (long long)hi);
    int64_t i = (int64_t)d;
    if ((double)i != d) return rfail(c, path, "must be an integer, not a number with a fraction");
    *out = i;
    return CC_OK;
}

/* Reads "usd" / "credits" from obj. *has = 0 when neither is present. */
static cc_rc get_price(pctx *c, const cJSON *obj, const char *path, int *has, int64_t *micro) {
    const cJSON *usd = cJSON_GetObjectItemCaseSensitive(obj, "usd");
    const cJSON *cr = cJSON_GetObjectItemCaseSensitive(obj, "credits");
    char p[160];
    *has = 0;
    if (usd && cr) return rfail(c, path, "give the price in \"usd\" or in \"credits\", not both");
    const cJSON *v = usd ? usd : cr;
    if (!v) return CC_OK;
    snprintf(p, sizeof p, "%s%s%s", path, *path ? "." : "", usd ? "usd" : "credits");
    int64_t scaled = 0;
    if (cJSON_IsString(v) && v->valuestring) {
        cc_error e;
        if (cc_decimal_to_scaled(v->valuestring, 6, &scaled, p, &e) != CC_OK)
            return rfail(c, p, "%s (write prices as decimal strings such as \"0.04\")", e.message);
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d >= 0 && d <= (double)CC_PRICE_INT_PRICE_MAX && (double)(int64_t)d != d)
            return rfail(c, p, "the JSON number %.10g has a fraction; binary floats are not exact money, "
                               "write the price as a decimal string such as \"%.10g\"", d, d);
        int64_t i = 0;
        cc_rc rc = get_int(c, v, 0, CC_PRICE_INT_PRICE_MAX, p, &i);
        if (rc != CC_OK) return rc;
        scaled = i * CC_MICRO;
    } else {
        return rfail(c, p, "must be a decimal string such as \"0.04\"");
    }
    if (scaled < 0) return rfail(c, p, "must not be negative");
    if (usd) {
        if (cc_mul_i64(scaled, c->t->credits_per_usd, &scaled))
            return rfail(c, p, "is too large");
    }
    if (scaled > CC_AMOUNT_MAX)
        return rfail(c, p, "is larger than %lld credits", (long long)(CC_AMOUNT_MAX / CC_MICRO));
    *has = 1;
    *micro = scaled;
    return CC_OK;
}

/* Canonical text of a literal (string/integer/bool) for matching. */
static cc_rc canon_literal(pctx *c, const cJSON *v, const char *path, const char **text, int *is_int,
                           int64_t *ival) {
    char buf[32];
    *is_int = 0;
    *ival = 0;
    if (cJSON_IsString(v) && v->valuestring) return dup_str(c, v->valuestring, CC_PRICE_NAME_BYTES_MAX, path, text);
    if (cJSON_IsBool(v)) return dup_str(c, cJSON_IsTrue(v) ? "true" : "false", 8, path, text);
    if (cJSON_IsNumber(v)) {
        int64_t i = 0;
        cc_rc rc = get_int(c, v, -INT64_C(1000000000000), INT64_C(1000000000000), path, &i);
        if (rc != CC_OK) return rc;
        snprintf(buf, sizeof buf, "%lld", (long long)i);
        *is_int = 1;
        *ival = i;
        return dup_str(c, buf, sizeof buf, path, text);
    }
    return rfail(c, path, "must be a string, an integer or a bool");
}

static int key_in(const char *k, const char *const *allowed) {
    for (int i = 0; allowed[i]; i++)
        if (strcmp(k, allowed[i]) == 0) return 1;
    return 0;
}

/* Refuses keys not in `allowed` and duplicate keys. */
static cc_rc check_keys(pctx *c, const cJSON *obj, const char *path, const char *const *allowed) {
    char p[160];
    if (!cJSON_IsObject(obj)) return rfail(c, path, "must be a JSON object");
    /* The error path is formatted only on an error: formatting it for every key
    ** of every object was a third of the time spent parsing a valid table. */
    for (const cJSON *k = obj->child; k; k = k->next) {
        if (!k->string || !key_in(k->string, allowed)) {
            snprintf(p, sizeof p, "%s%s%.60s", path, *path ? "." : "", k->string ? k->string : "");
            char list[200] = "";
            size_t used = 0;
            for (int i = 0; allowed[i]; i++) {
                int n = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", allowed[i]);
                if (n < 0 || (size_t)n >= sizeof list - used) break;
                used += (size_t)n;
            }
            return rfail(c, p, "unknown key (allowed: %s)", list);
        }
        for (const cJSON *j = obj->child; j != k; j = j->next)
            if (j->string && strcmp(j->string, k->string) == 0) {
                snprintf(p, sizeof p, "%s%s%.60s", path, *path ? "." : "", k->string);
                return rfail(c, p, "duplicate key");
            }
    }
    return CC_OK;
}

static cc_rc parse_mults(pctx *c, const cJSON *arr, const char *path, pmult **out, int *n) {
    static const char *const keys[] = {"input", "default", "min", "max", NULL};
    char p[160];
    if (!cJSON_IsArray(arr)) return rfail(c, path, "must be a list of {\"input\", \"max\"} objects");
    int cnt = cJSON_GetArraySize(arr);
    if (cnt > CC_PRICE_MULTS_MAX) return rfail(c, path, "at most %d multipliers", CC_PRICE_MULTS_MAX);
    pmult *m = tmalloc(c, sizeof *m * (size_t)(cnt ? cnt : 1));
    if (!m) return nomem(c);
    int i = 0;
    cc_rc rc;
    for (const cJSON *it = arr->child; it; it = it->next, i++) {
        snprintf(p, sizeof p, "%s[%d]", path, i);
        if ((rc = check_keys(c, it, p, keys)) != CC_OK) return rc;
        char q[192];
        snprintf(q, sizeof q, "%s.input", p);
        if ((rc = get_string(c, cJSON_GetObjectItemCaseSensitive(it, "input"), CC_PRICE_NAME_BYTES_MAX, q,
                             &m[i].input)) != CC_OK)
            return rc;
        m[i].min = 1;
        const cJSON *v;
        if ((v = cJSON_GetObjectItemCaseSensitive(it, "min"))) {
            snprintf(q, sizeof q, "%s.min", p);
            if ((rc = get_int(c, v, 1, CC_PRICE_MULT_MAX, q, &m[i].min)) != CC_OK) return rc;
        }
        snprintf(q, sizeof q, "%s.max", p);
        v = cJSON_GetObjectItemCaseSensitive(it, "max");
        if (!v) return rfail(c, q, "is required (it prices a linked or absent input)");
        if ((rc = get_int(c, v, m[i].min, CC_PRICE_MULT_MAX, q, &m[i].max)) != CC_OK) return rc;
        if ((v = cJSON_GetObjectItemCaseSensitive(it, "default"))) {
            snprintf(q, sizeof q, "%s.default", p);
            if ((rc = get_int(c, v, m[i].min, m[i].max, q, &m[i].def)) != CC_OK) return rc;
            m[i].has_def = 1;
        }
    }
    *out = m;
    *n = cnt;
    return CC_OK;
}

static cc_rc parse_units(pctx *c, const cJSON *obj, const char *path, punits *u) {
    static const char *const keys[] = {"input_tokens_per_1m", "output_tokens_per_1m", "image", "second",
                                       "max_output_tokens", NULL};
    static const char *const pkeys[] = {"usd", "credits", NULL};
    static const unsigned bits[] = {U_IN, U_OUT, U_IMAGE, U_SECOND};
    char p[160];
    cc_rc rc;
    if ((rc = check_keys(c, obj, path, keys)) != CC_OK) return rc;
    memset(u, 0, sizeof *u);
    int64_t *dst[] = {&u->in_1m, &u->out_1m, &u->image, &u->second};
    for (int i = 0; i < 4; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, keys[i]);
        if (!v) continue;
        snprintf(p, sizeof p, "%s.%s", path, keys[i]);
        if ((rc = check_keys(c, v, p, pkeys)) != CC_OK) return rc;
        int has = 0;
        if ((rc = get_price(c, v, p, &has, dst[i])) != CC_OK) return rc;
        if (!has) return rfail(c, p, "needs \"usd\" or \"credits\"");
        u->has |= bits[i];
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "max_output_tokens");
    if (v) {
        snprintf(p, sizeof p, "%s.max_output_tokens", path);
        if ((rc = get_int(c, v, 1, CC_PRICE_TOKENS_MAX, p, &u->max_out)) != CC_OK) return rc;
        u->has |= U_MAXOUT;
    }
    if (!u->has) return rfail(c, path, "has no unit price");
    return CC_OK;
}

static void units_merge_max(punits *dst, const punits *s) {
    dst->has |= s->has;
    if (s->in_1m > dst->in_1m) dst->in_1m = s->in_1m;
    if (s->out_1m > dst->out_1m) dst->out_1m = s->out_1m;
    if (s->image > dst->image) dst->image = s->image;
    if (s->second > dst->second) dst->second = s->second;
    if (s->max_out > dst->max_out) dst->max_out = s->max_out;
}

static cc_rc parse_entry(pctx *c, const cJSON *it, const char *p, pentry *e) {
    static const char *const keys[] = {"when", "usd", "credits", "multiply", "source", NULL};
    char q[192];
    cc_rc rc;
    if ((rc = check_keys(c, it, p, keys)) != CC_OK) return rc;
    const cJSON *when = cJSON_GetObjectItemCaseSensitive(it, "when");
    snprintf(q, sizeof q, "%s.when", p);
    if (!cJSON_IsObject(when)) return rfail(c, q, "is required and must be an object of input conditions");
    int nc = cJSON_GetArraySize(when);
    if (nc > CC_PRICE_CONDS_MAX) return rfail(c, q, "at most %d conditions", CC_PRICE_CONDS_MAX);
    e->conds = tmalloc(c, sizeof *e->conds * (size_t)(nc ? nc : 1));
    if (!e->conds) return nomem(c);
    int j = 0;
    for (const cJSON *cv = when->child; cv; cv = cv->next, j++) {
        pcond *cd = &e->conds[j];
        snprintf(q, sizeof q, "%s.when.%.60s", p, cv->string ? cv->string : "");
        for (int k = 0; k < j; k++)
            if (strcmp(e->conds[k].input, cv->string) == 0) return rfail(c, q, "duplicate condition");
        if ((rc = dup_str(c, cv->string, CC_PRICE_NAME_BYTES_MAX, q, &cd->input)) != CC_OK) return rc;
        if (cJSON_IsObject(cv)) {
            static const char *const ck[] = {"present", NULL};
            if ((rc = check_keys(c, cv, q, ck)) != CC_OK) return rc;
            const cJSON *pr = cJSON_GetObjectItemCaseSensitive(cv, "present");
            if (!cJSON_IsBool(pr)) return rfail(c, q, "must be {\"present\": true} or {\"present\": false}");
            cd->kind = COND_PRESENT;
            cd->present = cJSON_IsTrue(pr);
        } else if (cJSON_IsString(cv) && cv->valuestring && strcmp(cv->valuestring, "*") == 0) {
            cd->kind = COND_ANY;
        } else {
            int is_int = 0;
            int64_t iv = 0;
            cd->kind = COND_EQ;
            if ((rc = canon_literal(c, cv, q, &cd->value, &is_int, &iv)) != CC_OK) return rc;
        }
    }
    e->nconds = nc;
    int has = 0;
    if ((rc = get_price(c, it, p, &has, &e->micro)) != CC_OK) return rc;
    if (!has) return rfail(c, p, "needs a price (\"usd\" or \"credits\")");
    if (e->micro <= 0) return rfail(c, p, "price must be greater than zero (no run is free)");
    const cJSON *mu = cJSON_GetObjectItemCaseSensitive(it, "multiply");
    if (mu) {
        snprintf(q, sizeof q, "%s.multiply", p);
        if ((rc = parse_mults(c, mu, q, &e->mults, &e->nmults)) != CC_OK) return rc;
    }
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(it, "source");
    if (src && !cJSON_IsString(src)) {
        snprintf(q, sizeof q, "%s.source", p);
        return rfail(c, q, "must be a string");
    }
    return CC_OK;
}

static cc_rc parse_table(pctx *c, const cJSON *tb, prule *r) {
    static const char *const keys[] = {"entries", "fallback", NULL};
    static const char *const fkeys[] = {"usd", "credits", NULL};
    char p[160];
    cc_rc rc;
    if ((rc = check_keys(c, tb, "table", keys)) != CC_OK) return rc;
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(tb, "entries");
    if (!cJSON_IsArray(en) || cJSON_GetArraySize(en) == 0)
        return rfail(c, "table.entries", "is required and must be a non-empty list");
    int n = cJSON_GetArraySize(en);
    if (n > CC_PRICE_ENTRIES_MAX) return rfail(c, "table.entries", "at most %d entries", CC_PRICE_ENTRIES_MAX);
    r->entries = tmalloc(c, sizeof *r->entries * (size_t)n);
    if (!r->entries) return nomem(c);
    int i = 0;
    for (const cJSON *it = en->child; it; it = it->next, i++) {
        snprintf(p, sizeof p, "table.entries[%d]", i);
        if ((rc = parse_entry(c, it, p, &r->entries[i])) != CC_OK) return rc;
    }
    r->nentries = n;
    r->has_table = 1;
    const cJSON *fb = cJSON_GetObjectItemCaseSensitive(tb, "fallback");
    if (fb) {
        if ((rc = check_keys(c, fb, "table.fallback", fkeys)) != CC_OK) return rc;
        if ((rc = get_price(c, fb, "table.fallback", &r->has_fallback, &r->fallback)) != CC_OK) return rc;
        if (!r->has_fallback) return rfail(c, "table.fallback", "needs \"usd\" or \"credits\"");
        if (r->fallback <= 0) return rfail(c, "table.fallback", "price must be greater than zero");
    }
    return CC_OK;
}

static cc_rc parse_tokens(pctx *c, const cJSON *tk, prule *r) {
    static const char *const keys[] = {"input_fixed", "input_text", "input_text_linked", "input_present",
                                       "max_output_input", "max_output_default", NULL};
    char p[160];
    cc_rc rc;
    if ((rc = check_keys(c, tk, "tokens", keys)) != CC_OK) return rc;
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(tk, "input_fixed")) &&
        (rc = get_int(c, v, 0, CC_PRICE_TOKENS_MAX, "tokens.input_fixed", &r->tok_fixed)) != CC_OK)
        return rc;
    if ((v = cJSON_GetObjectItemCaseSensitive(tk, "input_text_linked")) &&
        (rc = get_int(c, v, 0, CC_PRICE_TOKENS_MAX, "tokens.input_text_linked", &r->tok_text_linked)) != CC_OK)
        return rc;
    v = cJSON_GetObjectItemCaseSensitive(tk, "max_output_default");
    if (!v) return rfail(c, "tokens.max_output_default", "is required");
    if ((rc = get_int(c, v, 1, CC_PRICE_TOKENS_MAX, "tokens.max_output_default", &r->tok_max_out_default)) != CC_OK)
        return rc;
    if ((v = cJSON_GetObjectItemCaseSensitive(tk, "max_output_input")) &&
        (rc = get_string(c, v, CC_PRICE_NAME_BYTES_MAX, "tokens.max_output_input", &r->tok_max_out_input)) != CC_OK)
        return rc;
    if ((v = cJSON_GetObjectItemCaseSensitive(tk, "input_text"))) {
        if (!cJSON_IsArray(v)) return rfail(c, "tokens.input_text", "must be a list of input names");
        int n = cJSON_GetArraySize(v);
        if (n > CC_PRICE_TEXT_INPUTS_MAX) return rfail(c, "tokens.input_text", "at most %d inputs", CC_PRICE_TEXT_INPUTS_MAX);
        r->tok_text = tmalloc(c, sizeof *r->tok_text * (size_t)(n ? n : 1));
        if (!r->tok_text) return nomem(c);
        int i = 0;
        for (const cJSON *it = v->child; it; it = it->next, i++) {
            snprintf(p, sizeof p, "tokens.input_text[%d]", i);
            if ((rc = get_string(c, it, CC_PRICE_NAME_BYTES_MAX, p, &r->tok_text[i])) != CC_OK) return rc;
        }
        r->ntok_text = n;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(tk, "input_present"))) {
        if (!cJSON_IsObject(v)) return rfail(c, "tokens.input_present", "must be an object {input: tokens}");
        int n = cJSON_GetArraySize(v);
        if (n > CC_PRICE_PRESENT_INPUTS_MAX)
            return rfail(c, "tokens.input_present", "at most %d inputs", CC_PRICE_PRESENT_INPUTS_MAX);
        r->tok_present = tmalloc(c, sizeof *r->tok_present * (size_t)(n ? n : 1));
        r->tok_present_n = tmalloc(c, sizeof *r->tok_present_n * (size_t)(n ? n : 1));
        if (!r->tok_present || !r->tok_present_n) return nomem(c);
        int i = 0;
        for (const cJSON *it = v->child; it; it = it->next, i++) {
            snprintf(p, sizeof p, "tokens.input_present.%.60s", it->string ? it->string : "");
            if ((rc = dup_str(c, it->string, CC_PRICE_NAME_BYTES_MAX, p, &r->tok_present[i])) != CC_OK) return rc;
            if ((rc = get_int(c, it, 0, CC_PRICE_TOKENS_MAX, p, &r->tok_present_n[i])) != CC_OK) return rc;
        }
        r->ntok_present = n;
    }
    r->has_tokens = 1;
    return CC_OK;
}

static cc_rc parse_rule(pctx *c, const char *name, const cJSON *obj, prule *r) {
    static const char *const keys[] = {"family", "model", "model_input", "source", "usd", "credits", "defaults",
                                       "table", "multiply", "units", "units_by_model", "tokens",
                                       "calls_per_batch_of", NULL};
    cc_rc rc;
    char p[160];
    memset(r, 0, sizeof *r);
    c->rule = name;
    if ((rc = dup_str(c, name, CC_PRICE_NAME_BYTES_MAX, "nodes", &r->name)) != CC_OK) return rc;
    if (!cJSON_IsObject(obj)) return rfail(c, "", "a rule must be a JSON object");
    if ((rc = check_keys(c, obj, "", keys)) != CC_OK) return rc;
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "family")) &&
        (rc = get_string(c, v, CC_PRICE_FAMILY_BYTES_MAX, "family", &r->family)) != CC_OK)
        return rc;
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "model")) &&
        (rc = get_string(c, v, CC_PRICE_NAME_BYTES_MAX, "model", &r->model)) != CC_OK)
        return rc;
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "model_input")) &&
        (rc = get_string(c, v, CC_PRICE_NAME_BYTES_MAX, "model_input", &r->model_input)) != CC_OK)
        return rc;
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "source"))) {
        const char *s;
        if ((rc = get_string(c, v, CC_PRICE_SOURCE_BYTES_MAX, "source", &s)) != CC_OK) return rc;
    }
    if ((rc = get_price(c, obj, "", &r->has_flat, &r->flat)) != CC_OK) return rc;
    if (r->has_flat && r->flat <= 0) return rfail(c, "usd", "price must be greater than zero (no run is free)");
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "defaults"))) {
        if (!cJSON_IsObject(v)) return rfail(c, "defaults", "must be an object {input: value}");
        int n = cJSON_GetArraySize(v);
        if (n > CC_PRICE_DEFAULTS_MAX) return rfail(c, "defaults", "at most %d defaults", CC_PRICE_DEFAULTS_MAX);
        r->defaults = tmalloc(c, sizeof *r->defaults * (size_t)(n ? n : 1));
        if (!r->defaults) return nomem(c);
        int i = 0;
        for (const cJSON *it = v->child; it; it = it->next, i++) {
            snprintf(p, sizeof p, "defaults.%.60s", it->string ? it->string : "");
            for (int k = 0; k < i; k++)
                if (strcmp(r->defaults[k].input, it->string) == 0) return rfail(c, p, "duplicate key");
            if ((rc = dup_str(c, it->string, CC_PRICE_NAME_BYTES_MAX, p, &r->defaults[i].input)) != CC_OK) return rc;
            if ((rc = canon_literal(c, it, p, &r->defaults[i].text, &r->defaults[i].is_int, &r->defaults[i].i)) != CC_OK)
                return rc;
        }
        r->ndefaults = n;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "table")) && (rc = parse_table(c, v, r)) != CC_OK) return rc;
    if (r->has_table && r->has_flat)
        return rfail(c, "table", "a rule has a flat price or a table, not both");
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "multiply")) &&
        (rc = parse_mults(c, v, "multiply", &r->mults, &r->nmults)) != CC_OK)
        return rc;
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "calls_per_batch_of")) &&
        (rc = get_string(c, v, CC_PRICE_NAME_BYTES_MAX, "calls_per_batch_of", &r->batch_input)) != CC_OK)
        return rc;
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "units"))) {
        if ((rc = parse_units(c, v, "units", &r->units)) != CC_OK) return rc;
        r->has_units = 1;
        units_merge_max(&r->units_max, &r->units);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "units_by_model"))) {
        if (!r->model_input) return rfail(c, "units_by_model", "needs \"model_input\" to choose the model");
        if (!cJSON_IsObject(v) || cJSON_GetArraySize(v) == 0)
            return rfail(c, "units_by_model", "must be a non-empty object {model: units}");
        int n = cJSON_GetArraySize(v);
        if (n > CC_PRICE_MODELS_MAX) return rfail(c, "units_by_model", "at most %d models", CC_PRICE_MODELS_MAX);
        r->by_model = tmalloc(c, sizeof *r->by_model * (size_t)n);
        if (!r->by_model) return nomem(c);
        int i = 0;
        for (const cJSON *it = v->child; it; it = it->next, i++) {
            snprintf(p, sizeof p, "units_by_model.%.60s", it->string ? it->string : "");
            for (int k = 0; k < i; k++)
                if (strcmp(r->by_model[k].model, it->string) == 0) return rfail(c, p, "duplicate key");
            if ((rc = parse_units(c, it, p, &r->by_model[i])) != CC_OK) return rc;
            if ((rc = dup_str(c, it->string, CC_PRICE_NAME_BYTES_MAX, p, &r->by_model[i].model)) != CC_OK) return rc;
            units_merge_max(&r->units_max, &r->by_model[i]);
        }
        r->nby_model = n;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "tokens"))) {
        if ((rc = parse_tokens(c, v, r)) != CC_OK) return rc;
        if (!r->has_units && !r->nby_model)
            return rfail(c, "tokens", "needs \"units\" or \"units_by_model\" with token prices");
        /* Every unit set a token estimate can pick must price output. */
        if (r->has_units && (!(r->units.has & U_OUT) || r->units.out_1m <= 0))
            return rfail(c, "units.output_tokens_per_1m", "is required (> 0) for a token-billed rule");
        for (int i = 0; i < r->nby_model; i++)
            if (!(r->by_model[i].has & U_OUT) || r->by_model[i].out_1m <= 0) {
                snprintf(p, sizeof p, "units_by_model.%.60s.output_tokens_per_1m", r->by_model[i].model);
                return rfail(c, p, "is required (> 0) for a token-billed rule");
            }
    }
    if (!r->has_flat && !r->has_table && !r->has_tokens)
        return rfail(c, "", "needs a price: \"usd\"/\"credits\", \"table\" or \"tokens\"");
    c->rule = NULL;
    return CC_OK;
}

static int rule_cmp(const void *a, const void *b) {
    return strcmp(((const prule *)a)->name, ((const prule *)b)->name);
}

void cc_price_table_free(cc_price_table *t) {
    if (!t) return;
    for (size_t i = 0; i < t->nallocs; i++) free(t->allocs[i]);
    free(t->allocs);
    free(t);
}

/* Parses with an explicit length; refuses anything but whitespace after the
** value. Returns NULL on a syntax error. */
static cJSON *parse_json(const char *json, size_t len) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) return NULL;
    for (const char *p = end; p && p < json + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return NULL;
        }
    }
    return root;
}

cc_rc cc_price_table_parse(const char *json, size_t len, cc_price_table **out, cc_error *err) {
    static const char *const keys[] = {"format", "credits_per_usd", "comment", "default", "nodes", NULL};
    *out = NULL;
    cc_error_clear(err);
    if (!json || len == 0) return cc_fail(err, CC_ERR_INVALID, "json", "price table: empty");
    if (len > CC_PRICE_TABLE_BYTES_MAX)
        return cc_fail(err, CC_ERR_LIMIT, "json", "price table: larger than %d bytes", CC_PRICE_TABLE_BYTES_MAX);
    cJSON *root = parse_json(json, len);
    if (!root) return cc_fail(err, CC_ERR_INVALID, "json", "price table: not valid JSON");
    cc_price_table *t = calloc(1, sizeof *t);
    if (!t) {
        cJSON_Delete(root);
        return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    pctx c = {t, NULL, err};
    cc_rc rc = CC_OK;
    const cJSON *v, *nodes;
    int64_t fmt = 0;
    if (!cJSON_IsObject(root)) { rc = rfail(&c, "json", "the table must be a JSON object"); goto done; }
    if ((rc = check_keys(&c, root, "", keys)) != CC_OK) goto done;
    v = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!v) { rc = rfail(&c, "format", "is required (1)"); goto done; }
    if ((rc = get_int(&c, v, 1, 1, "format", &fmt)) != CC_OK) goto done;
    v = cJSON_GetObjectItemCaseSensitive(root, "credits_per_usd");
    if (!v) { rc = rfail(&c, "credits_per_usd", "is required"); goto done; }
    if ((rc = get_int(&c, v, 1, CC_PRICE_CREDITS_PER_USD_MAX, "credits_per_usd", &t->credits_per_usd)) != CC_OK)
        goto done;
    v = cJSON_GetObjectItemCaseSensitive(root, "default");
    if (!v) { rc = rfail(&c, "default", "is required: it prices API nodes that have no rule"); goto done; }
    if ((rc = parse_rule(&c, "default", v, &t->def)) != CC_OK) goto done;
    c.rule = NULL;
    nodes = cJSON_GetObjectItemCaseSensitive(root, "nodes");
    if (!cJSON_IsObject(nodes)) { rc = rfail(&c, "nodes", "is required and must be an object"); goto done; }
    int n = cJSON_GetArraySize(nodes);
    if (n > CC_PRICE_RULES_MAX) {
        rc = cc_fail(err, CC_ERR_LIMIT, "nodes", "price table: more than %d rules", CC_PRICE_RULES_MAX);
        goto done;
    }
    t->rules = tmalloc(&c, sizeof *t->rules * (size_t)(n ? n : 1));
    if (!t->rules) { rc = nomem(&c); goto done; }
    int i = 0;
    for (const cJSON *it = nodes->child; it; it = it->next, i++) {
        if (!it->string || !it->string[0]) { rc = rfail(&c, "nodes", "empty node class name"); goto done; }
        if ((rc = parse_rule(&c, it->string, it, &t->rules[i])) != CC_OK) goto done;
    }
    t->nrules = n;
    qsort(t->rules, (size_t)n, sizeof *t->rules, rule_cmp);
    for (i = 1; i < n; i++)
        if (strcmp(t->rules[i - 1].name, t->rules[i].name) == 0) {
            c.rule = t->rules[i].name;
            rc = rfail(&c, "nodes", "duplicate node class");
            goto done;
        }
done:
    cJSON_Delete(root);
    if (rc != CC_OK) {
        cc_price_table_free(t);
        return rc;
    }
    *out = t;
    return CC_OK;
}

int cc_price_table_count(const cc_price_table *t) { return t ? t->nrules : 0; }

const char *cc_price_table_name(const cc_price_table *t, int i) {
    CC_ASSERT(t && i >= 0 && i < t->nrules);
    return t->rules[i].name;
}

static const prule *find_rule(const cc_price_table *t, const char *name) {
    int lo = 0, hi = t->nrules - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(t->rules[mid].name, name);
        if (c == 0) return &t->rules[mid];
        if (c < 0) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}

const char *cc_price_table_family(const cc_price_table *t, const char *node_class) {
    const prule *r = node_class ? find_rule(t, node_class) : NULL;
    return r && r->family ? r->family : "";
}

int cc_price_table_has(const cc_price_table *t, const char *node_class) {
    return t && node_class && find_rule(t, node_class) != NULL;
}

/* ------------------------------------------------------------- evaluate */

typedef struct ival {
    int known;      /* 1: a literal value (or a default) */
    int present;    /* the input was given (literal or link) */
    int odd;        /* given but neither a literal nor a link */
    const char *s;  /* canonical text when known */
    int is_int;
    int64_t i;
    char buf[40];
} ival;

typedef struct ectx {
    const prule *r;
    const cJSON *inputs;
    cc_price_result *out;
    cc_error *err;
} ectx;

static void warn(ectx *e, const char *fmt, ...)
#if defined(__GNUC__)
    CC_PRINTF_LIKE(2, 3)
#endif
    ;
static void warn(ectx *e, const char *fmt, ...) {
    if (e->out->warning[0]) return; /* keep the first reason */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->out->warning, sizeof e->out->warning, fmt, ap);
    va_end(ap);
}

static int parse_i64_text(const char *s, int64_t *out) {
    const char *p = s;
    int neg = 0;
    if (*p == '-') { neg = 1; p++; }
    if (!*p) return 0;
    int64_t v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return 0;
        if (v > (INT64_MAX - 9) / 10) return 0;
        v = v * 10 + (*p - '0');
    }
    *out = neg ? -v : v;
    return 1;
}

static void get_input(ectx *e, const char *name, ival *v) {
    memset(v, 0, sizeof *v);
    const cJSON *it = e->inputs ? cJSON_GetObjectItemCaseSensitive(e->inputs, name) : NULL;
    if (!it || cJSON_IsNull(it)) {
        for (int k = 0; k < e->r->ndefaults; k++)
            if (strcmp(e->r->defaults[k].input, name) == 0) {
                v->known = 1;
                v->s = e->r->defaults[k].text;
                v->is_int = e->r->defaults[k].is_int;
                v->i = e->r->defaults[k].i;
                return;
            }
        return;
    }
    v->present = 1;
    if (cJSON_IsString(it) && it->valuestring) {
        v->known = 1;
        v->s = it->valuestring;
        v->is_int = parse_i64_text(it->valuestring, &v->i);
    } else if (cJSON_IsBool(it)) {
        v->known = 1;
        v->s = cJSON_IsTrue(it) ? "true" : "false";
    } else if (cJSON_IsNumber(it)) {
        double d = it->valuedouble;
        v->known = 1;
        if (d >= -9.0e18 && d <= 9.0e18 && (double)(int64_t)d == d) {
            v->is_int = 1;
            v->i = (int64_t)d;
            snprintf(v->buf, sizeof v->buf, "%lld", (long long)v->i);
        } else {
            snprintf(v->buf, sizeof v->buf, "%.17g", d);
        }
        v->s = v->buf;
    } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(it->child) &&
               cJSON_IsNumber(it->child->next)) {
        /* a link [node_id, slot]: unknown until run time */
    } else {
        v->odd = 1;
        warn(e, "input '%.60s' is neither a literal nor a link; priced at its worst case", name);
    }
}

/* Multiplier value for one input. */
static cc_rc mult_value(ectx *e, const pmult *m, int64_t *out) {
    ival v;
    get_input(e, m->input, &v);
    int64_t x = 0;
    if (!v.present && !v.known && m->has_def) {
        x = m->def;
    } else if (v.known && v.is_int) {
        x = v.i;
        if (x > CC_PRICE_MULT_MAX)
            return cc_fail(e->err, CC_ERR_INVALID, m->input, "input '%.60s' = %lld is larger than %d",
                           m->input, (long long)x, CC_PRICE_MULT_MAX);
        if (x > m->max)
            warn(e, "input '%.60s' = %lld is above the price table's maximum %lld", m->input, (long long)x,
                 (long long)m->max);
        if (x < m->min) x = m->min;
    } else {
        if (v.known)
            warn(e, "input '%.60s' is not an integer; priced at its maximum %lld", m->input, (long long)m->max);
        x = m->max;
    }
    *out = x;
    return CC_OK;
}

static cc_rc apply_mults(ectx *e, const pmult *ms, int n, int64_t *price) {
    for (int i = 0; i < n; i++) {
        int64_t x = 0;
        cc_rc rc = mult_value(e, &ms[i], &x);
        if (rc != CC_OK) return rc;
        if (cc_mul_i64(*price, x, price) || *price > CC_AMOUNT_MAX)
            return cc_fail(e->err, CC_ERR_INVALID, ms[i].input, "price of %.100s overflows", e->r->name);
    }
    return CC_OK;
}

enum { M_NO = 0, M_POSSIBLE = 1, M_DEFINITE = 2 };

static int entry_match(ectx *e, const pentry *en) {
    int st = M_DEFINITE;
    for (int j = 0; j < en->nconds; j++) {
        const pcond *cd = &en->conds[j];
        if (cd->kind == COND_ANY) continue;
        ival v;
        get_input(e, cd->input, &v);
        if (cd->kind == COND_PRESENT) {
            /* presence is always known; a default does not make it present */
            if (v.present != cd->present) return M_NO;
            continue;
        }
        if (!v.known) { st = M_POSSIBLE; continue; }
        if (strcmp(v.s, cd->value) != 0) return M_NO;
    }
    return st;
}

static cc_rc entry_price(ectx *e, const pentry *en, int64_t *out) {
    int64_t p = en->micro;
    cc_rc rc = apply_mults(e, en->mults, en->nmults, &p);
    if (rc != CC_OK) return rc;
    *out = p;
    return CC_OK;
}

static cc_rc table_price(ectx *e, int64_t *out) {
    const prule *r = e->r;
    int64_t best = -1;
    cc_rc rc;
    for (int i = 0; i < r->nentries; i++) {
        int m = entry_match(e, &r->entries[i]);
        if (m == M_NO) continue;
        int64_t p = 0;
        if ((rc = entry_price(e, &r->entries[i], &p)) != CC_OK) return rc;
        if (p > best) best = p;
        if (m == M_DEFINITE) break; /* later entries are shadowed */
    }
    if (best >= 0) {
        *out = best;
        return CC_OK;
    }
    if (r->has_fallback) {
        warn(e, "no price entry matches the inputs; using the rule's fallback price");
        *out = r->fallback;
        return CC_OK;
    }
    warn(e, "no price entry matches the inputs; priced at the table's maximum");
    for (int i = 0; i < r->nentries; i++) {
        int64_t p = 0;
        if ((rc = entry_price(e, &r->entries[i], &p)) != CC_OK) return rc;
        if (p > best) best = p;
    }
    *out = best;
    return CC_OK;
}

/* Unit prices for this run; NULL if the rule has none. */
static const punits *pick_units(ectx *e) {
    const prule *r = e->r;
    if (r->nby_model) {
        ival v;
        get_input(e, r->model_input, &v);
        if (v.known) {
            for (int i = 0; i < r->nby_model; i++)
                if (strcmp(r->by_model[i].model, v.s) == 0) return &r->by_model[i];
            if (r->has_units) return &r->units;
            warn(e, "model '%.60s' has no unit prices; using the most expensive model's", v.s);
        }
        return &r->units_max;
    }
    return r->has_units ? &r->units : NULL;
}

static cc_rc add_checked(ectx *e, int64_t *acc, int64_t x) {
    if (cc_add_i64(*acc, x, acc) || *acc > CC_AMOUNT_MAX)
        return cc_fail(e->err, CC_ERR_INVALID, "amount", "price of %.100s overflows", e->r->name);
    return CC_OK;
}

static cc_rc token_estimate(ectx *e, int64_t *out) {
    const prule *r = e->r;
    const punits *u = pick_units(e);
    CC_ASSERT(u);
    int64_t in = r->tok_fixed;
    for (int i = 0; i < r->ntok_text; i++) {
        const cJSON *it = e->inputs ? cJSON_GetObjectItemCaseSensitive(e->inputs, r->tok_text[i]) : NULL;
        if (!it || cJSON_IsNull(it)) continue;
        int64_t add = cJSON_IsString(it) && it->valuestring ? (int64_t)strlen(it->valuestring) : r->tok_text_linked;
        in += add;
    }
    for (int i = 0; i < r->ntok_present; i++) {
        const cJSON *it = e->inputs ? cJSON_GetObjectItemCaseSensitive(e->inputs, r->tok_present[i]) : NULL;
        if (it && !cJSON_IsNull(it)) in += r->tok_present_n[i];
    }
    int64_t outn = (u->has & U_MAXOUT) ? u->max_out : r->tok_max_out_default;
    if (r->tok_max_out_input) {
        ival v;
        get_input(e, r->tok_max_out_input, &v);
        if (v.known && v.is_int && v.i > 0) {
            if (v.i < outn || !(u->has & U_MAXOUT)) outn = v.i;
            if (outn > CC_PRICE_TOKENS_MAX) outn = CC_PRICE_TOKENS_MAX;
        }
    }
    int64_t a = 0, b = 0, sum = 0;
    cc_rc rc;
    if ((rc = cc_muldiv_half_up(in, u->in_1m, 1000000, &a, e->err)) != CC_OK) return rc;
    if ((rc = cc_muldiv_half_up(outn, u->out_1m, 1000000, &b, e->err)) != CC_OK) return rc;
    if ((rc = add_checked(e, &sum, a)) != CC_OK || (rc = add_checked(e, &sum, b)) != CC_OK) return rc;
    *out = sum;
    return CC_OK;
}

/* snprintf(dst, cap, "%s", src) without printf's machinery (admission prices
** every API node of a prompt: this ran 3-4 times per node). */
static void copy_name(char *dst, size_t cap, const char *src) {
    CC_ASSERT(cap > 0);
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void fill_names(ectx *e, int used_default) {
    const prule *r = e->r;
    cc_price_result *o = e->out;
    o->used_default = used_default;
    copy_name(o->rule, sizeof o->rule, used_default ? "default" : r->name);
    copy_name(o->family, sizeof o->family, r->family ? r->family : "");
    copy_name(o->model, sizeof o->model, r->model ? r->model : "");
    if (r->model_input) {
        const cJSON *it = e->inputs ? cJSON_GetObjectItemCaseSensitive(e->inputs, r->model_input) : NULL;
        if (cJSON_IsString(it) && it->valuestring && it->valuestring[0])
            copy_name(o->model, sizeof o->model, it->valuestring);
    }
}

/* Checks the table and class, clears the result. */
static cc_rc begin_checks(const cc_price_table *t, const char *node_class, cc_price_result *out, cc_error *err) {
    cc_error_clear(err);
    memset(out, 0, sizeof *out);
    if (!t) return cc_fail(err, CC_ERR_INVALID, "table", "no price table");
    if (!node_class || !node_class[0])
        return cc_fail(err, CC_ERR_INVALID, "node_class", "node_class is empty");
    if (strnlen(node_class, CC_TEXT_BYTES_MAX + 1) > CC_TEXT_BYTES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "node_class", "node_class is longer than %d bytes", CC_TEXT_BYTES_MAX);
    return CC_OK;
}

/* Sets up the per-call context for parsed inputs (NULL: none). */
static void begin_tree(const cc_price_table *t, const char *node_class, const cJSON *inputs,
                       cc_price_result *out, cc_error *err, ectx *e) {
    const prule *r = find_rule(t, node_class);
    e->r = r ? r : &t->def;
    e->inputs = inputs;
    e->out = out;
    e->err = err;
    fill_names(e, r == NULL);
}

/* Sets up the per-call context; the caller deletes *root. */
static cc_rc begin(const cc_price_table *t, const char *node_class, const char *inputs_json, size_t inputs_len,
                   cc_price_result *out, cc_error *err, cJSON **root, ectx *e) {
    *root = NULL;
    cc_rc rc = begin_checks(t, node_class, out, err);
    if (rc != CC_OK) return rc;
    if (inputs_json && inputs_len) {
        if (inputs_len > CC_PRICE_INPUTS_BYTES_MAX)
            return cc_fail(err, CC_ERR_LIMIT, "inputs", "inputs are larger than %d bytes", CC_PRICE_INPUTS_BYTES_MAX);
        *root = parse_json(inputs_json, inputs_len);
        if (!*root) return cc_fail(err, CC_ERR_INVALID, "inputs", "inputs are not valid JSON");
        if (!cJSON_IsObject(*root)) {
            cJSON_Delete(*root);
            *root = NULL;
            return cc_fail(err, CC_ERR_INVALID, "inputs", "inputs must be a JSON object");
        }
    }
    begin_tree(t, node_class, *root, out, err, e);
    return CC_OK;
}

/* Upstream calls a run makes: the batch size of the rule's batch input at
** execution (["comfy_credits_batch", N]), else 1. */
static cc_rc batch_calls(ectx *e, int64_t *calls) {
    *calls = 1;
    const char *name = e->r->batch_input;
    const cJSON *it = name && e->inputs ? cJSON_GetObjectItemCaseSensitive(e->inputs, name) : NULL;
    if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2 || !cJSON_IsString(it->child) ||
        strcmp(it->child->valuestring, CC_PRICE_BATCH_MARK) != 0 || !cJSON_IsNumber(it->child->next))
        return CC_OK; /* absent, or a link whose batch is not known before execution */
    double n = it->child->next->valuedouble;
    if (n > CC_PRICE_BATCH_MAX)
        return cc_fail(e->err, CC_ERR_LIMIT, name, "%.100s makes one paid call per image: a batch of %.0f is more "
                       "than %d", e->r->name, n, CC_PRICE_BATCH_MAX);
    if (n < 0 || (double)(int64_t)n != n)
        return cc_fail(e->err, CC_ERR_INVALID, name, "the batch size of input '%.60s' is not a whole number", name);
    if (n >= 1) *calls = (int64_t)n;
    return CC_OK;
}

static cc_rc estimate_rule(ectx *e, int64_t *micro) {
    const prule *r = e->r;
    cc_rc rc;
    int64_t base = 0;
    if (r->has_table) {
        if ((rc = table_price(e, &base)) != CC_OK) return rc;
    } else if (r->has_flat) {
        base = r->flat;
    }
    if ((r->has_table || r->has_flat) && (rc = apply_mults(e, r->mults, r->nmults, &base)) != CC_OK) return rc;
    if (r->has_tokens) {
        int64_t tok = 0;
        if ((rc = token_estimate(e, &tok)) != CC_OK) return rc;
        if ((rc = add_checked(e, &base, tok)) != CC_OK) return rc;
    }
    if (base <= 0) /* the parser guarantees this cannot happen */
        return cc_fail(e->err, CC_ERR_INVALID, "node_class", "rule %.100s priced a run at zero", r->name);
    int64_t calls = 1;
    if ((rc = batch_calls(e, &calls)) != CC_OK) return rc;
    if (cc_mul_i64(base, calls, &base) || base > CC_AMOUNT_MAX)
        return cc_fail(e->err, CC_ERR_INVALID, r->batch_input, "price of %.100s overflows", r->name);
    e->out->calls = calls;
    *micro = base;
    return CC_OK;
}

cc_rc cc_price_estimate(const cc_price_table *t, const char *node_class, const char *inputs_json,
                        size_t inputs_len, cc_price_result *out, cc_error *err) {
    cJSON *root;
    ectx e;
    memset(&e, 0, sizeof e);
    cc_rc rc = begin(t, node_class, inputs_json, inputs_len, out, err, &root, &e);
    if (rc == CC_OK) rc = estimate_rule(&e, &out->micro);
    cJSON_Delete(root);
    if (rc != CC_OK) out->micro = 0;
    return rc;
}

cc_rc cc_price_estimate_tree(const cc_price_table *t, const char *node_class, const struct cJSON *inputs,
                             cc_price_result *out, cc_error *err) {
    cc_rc rc = begin_checks(t, node_class, out, err);
    if (rc != CC_OK) return rc;
    if (inputs && !cJSON_IsObject(inputs))
        return cc_fail(err, CC_ERR_INVALID, "inputs", "inputs must be a JSON object");
    ectx e;
    memset(&e, 0, sizeof e);
    begin_tree(t, node_class, inputs, out, err, &e);
    rc = estimate_rule(&e, &out->micro);
    if (rc != CC_OK) out->micro = 0;
    return rc;
}

cc_rc cc_price_actual(const cc_price_table *t, const char *node_class, const char *inputs_json,
                      size_t inputs_len, const cc_usage *usage, int64_t hold_micro, cc_price_result *out,
                      cc_error *err) {
    if (!usage) return cc_fail(err, CC_ERR_INVALID, "usage", "usage is required");
    if (hold_micro < 0 || hold_micro > CC_AMOUNT_MAX)
        return cc_fail(err, CC_ERR_INVALID, "hold_micro", "hold_micro must be between 0 and %lld",
                       (long long)CC_AMOUNT_MAX);
    if (usage->credits_used_micro > CC_AMOUNT_MAX)
        return cc_fail(err, CC_ERR_INVALID, "credits_used_micro", "credits_used_micro is larger than %lld",
                       (long long)CC_AMOUNT_MAX);
    cJSON *root;
    ectx e;
    cc_rc rc = begin(t, node_class, inputs_json, inputs_len, out, err, &root, &e);
    if (rc != CC_OK) goto done;
    if (usage->credits_used_micro >= 0) {
        out->micro = usage->credits_used_micro;
        out->from_usage = 1;
        goto done;
    }
    const punits *u = pick_units(&e);
    int used = 0;
    int64_t sum = 0, x;
    if (u) {
        struct { unsigned bit; int64_t count, price, per; } parts[] = {
            {U_IN, usage->input_tokens, u->in_1m, 1000000},
            {U_OUT, usage->output_tokens, u->out_1m, 1000000},
            {U_IMAGE, usage->images, u->image, 1},
            {U_SECOND, usage->seconds_ms, u->second, 1000},
        };
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
            if (!(u->has & parts[i].bit) || parts[i].count < 0) continue;
            if ((rc = cc_muldiv_half_up(parts[i].count, parts[i].price, parts[i].per, &x, err)) != CC_OK) goto done;
            if ((rc = add_checked(&e, &sum, x)) != CC_OK) goto done;
            used = 1;
        }
    }
    if (used) {
        out->micro = sum;
        out->from_usage = 1;
    } else {
        out->micro = hold_micro;
        out->from_usage = 0;
    }
done:
    cJSON_Delete(root);
    if (rc != CC_OK) out->micro = 0;
    return rc;
}
