/*
** ledger.c — the ledger object: open and close, the pool of reader
** connections, and the reads of what the money operations recorded.
** See ledger.h for the contract and the map of the ledger's files.
**
** Layout of this file:
**   1. names of kinds and states, helpers shared by the ledger's files
**   2. the reader pool
**   3. open and close
**   4. reads
*/
#include "commit.h"

#include <stdlib.h>

/* ---------------------------------------------------------------- 1. names, helpers */

static const char *const KIND_NAMES[CC_KIND_MAX + 1] = {
    "", "grant", "purchase", "hold", "settle", "void", "expire", "test"};

const char *cc_kind_name(int kind) {
    return (kind >= 1 && kind <= CC_KIND_MAX) ? KIND_NAMES[kind] : "unknown";
}

int cc_kind_from_name(const char *name) {
    if (!name) return 0;
    for (int k = 1; k <= CC_KIND_MAX; k++)
        if (strcmp(name, KIND_NAMES[k]) == 0) return k;
    return 0;
}

void cc_op_init(cc_op *op, cc_op_kind kind) {
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->usage.tokens_in = op->usage.tokens_out = -1;
    op->usage.images = op->usage.seconds_ms = -1;
    op->charge_max = -1;
}

const char *ledger_hold_state_name(int s) {
    switch (s) {
    case CC_HOLD_OPEN: return "open";
    case CC_HOLD_SETTLED: return "settled";
    case CC_HOLD_VOIDED: return "voided";
    case CC_HOLD_EXPIRED: return "expired";
    }
    return "unknown";
}

size_t ledger_slen(const char *s) { return s ? strlen(s) : 0; }

cc_rc ledger_check_text(const char *s, size_t max, const char *field, cc_error *err) {
    if (!s) return CC_OK;
    size_t n = strnlen(s, max + 1);
    if (n > max) return cc_fail(err, CC_ERR_INVALID, field, "%s is longer than %zu bytes", field, max);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 && s[i] != '\t')
            return cc_fail(err, CC_ERR_INVALID, field, "%s contains a control character", field);
    return CC_OK;
}

cc_rc ledger_check_id(int64_t v, const char *field, cc_error *err) {
    if (v <= 0) return cc_fail(err, CC_ERR_INVALID, field, "%s must be a positive id", field);
    return CC_OK;
}

void ledger_set_text(char *dst, size_t cap, const char *src) {
    size_t n = ledger_slen(src);
    CC_ASSERT(n < cap); /* validated before */
    if (n) memcpy(dst, src, n);
    dst[n] = 0;
}

/* ---------------------------------------------------------------- 2. readers */

cc_conn *ledger_reader_take(cc_ledger *l, int *slot) {
    cc_mutex_lock(&l->rmu);
    for (;;) {
        for (int i = 0; i < l->nreaders; i++) {
            if (l->reader_free[i]) {
                l->reader_free[i] = 0;
                cc_mutex_unlock(&l->rmu);
                *slot = i;
                return l->readers[i];
            }
        }
        cc_cond_wait(&l->rcv, &l->rmu);
    }
}

cc_conn *ledger_reader_try_take(cc_ledger *l, int *slot) {
    cc_mutex_lock(&l->rmu);
    for (int i = 0; i < l->nreaders; i++) {
        if (l->reader_free[i]) {
            l->reader_free[i] = 0;
            cc_mutex_unlock(&l->rmu);
            *slot = i;
            return l->readers[i];
        }
    }
    cc_mutex_unlock(&l->rmu);
    return NULL;
}

void ledger_reader_give(cc_ledger *l, int slot) {
    cc_mutex_lock(&l->rmu);
    CC_ASSERT(!l->reader_free[slot]);
    l->reader_free[slot] = 1;
    cc_cond_signal(&l->rcv);
    cc_mutex_unlock(&l->rmu);
}

/* ---------------------------------------------------------------- 3. open, close */

