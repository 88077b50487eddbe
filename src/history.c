/*
** history.c — one row per run over the ledger's entries (see history.h).
*/
#include "history.h"

#include <stdlib.h>

#define BATCH_ENTRIES 64

static unsigned kinds_for(unsigned filter) {
    unsigned m = 0;
    if (filter & CC_HROWS_RUNS)
        m |= 1u << CC_KIND_HOLD | 1u << CC_KIND_SETTLE | 1u << CC_KIND_VOID | 1u << CC_KIND_EXPIRE;
    if (filter & CC_HROWS_PURCHASES) m |= 1u << CC_KIND_PURCHASE | 1u << CC_KIND_TEST;
    if (filter & CC_HROWS_GRANTS) m |= 1u << CC_KIND_GRANT;
    return m;
}

/* When the hold entry of run `hold_id` was written (0 if it cannot be read). */
static int64_t hold_started_ms(cc_ledger *l, int64_t account_id, int64_t hold_id) {
    cc_history_query hq = {.account_id = account_id, .before_id = hold_id + 1,
                           .kinds_mask = 1u << CC_KIND_HOLD, .limit = 1};
    cc_entry e;
    int n = 0;
    int64_t next;
    cc_error err;
    if (cc_ledger_history(l, &hq, &e, &n, &next, &err) != CC_OK || n != 1 || e.id != hold_id) return 0;
    return e.created_ms;
}

/* 1: e became a row in *row; 0: e adds no row (the hold of a resolved run); <0: error. */
static int row_from(cc_ledger *l, const cc_entry *e, cc_history_row *row, cc_error *err) {
    memset(row, 0, sizeof *row);
    row->entry = *e;
    row->reason = "";
    row->balance_after = e->balance_after;
    row->started_ms = row->ended_ms = e->created_ms;
    switch (e->kind) {
    case CC_KIND_GRANT:
    case CC_KIND_PURCHASE:
    case CC_KIND_TEST:
        row->kind = e->kind == CC_KIND_GRANT ? CC_HROW_GRANT : e->kind == CC_KIND_TEST ? CC_HROW_TEST : CC_HROW_PURCHASE;
        row->credits = e->delta;
        return 1;
    case CC_KIND_HOLD: {
        cc_hold h;
        cc_rc rc = cc_ledger_hold(l, e->id, &h, err);
        if (rc != CC_OK) return -1;
        if (h.state != CC_HOLD_OPEN) return 0;
        row->kind = CC_HROW_RUN;
        row->state = CC_HRUN_RUNNING;
        row->run_id = e->id;
        row->held = e->amount;
        row->ended_ms = 0;
        return 1;
    }
    case CC_KIND_SETTLE:
    case CC_KIND_VOID:
    case CC_KIND_EXPIRE:
        CC_ASSERT(e->held_delta <= 0 && e->delta <= 0 && e->uncollected >= 0);
        row->kind = CC_HROW_RUN;
        row->run_id = e->hold_id;
        row->held = -e->held_delta;
        row->reason = row->entry.note;
        row->started_ms = hold_started_ms(l, e->account_id, e->hold_id);
        if (!row->started_ms) row->started_ms = e->created_ms;
        if (e->kind == CC_KIND_SETTLE) {
            row->charged = -e->delta;
            row->uncollected = e->uncollected;
            row->billed = row->charged + row->uncollected;
            row->state = row->uncollected > 0 ? CC_HRUN_UNCOLLECTED : CC_HRUN_CHARGED;
        } else {
            row->state = CC_HRUN_RELEASED;
            if (e->kind == CC_KIND_EXPIRE && !row->entry.note[0]) row->reason = "the hold expired";
        }
        CC_ASSERT(row->charged <= row->held);
        return 1;
    default:
        return 0;
    }
}

cc_rc cc_history_rows(cc_ledger *l, const cc_history_rows_query *q, cc_history_row *out, int *n_out,
                      int64_t *next_before, cc_error *err) {
    *n_out = 0;
    *next_before = 0;
    if (q->account_id <= 0) return cc_fail(err, CC_ERR_INVALID, "account_id", "account_id must be a positive id");
    if (q->limit < 1 || q->limit > CC_HISTORY_ROWS_MAX)
        return cc_fail(err, CC_ERR_INVALID, "limit", "limit must be 1..%d", CC_HISTORY_ROWS_MAX);
    if (q->before_id < 0) return cc_fail(err, CC_ERR_INVALID, "cursor", "cursor must not be negative");
    if (q->filter & ~(unsigned)(CC_HROWS_RUNS | CC_HROWS_PURCHASES | CC_HROWS_GRANTS))
        return cc_fail(err, CC_ERR_INVALID, "filter", "filter is runs, purchases and/or grants");
    cc_entry *batch = malloc(sizeof *batch * BATCH_ENTRIES);
    if (!batch) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    cc_history_query hq = {.account_id = q->account_id, .before_id = q->before_id,
                           .kinds_mask = kinds_for(q->filter ? q->filter : ~0u), .limit = BATCH_ENTRIES};
    int rows = 0, scanned = 0, more = 1;
    cc_rc rc = CC_OK;
    while (more && rows < q->limit && scanned < CC_HISTORY_ROWS_SCAN_MAX) {
        int n = 0;
        int64_t next = 0;
        rc = cc_ledger_history(l, &hq, batch, &n, &next, err);
        if (rc != CC_OK) break;
        int i = 0;
        for (; i < n && rows < q->limit; i++) {
            int got = row_from(l, &batch[i], &out[rows], err);
            if (got < 0) { rc = err->rc; break; }
            rows += got;
            hq.before_id = batch[i].id;  /* consumed */
            scanned++;
        }
        if (rc != CC_OK) break;
        more = next != 0 || i < n;   /* entries left in the ledger, or in this batch */
    }
    free(batch);
    if (rc != CC_OK) return rc;
    *n_out = rows;
    *next_before = more ? hq.before_id : 0;
    return CC_OK;
}

const char *cc_hrow_kind_name(int kind) {
    switch (kind) {
    case CC_HROW_RUN: return "run";
    case CC_HROW_PURCHASE: return "purchase";
    case CC_HROW_TEST: return "test";
    case CC_HROW_GRANT: return "grant";
    default: return "";
    }
}

const char *cc_hrun_state_name(int state) {
    switch (state) {
    case CC_HRUN_RUNNING: return "running";
    case CC_HRUN_CHARGED: return "charged";
    case CC_HRUN_UNCOLLECTED: return "uncollected";
    case CC_HRUN_RELEASED: return "released";
    default: return "";
    }
}
