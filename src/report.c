/* report.c — reconciliation report from the ledger's entries (see report.h). */
#include "report.h"

#include <string.h>

#define PAGE_ENTRIES 1000
#define ACCOUNTS_PAGE 1000
#define KINDS_MASK ((1u << CC_KIND_SETTLE) | (1u << CC_KIND_VOID) | (1u << CC_KIND_EXPIRE) | \
                    (1u << CC_KIND_PURCHASE) | (1u << CC_KIND_TEST) | (1u << CC_KIND_GRANT))

typedef struct builder {
    int totals_only;
    int64_t first_day;
    cc_report *r;
    /* spend rows: open-addressing index into r->spend */
    int *slots;
    size_t mask;
    int spend_cap;
    int accounts_cap;
} builder;

static int add(int64_t *acc, int64_t v) { return cc_add_i64(*acc, v, acc); }

static cc_rc overflow(cc_error *err) {
    return cc_fail(err, CC_ERR_LIMIT, "", "a report sum exceeds the int64 range");
}

static uint64_t spend_hash(int64_t day, const char *a, const char *b) {
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)day;
    for (const char *p = a; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
    for (const char *p = b; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h;
}

static cc_rc spend_row(builder *b, const cc_entry *e, cc_report_spend **out, cc_error *err) {
    int64_t day = e->created_ms / CC_DAY_MS;
    size_t i = (size_t)spend_hash(day, e->node_class, e->model) & b->mask;
    for (;;) {
        int k = b->slots[i];
        if (k < 0) break;
        cc_report_spend *s = &b->r->spend[k];
        if (s->day == day && !strcmp(s->node_class, e->node_class) && !strcmp(s->model, e->model)) {
            *out = s;
            return CC_OK;
        }
        i = (i + 1) & b->mask;
    }
    if (b->r->n_spend >= CC_REPORT_SPEND_ROWS_MAX)
        return cc_fail(err, CC_ERR_LIMIT, "from", "more than %d (day, node, model) rows: narrow the range",
                       CC_REPORT_SPEND_ROWS_MAX);
    if (b->r->n_spend == b->spend_cap) {
        int cap = b->spend_cap ? b->spend_cap * 2 : 256;
        if (cap > CC_REPORT_SPEND_ROWS_MAX) cap = CC_REPORT_SPEND_ROWS_MAX;
        cc_report_spend *n = realloc(b->r->spend, sizeof *n * (size_t)cap);
        if (!n) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
        b->r->spend = n;
        b->spend_cap = cap;
    }
    cc_report_spend *s = &b->r->spend[b->r->n_spend];
    memset(s, 0, sizeof *s);
    s->day = day;
    memcpy(s->node_class, e->node_class, sizeof s->node_class);
    memcpy(s->model, e->model, sizeof s->model);
    b->slots[i] = b->r->n_spend++;
    *out = s;
    return CC_OK;
}

/* Adds one entry to t (and, for a settle, to the spend row). */
static cc_rc count_entry(builder *b, const cc_entry *e, cc_report_totals *t, cc_report_account *acc,
                         cc_error *err) {
    int64_t charged = -e->delta;
    switch (e->kind) {
    case CC_KIND_SETTLE: {
        CC_ASSERT(charged >= 0 && e->uncollected >= 0);
        if (add(&t->runs, 1) || add(&t->runs_charged, charged > 0) || add(&t->billed, e->amount) ||
            add(&t->charged, charged) || add(&t->uncollected, e->uncollected))
            return overflow(err);
        if (acc && (add(&acc->runs, 1) || add(&acc->billed, e->amount) || add(&acc->charged, charged) ||
                    add(&acc->uncollected, e->uncollected)))
            return overflow(err);
        if (!b->totals_only) {
            cc_report_spend *s = NULL;
            cc_rc rc = spend_row(b, e, &s, err);
            if (rc != CC_OK) return rc;
            if (add(&s->runs, 1) || add(&s->billed, e->amount) || add(&s->charged, charged) ||
                add(&s->uncollected, e->uncollected))
                return overflow(err);
        }
        break;
    }
    case CC_KIND_VOID:
        if (add(&t->runs, 1) || add(&t->runs_free, 1) || (acc && add(&acc->runs, 1))) return overflow(err);
        break;
    case CC_KIND_EXPIRE:
        if (add(&t->expired, 1)) return overflow(err);
        break;
    case CC_KIND_PURCHASE:
        if (add(&t->purchases, 1) || add(&t->purchased, e->delta) || (acc && add(&acc->purchased, e->delta)))
            return overflow(err);
        break;
    case CC_KIND_TEST:
        if (add(&t->test_purchases, 1) || add(&t->test_purchased, e->delta)) return overflow(err);
        break;
    case CC_KIND_GRANT:
        if (add(&t->grants, 1) || add(&t->granted, e->delta) || (acc && add(&acc->granted, e->delta)))
            return overflow(err);
        break;
    default:
        break;
    }
    return CC_OK;
}

static int add_totals(cc_report_totals *a, const cc_report_totals *b) {
    return add(&a->runs, b->runs) || add(&a->runs_charged, b->runs_charged) || add(&a->runs_free, b->runs_free) ||
           add(&a->expired, b->expired) || add(&a->billed, b->billed) || add(&a->charged, b->charged) ||
           add(&a->uncollected, b->uncollected) || add(&a->purchases, b->purchases) ||
           add(&a->purchased, b->purchased) || add(&a->test_purchases, b->test_purchases) ||
           add(&a->test_purchased, b->test_purchased) || add(&a->grants, b->grants) || add(&a->granted, b->granted);
}

/* Walks every entry of the range, account by account. `check` (may be NULL)
** gets each account with its all-time sums when totals_only. */
typedef struct acct_sums {
    const cc_account *a;
    cc_report_totals t;
} acct_sums;

static cc_rc walk(cc_ledger *l, builder *b, int64_t since_ms, int64_t until_ms,
                  int (*check)(void *ctx, const acct_sums *s), void *ctx, cc_error *err) {
    cc_account *accts = malloc(sizeof *accts * ACCOUNTS_PAGE);
    cc_entry *page = malloc(sizeof *page * PAGE_ENTRIES);
    if (!accts || !page) {
        free(accts);
        free(page);
        return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    cc_rc rc = CC_OK;
    int64_t after = 0;
    for (;;) {
        int na = 0;
        rc = cc_ledger_accounts(l, after, ACCOUNTS_PAGE, accts, &na, err);
        if (rc != CC_OK) break;
        for (int i = 0; i < na && rc == CC_OK; i++) {
            cc_report_account acc;
            memset(&acc, 0, sizeof acc);
            acc.account_id = accts[i].id;
            memcpy(acc.email, accts[i].email, sizeof acc.email);
            cc_report_totals at;
            memset(&at, 0, sizeof at);
            cc_history_query q;
            memset(&q, 0, sizeof q);
            q.account_id = accts[i].id;
            q.kinds_mask = KINDS_MASK;
            q.since_ms = since_ms;
            q.until_ms = until_ms;
            q.limit = PAGE_ENTRIES;
            int any = 0;
            for (;;) {
                int n = 0;
                int64_t next = 0;
                rc = cc_ledger_history(l, &q, page, &n, &next, err);
                if (rc != CC_OK) break;
                for (int j = 0; j < n && rc == CC_OK; j++) {
                    const cc_entry *e = &page[j];
                    if (e->created_ms < since_ms || e->created_ms >= until_ms) continue;
                    any = 1;
                    cc_report_totals *dt = &at;
                    if (!b->totals_only) {
                        int64_t d = e->created_ms / CC_DAY_MS - b->first_day;
                        CC_ASSERT(d >= 0 && d < b->r->n_days);
                        dt = &b->r->days[d].t;
                    }
                    rc = count_entry(b, e, dt, &acc, err);
                }
                if (rc != CC_OK || next == 0) break;
                q.before_id = next;
            }
            if (rc != CC_OK) break;
            if (b->totals_only) {
                if (add_totals(&b->r->total, &at)) { rc = overflow(err); break; }
                acct_sums s = {&accts[i], at};
                if (check && check(ctx, &s)) break;
            } else {
                if (any) {
                    if (b->r->n_accounts >= CC_REPORT_ACCOUNTS_MAX) {
                        rc = cc_fail(err, CC_ERR_LIMIT, "from", "more than %d accounts active in the range",
                                     CC_REPORT_ACCOUNTS_MAX);
                        break;
                    }
                    if (b->r->n_accounts == b->accounts_cap) {
                        int cap = b->accounts_cap ? b->accounts_cap * 2 : 64;
                        cc_report_account *n = realloc(b->r->accounts, sizeof *n * (size_t)cap);
                        if (!n) { rc = cc_fail(err, CC_ERR_NOMEM, "", "out of memory"); break; }
                        b->r->accounts = n;
                        b->accounts_cap = cap;
                    }
                    b->r->accounts[b->r->n_accounts++] = acc;
                }
            }
        }
        if (rc != CC_OK || na < ACCOUNTS_PAGE) break;
        after = accts[na - 1].id;
    }
    free(accts);
    free(page);
    return rc;
}

static int cmp_spend(const void *x, const void *y) {
    const cc_report_spend *a = x, *b = y;
    if (a->day != b->day) return a->day < b->day ? -1 : 1;
    if (a->charged != b->charged) return a->charged > b->charged ? -1 : 1;
    int c = strcmp(a->node_class, b->node_class);
    return c ? c : strcmp(a->model, b->model);
}

static int cmp_account(const void *x, const void *y) {
    const cc_report_account *a = x, *b = y;
    if (a->charged != b->charged) return a->charged > b->charged ? -1 : 1;
    if (a->purchased != b->purchased) return a->purchased > b->purchased ? -1 : 1;
    return a->account_id < b->account_id ? -1 : a->account_id > b->account_id;
}

void cc_report_free(cc_report *r) {
    if (!r) return;
    free(r->days);
    free(r->spend);
    free(r->accounts);
    free(r);
}

cc_rc cc_report_build(cc_ledger *l, int64_t since_ms, int64_t until_ms, cc_report **out, cc_error *err) {
    *out = NULL;
    if (since_ms < 0) return cc_fail(err, CC_ERR_INVALID, "from", "the start of the range is before 1970");
    if (until_ms <= since_ms)
        return cc_fail(err, CC_ERR_INVALID, "to", "the end of the range must be after its start");
    if (until_ms - since_ms > CC_REPORT_RANGE_MS_MAX)
        return cc_fail(err, CC_ERR_INVALID, "to", "a report covers at most %lld days",
                       (long long)(CC_REPORT_RANGE_MS_MAX / CC_DAY_MS));
    cc_report *r = calloc(1, sizeof *r);
    if (!r) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    r->since_ms = since_ms;
    r->until_ms = until_ms;
    builder b;
    memset(&b, 0, sizeof b);
    b.r = r;
    b.first_day = since_ms / CC_DAY_MS;
    r->n_days = (int)((until_ms - 1) / CC_DAY_MS - b.first_day + 1);
    r->days = calloc((size_t)r->n_days, sizeof *r->days);
    size_t slots = 1;
    while (slots < (size_t)CC_REPORT_SPEND_ROWS_MAX * 2) slots <<= 1;
    b.slots = malloc(sizeof *b.slots * slots);
    if (!r->days || !b.slots) {
        free(b.slots);
        cc_report_free(r);
        return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    memset(b.slots, 0xff, sizeof *b.slots * slots); /* -1: empty */
    b.mask = slots - 1;
    for (int i = 0; i < r->n_days; i++) r->days[i].day = b.first_day + i;
    cc_rc rc = walk(l, &b, since_ms, until_ms, NULL, NULL, err);
    free(b.slots);
    if (rc != CC_OK) {
        cc_report_free(r);
        return rc;
    }
    for (int i = 0; i < r->n_days; i++)
        if (add_totals(&r->total, &r->days[i].t)) {
            cc_report_free(r);
            return overflow(err);
        }
    if (r->n_spend) qsort(r->spend, (size_t)r->n_spend, sizeof *r->spend, cmp_spend);
    if (r->n_accounts) qsort(r->accounts, (size_t)r->n_accounts, sizeof *r->accounts, cmp_account);
    *out = r;
    return CC_OK;
}

/* ---- check: Σ entries == the accounts' running totals */

typedef struct check_ctx {
    char **problems;
    int cap, n;
    int64_t total_problems;
} check_ctx;

static void problem(check_ctx *c, const cc_account *a, const char *what, int64_t entries, int64_t account) {
    c->total_problems++;
    if (c->n >= c->cap) return;
    char buf[256];
    snprintf(buf, sizeof buf, "account %lld: %s in the report's entries %lld != account total %lld",
             (long long)a->id, what, (long long)entries, (long long)account);
    c->problems[c->n] = malloc(strlen(buf) + 1);
    if (c->problems[c->n]) strcpy(c->problems[c->n++], buf);
}

static int check_account(void *ctx, const acct_sums *s) {
    check_ctx *c = ctx;
    if (s->t.charged != s->a->spent_total) problem(c, s->a, "charged", s->t.charged, s->a->spent_total);
    if (s->t.uncollected != s->a->uncollected_total)
        problem(c, s->a, "uncollected", s->t.uncollected, s->a->uncollected_total);
    if (s->t.purchased != s->a->paid_total) problem(c, s->a, "purchased", s->t.purchased, s->a->paid_total);
    if (s->t.granted != s->a->granted_total) problem(c, s->a, "granted", s->t.granted, s->a->granted_total);
    return 0;
}

cc_rc cc_report_check(cc_ledger *l, char **problems, int cap, int *n_problems, cc_report_totals *total,
                      cc_error *err) {
    *n_problems = 0;
    cc_report r;
    memset(&r, 0, sizeof r);
    builder b;
    memset(&b, 0, sizeof b);
    b.totals_only = 1;
    b.r = &r;
    check_ctx c = {problems, cap < 0 ? 0 : cap, 0, 0};
    cc_rc rc = walk(l, &b, 0, INT64_MAX, check_account, &c, err);
    if (rc != CC_OK) {
        for (int i = 0; i < c.n; i++) free(problems[i]);
        return rc;
    }
    *n_problems = c.n;
    if (total) *total = r.total;
    return CC_OK;
}
