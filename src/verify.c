/*
** verify.c — every ledger invariant recomputed from the entries. See verify.h
** for the contract.
**
** One pass over a read snapshot: accounts and holds are loaded into sorted
** arrays (the store scans by id), then every entry is replayed against them
** with 128-bit running sums; the account and hold records are compared with
** what the entries give at the end.
*/
#include "ledger_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct acc_sum {
    cc_account a;
    int64_t balance, held, paid, granted, spent, uncollected, entries, test;
} acc_sum;

typedef struct hold_chk {
    cc_hold h;
    int64_t hold_entries;      /* entries of kind hold with this id: must be 1 */
    int64_t resolutions;       /* settle/void/expire entries: 0 if open, else 1 */
    int64_t resolution_kind;
} hold_chk;

typedef struct vctx {
    acc_sum *acc;
    int64_t nacc, capacc;
    hold_chk *holds;
    int64_t nholds, capholds;
    char **problems;
    int cap, n;
    int64_t total_problems;
    int64_t cur;               /* index into acc of the account being scanned */
    int64_t last_entry_id;
    int oom;
    cc_verify_stats *stats;
} vctx;

static void problem(vctx *v, const char *fmt, ...) CC_PRINTF_LIKE(2, 3);
static void problem(vctx *v, const char *fmt, ...) {
    v->total_problems++;
    if (v->n >= v->cap) return;
    char buf[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char *p = strdup(buf);
    if (!p) { v->oom = 1; return; }
    v->problems[v->n++] = p;
}

static int grow(void **arr, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return 0;
    int64_t nc = *cap ? *cap * 2 : 1024;
    while (nc < need) nc *= 2;
    void *p = realloc(*arr, (size_t)nc * elem);
    if (!p) return -1;
    *arr = p;
    *cap = nc;
    return 0;
}

static int v_account(void *ctx, const cc_account *a) {
    vctx *v = ctx;
    if (grow((void **)&v->acc, &v->capacc, v->nacc + 1, sizeof(acc_sum))) { v->oom = 1; return 1; }
    acc_sum *s = &v->acc[v->nacc++];
    memset(s, 0, sizeof *s);
    s->a = *a;
    return 0;
}

static int v_hold(void *ctx, const cc_hold *h) {
    vctx *v = ctx;
    if (grow((void **)&v->holds, &v->capholds, v->nholds + 1, sizeof(hold_chk))) { v->oom = 1; return 1; }
    hold_chk *c = &v->holds[v->nholds++];
    memset(c, 0, sizeof *c);
    c->h = *h;
    return 0;
}

static acc_sum *find_acc(vctx *v, int64_t id) {
    int64_t lo = 0, hi = v->nacc - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (v->acc[mid].a.id == id) return &v->acc[mid];
        if (v->acc[mid].a.id < id) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}

static hold_chk *find_hold(vctx *v, int64_t id) {
    int64_t lo = 0, hi = v->nholds - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (v->holds[mid].h.id == id) return &v->holds[mid];
        if (v->holds[mid].h.id < id) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}

/* A running total of verify, checked: a corrupted file cannot make it wrap. */
static void vsum(vctx *v, const cc_entry *e, int64_t *total, int64_t delta) {
    if (cc_add_i64(*total, delta, total)) {
        problem(v, "entry %lld of account %lld overflows a running total", (long long)e->id, (long long)e->account_id);
        *total = delta < 0 ? INT64_MIN : INT64_MAX;
    }
}

static int v_entry(void *ctx, const cc_entry *e) {
    vctx *v = ctx;
    v->stats->entries++;
    acc_sum *s = find_acc(v, e->account_id);
    if (!s) {
        problem(v, "entry %lld belongs to unknown account %lld", (long long)e->id, (long long)e->account_id);
        return 0;
    }
    if (e->kind < 1 || e->kind > CC_KIND_MAX) {
        problem(v, "entry %lld has unknown kind %d", (long long)e->id, e->kind);
        return 0;
    }
    /* Running sums checked (vsum) so a corrupted file cannot overflow the check. */
    int64_t nb = s->balance, nh = s->held;
    vsum(v, e, &nb, e->delta);
    vsum(v, e, &nh, e->held_delta);
    if (nb != e->balance_after || nh != e->held_after)
        problem(v, "entry %lld of account %lld: balance/held after is %lld/%lld, entries give %lld/%lld",
                (long long)e->id, (long long)e->account_id, (long long)e->balance_after,
                (long long)e->held_after, (long long)nb, (long long)nh);
    if (nb < 0) problem(v, "entry %lld drives account %lld negative", (long long)e->id, (long long)e->account_id);
    if (nh < 0 || nh > nb)
        problem(v, "entry %lld leaves account %lld with held %lld outside 0..balance %lld",
                (long long)e->id, (long long)e->account_id, (long long)nh, (long long)nb);
    s->balance = nb;
    s->held = nh;
    /* TEST credits: only a test entry adds them, only a settle may spend them (at most its charge). */
    int64_t test_was = s->test;
    if (e->kind == CC_KIND_TEST) vsum(v, e, &s->test, e->delta);
    else s->test = e->test_after;
    if (e->test_after != s->test || e->test_after < 0 || e->test_after > e->balance_after ||
        (e->kind == CC_KIND_SETTLE ? (e->test_after > test_was || test_was - e->test_after > -e->delta)
                                   : (e->kind != CC_KIND_TEST && e->test_after != test_was)))
        problem(v, "entry %lld of account %lld: TEST credits after it are %lld, entries give %lld (was %lld)",
                (long long)e->id, (long long)e->account_id, (long long)e->test_after, (long long)s->test,
                (long long)test_was);
    s->entries++;
    switch (e->kind) {
    case CC_KIND_GRANT: vsum(v, e, &s->granted, e->delta); if (e->delta <= 0 || e->held_delta) goto shape; break;
    case CC_KIND_PURCHASE: vsum(v, e, &s->paid, e->delta); if (e->delta <= 0 || e->held_delta) goto shape; break;
    case CC_KIND_TEST: if (e->delta <= 0 || e->held_delta) goto shape; break;
    case CC_KIND_HOLD: {
        if (e->delta != 0 || e->held_delta != e->amount || e->amount <= 0) goto shape;
        hold_chk *h = find_hold(v, e->id);
        if (!h) problem(v, "hold entry %lld has no hold record", (long long)e->id);
        else {
            h->hold_entries++;
            if (h->h.amount != e->amount || h->h.account_id != e->account_id)
                problem(v, "hold %lld record does not match its entry", (long long)e->id);
        }
        break;
    }
    case CC_KIND_SETTLE:
    case CC_KIND_VOID:
    case CC_KIND_EXPIRE: {
        if (e->kind == CC_KIND_SETTLE) {
            vsum(v, e, &s->spent, -e->delta);
            vsum(v, e, &s->uncollected, e->uncollected);
            if (e->delta > 0 || e->uncollected < 0 || -e->delta + e->uncollected != e->amount) goto shape;
        } else if (e->delta != 0 || e->uncollected != 0) {
            goto shape;
        }
        hold_chk *h = find_hold(v, e->hold_id);
        if (!h) { problem(v, "entry %lld resolves unknown hold %lld", (long long)e->id, (long long)e->hold_id); break; }
        h->resolutions++;
        if (h->resolutions > 1)
            problem(v, "hold %lld resolved more than once (again by entry %lld)", (long long)e->hold_id,
                    (long long)e->id);
        if (e->held_delta != -h->h.amount)
            problem(v, "entry %lld releases %lld but hold %lld held %lld", (long long)e->id,
                    (long long)-e->held_delta, (long long)h->h.id, (long long)h->h.amount);
        if (h->h.resolved_by != e->id && h->resolutions == 1)
            problem(v, "hold %lld says it was resolved by entry %lld, not %lld", (long long)h->h.id,
                    (long long)h->h.resolved_by, (long long)e->id);
        int want = e->kind == CC_KIND_SETTLE ? CC_HOLD_SETTLED
                 : e->kind == CC_KIND_VOID ? CC_HOLD_VOIDED : CC_HOLD_EXPIRED;
        if (h->h.state != want)
            problem(v, "hold %lld is %s but entry %lld %s it", (long long)h->h.id,
                    ledger_hold_state_name(h->h.state), (long long)e->id, cc_kind_name(e->kind));
        if (e->id < h->h.id)
            problem(v, "entry %lld resolves hold %lld before it existed", (long long)e->id, (long long)h->h.id);
        break;
    }
    }
    return 0;
shape:
    problem(v, "entry %lld (%s) has amounts that do not fit its kind", (long long)e->id, cc_kind_name(e->kind));
    return 0;
}

cc_rc cc_ledger_verify(cc_ledger *l, char **problems, int cap, int *n_problems,
                       cc_verify_stats *stats, cc_error *err) {
    if (cap < 0 || cap > CC_VERIFY_PROBLEMS_MAX)
        return cc_fail(err, CC_ERR_INVALID, "cap", "cap must be 0..%d", CC_VERIFY_PROBLEMS_MAX);
    vctx v;
    memset(&v, 0, sizeof v);
    v.problems = problems;
    v.cap = cap;
    cc_verify_stats st;
    memset(&st, 0, sizeof st);
    v.stats = &st;
    int slot;
    cc_conn *c = ledger_reader_take(l, &slot);
    cc_rc rc = c->v->begin_read(c, err);
    if (rc == CC_OK) rc = c->v->scan_accounts(c, v_account, &v, err);
    if (rc == CC_OK && !v.oom) rc = c->v->scan_holds(c, v_hold, &v, err);
    if (rc == CC_OK && !v.oom) rc = c->v->scan_entries(c, v_entry, &v, err);
    c->v->end_read(c);
    ledger_reader_give(l, slot);
    if (rc == CC_OK && v.oom) rc = cc_fail(err, CC_ERR_NOMEM, "", "out of memory during verify");
    if (rc == CC_OK) {
        for (int64_t i = 0; i < v.nacc; i++) {
            acc_sum *s = &v.acc[i];
            const cc_account *a = &s->a;
            if (cc_add_i64(st.balance_total, a->balance, &st.balance_total) ||
                cc_add_i64(st.held_total, a->held, &st.held_total))
                problem(&v, "the ledger's balance or held total overflows at account %lld", (long long)a->id);
            if (a->balance < 0) problem(&v, "account %lld has a negative balance %lld", (long long)a->id, (long long)a->balance);
            if (s->balance != a->balance)
                problem(&v, "account %lld: balance %lld but its entries sum to %lld", (long long)a->id,
                        (long long)a->balance, (long long)s->balance);
            if (s->held != a->held)
                problem(&v, "account %lld: held %lld but its entries sum to %lld", (long long)a->id,
                        (long long)a->held, (long long)s->held);
            if (s->paid != a->paid_total || s->granted != a->granted_total || s->spent != a->spent_total ||
                s->uncollected != a->uncollected_total)
                problem(&v, "account %lld: totals paid/granted/spent/uncollected %lld/%lld/%lld/%lld, "
                        "entries give %lld/%lld/%lld/%lld", (long long)a->id, (long long)a->paid_total,
                        (long long)a->granted_total, (long long)a->spent_total,
                        (long long)a->uncollected_total, (long long)s->paid, (long long)s->granted,
                        (long long)s->spent, (long long)s->uncollected);
            if (s->test != a->test_balance)
                problem(&v, "account %lld: TEST credits %lld but its entries give %lld", (long long)a->id,
                        (long long)a->test_balance, (long long)s->test);
            s->held = 0; /* reused below: open hold sum from hold records */
        }
        for (int64_t i = 0; i < v.nholds; i++) {
            hold_chk *h = &v.holds[i];
            if (h->hold_entries != 1)
                problem(&v, "hold %lld has %lld hold entries", (long long)h->h.id, (long long)h->hold_entries);
            if (h->h.state == CC_HOLD_OPEN) {
                st.open_holds++;
                if (h->resolutions != 0)
                    problem(&v, "hold %lld is open but has a resolving entry", (long long)h->h.id);
                acc_sum *s = find_acc(&v, h->h.account_id);
                if (s) s->held += h->h.amount;
                else problem(&v, "hold %lld belongs to unknown account", (long long)h->h.id);
            } else if (h->resolutions == 0) {
                problem(&v, "hold %lld is %s but no entry resolved it", (long long)h->h.id,
                        ledger_hold_state_name(h->h.state));
            }
        }
        for (int64_t i = 0; i < v.nacc; i++)
            if (v.acc[i].held != v.acc[i].a.held)
                problem(&v, "account %lld: held %lld but its open holds sum to %lld",
                        (long long)v.acc[i].a.id, (long long)v.acc[i].a.held, (long long)v.acc[i].held);
        st.accounts = v.nacc;
        st.holds = v.nholds;
    }
    st.problems_total = v.total_problems;
    free(v.acc);
    free(v.holds);
    if (rc != CC_OK) {
        for (int i = 0; i < v.n; i++) free(v.problems[i]);
        *n_problems = 0;
        return rc;
    }
    *n_problems = v.n;
    if (stats) *stats = st;
    return CC_OK;
}