cc_rc cc_ledger_open(cc_store *store, int readers, cc_ledger **out, cc_error *err) {
    *out = NULL;
    if (!store) return cc_fail(err, CC_ERR_INVALID, "store", "no store");
    if (readers < 1 || readers > CC_READERS_MAX) {
        store->v->close(store);
        return cc_fail(err, CC_ERR_INVALID, "readers", "readers must be 1..%d", CC_READERS_MAX);
    }
    cc_ledger *l = calloc(1, sizeof *l);
    if (!l) {
        store->v->close(store);
        return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    l->store = store;
    cc_mutex_init(&l->rmu);
    cc_cond_init(&l->rcv);
    if (ledger_commit_init(l) != 0) {
        cc_ledger_close(l);
        return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    cc_rc rc = store->v->connect(store, 1, &l->writer, err);
    for (int i = 0; rc == CC_OK && i < readers; i++) {
        rc = store->v->connect(store, 0, &l->readers[i], err);
        if (rc == CC_OK) {
            l->reader_free[i] = 1;
            l->nreaders++;
        }
    }
    if (rc != CC_OK) {
        cc_ledger_close(l);
        return rc;
    }
    *out = l;
    return CC_OK;
}

void cc_ledger_close(cc_ledger *l) {
    if (!l) return;
    ledger_commit_destroy(l); /* asserts the ledger is idle */
    for (int i = 0; i < l->nreaders; i++) l->readers[i]->v->close(l->readers[i]);
    if (l->writer) l->writer->v->close(l->writer);
    l->store->v->close(l->store);
    cc_mutex_destroy(&l->rmu);
    cc_cond_destroy(&l->rcv);
    free(l);
}

/* ---------------------------------------------------------------- 4. reads */

cc_rc cc_ledger_hold(cc_ledger *l, int64_t hold_id, cc_hold *out, cc_error *err) {
    if (hold_id <= 0) return cc_fail(err, CC_ERR_INVALID, "hold_id", "hold_id must be a positive id");
    int slot;
    cc_conn *c = ledger_reader_take(l, &slot);
    cc_rc rc = c->v->hold_get(c, hold_id, out, err);
    ledger_reader_give(l, slot);
    return rc;
}

cc_rc cc_ledger_entry(cc_ledger *l, const char *key, cc_entry *out, cc_error *err) {
    if (!key || !*key || strlen(key) > CC_KEY_BYTES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "key", "key is empty or too long");
    int slot;
    cc_conn *c = ledger_reader_take(l, &slot);
    cc_rc rc = c->v->entry_by_key(c, key, out, err);
    ledger_reader_give(l, slot);
    return rc;
}

cc_rc cc_ledger_history(cc_ledger *l, const cc_history_query *q, cc_entry *out, int *n_out,
                        int64_t *next_before, cc_error *err) {
    if (q->account_id <= 0)
        return cc_fail(err, CC_ERR_INVALID, "account_id", "account_id must be a positive id");
    if (q->limit < 1 || q->limit > CC_HISTORY_PAGE_MAX)
        return cc_fail(err, CC_ERR_INVALID, "limit", "limit must be 1..%d", CC_HISTORY_PAGE_MAX);
    if (q->before_id < 0) return cc_fail(err, CC_ERR_INVALID, "cursor", "cursor must not be negative");
    if (q->kinds_mask & ~(unsigned)(((1u << (CC_KIND_MAX + 1)) - 1) & ~1u))
        return cc_fail(err, CC_ERR_INVALID, "kinds", "unknown entry kind in filter");
    if (q->since_ms < 0 || q->until_ms < 0 || (q->until_ms && q->since_ms > q->until_ms))
        return cc_fail(err, CC_ERR_INVALID, "since", "date range is empty or negative");
    int slot;
    cc_conn *c = ledger_reader_take(l, &slot);
    cc_rc rc = c->v->history(c, q, out, n_out, err);
    ledger_reader_give(l, slot);
    if (rc != CC_OK) return rc;
    *next_before = (*n_out == q->limit) ? out[*n_out - 1].id : 0;
    return CC_OK;
}

cc_rc cc_ledger_usage(cc_ledger *l, int64_t account_id, int64_t since_ms, int64_t until_ms, cc_usage_row *out,
                      int cap, int *n_out, cc_error *err) {
    if (account_id <= 0) return cc_fail(err, CC_ERR_INVALID, "account_id", "account_id must be a positive id");
    if (since_ms < 0 || until_ms <= since_ms || until_ms - since_ms > CC_USAGE_RANGE_MS_MAX)
        return cc_fail(err, CC_ERR_INVALID, "since", "the range must be non-empty and at most 366 days");
    if (cap < 1 || cap > CC_USAGE_ROWS_MAX) return cc_fail(err, CC_ERR_INVALID, "cap", "cap out of range");
    int slot;
    cc_conn *c = ledger_reader_take(l, &slot);
    cc_rc rc = c->v->usage_summary(c, account_id, since_ms, until_ms, out, cap, n_out, err);
    ledger_reader_give(l, slot);
    return rc;
}
