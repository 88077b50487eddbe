/* test_history.c — one row per run over the ledger (history.h). */
#include "ctest.h"
#include "history.h"


#define C(n) ((int64_t)(n) * CC_MICRO)

static cc_ledger *fresh(void) { return ct_ledger(2, NULL, 0); }

static int64_t op1(cc_ledger *l, cc_op *op) {
    cc_result r;
    CHECK(cc_ledger_execute1(l, op, &r) == CC_OK);
    return r.hold_id ? r.hold_id : r.account_id;
}

static int64_t hold(cc_ledger *l, const char *key, int64_t a, int64_t amount, const char *prompt) {
    cc_op op;
    cc_op_init(&op, CC_OP_HOLD);
    op.key = key; op.account_id = a; op.amount = amount; op.ttl_ms = 60000;
    op.ctx.prompt_id = prompt; op.ctx.node_id = "4"; op.ctx.node_class = "OpenAIDalle3"; op.ctx.model = "dall-e-3";
    return op1(l, &op);
}

static void settle(cc_ledger *l, const char *key, int64_t hold_id, int64_t cost, int64_t charge_max, const char *note) {
    cc_op op;
    cc_op_init(&op, CC_OP_SETTLE);
    op.key = key; op.hold_id = hold_id; op.amount = cost; op.charge_max = charge_max; op.note = note;
    op1(l, &op);
}

static void rows_per_run(void) {
    cc_ledger *l = fresh();
    cc_op op;
    int64_t a = ct_account(l, "h@example.com");
    cc_op_init(&op, CC_OP_GRANT);
    op.key = "g1"; op.account_id = a; op.amount = C(100); op.note = "welcome";
    op1(l, &op);
    cc_op_init(&op, CC_OP_PURCHASE);
    op.key = "cs_1"; op.account_id = a; op.amount = C(211); op.currency = "usd"; op.amount_minor = 100;
    op.method = "card"; op.external_ref = "cs_1";
    op1(l, &op);
    int64_t charged = hold(l, "h1", a, C(8), "p1");
    settle(l, "settle:1", charged, C(5), -1, "");
    int64_t released = hold(l, "h2", a, C(8), "p2");
    cc_op_init(&op, CC_OP_VOID);
    op.key = "void:2"; op.hold_id = released; op.note = "interrupted before the provider started the task";
    op1(l, &op);
    int64_t capped = hold(l, "h3", a, C(8), "p3");
    settle(l, "settle:3", capped, C(10), -1, "interrupted after the provider started the task");
    int64_t waived = hold(l, "h4", a, C(8), "p4");
    settle(l, "settle:4", waived, C(3), 0, "interrupted after the provider started the task; not charged");
    int64_t running = hold(l, "h5", a, C(8), "p5");

    cc_history_rows_query q = {.account_id = a, .limit = 50};
    cc_history_row rows[50];
    int n = 0;
    int64_t next = -1;
    cc_error e;
    CHECK(cc_history_rows(l, &q, rows, &n, &next, &e) == CC_OK);
    CHECK_EQ_I64(n, 7);             /* 5 runs, 1 purchase, 1 grant: never a hold and its settle apart */
    CHECK_EQ_I64(next, 0);
    if (n == 7) {
        CHECK(rows[0].kind == CC_HROW_RUN && rows[0].state == CC_HRUN_RUNNING);
        CHECK_EQ_I64(rows[0].run_id, running);
        CHECK_EQ_I64(rows[0].held, C(8));
        CHECK_EQ_I64(rows[0].ended_ms, 0);
        CHECK(rows[1].state == CC_HRUN_UNCOLLECTED);           /* waived: billed 3, charged 0 */
        CHECK_EQ_I64(rows[1].run_id, waived);
        CHECK_EQ_I64(rows[1].charged, 0);
        CHECK_EQ_I64(rows[1].uncollected, C(3));
        CHECK(rows[2].state == CC_HRUN_UNCOLLECTED);           /* billed 10 on a hold of 8 */
        CHECK_EQ_I64(rows[2].charged, C(8));
        CHECK_EQ_I64(rows[2].billed, C(10));
        CHECK_STR(rows[2].reason, "interrupted after the provider started the task");
        CHECK(rows[3].state == CC_HRUN_RELEASED);
        CHECK_EQ_I64(rows[3].charged, 0);
        CHECK_EQ_I64(rows[3].held, C(8));
        CHECK_STR(rows[3].reason, "interrupted before the provider started the task");
        CHECK(rows[4].state == CC_HRUN_CHARGED);
        CHECK_EQ_I64(rows[4].run_id, charged);
        CHECK_EQ_I64(rows[4].charged, C(5));
        CHECK_STR(rows[4].entry.node_class, "OpenAIDalle3");
        CHECK_STR(rows[4].entry.prompt_id, "p1");
        CHECK(rows[4].started_ms > 0 && rows[4].started_ms <= rows[4].ended_ms);
        CHECK(rows[5].kind == CC_HROW_PURCHASE);
        CHECK_EQ_I64(rows[5].credits, C(211));
        CHECK(rows[6].kind == CC_HROW_GRANT);
        CHECK_EQ_I64(rows[6].credits, C(100));
        CHECK_EQ_I64(rows[0].balance_after, C(100 + 211 - 5 - 8));
    }
    /* Pages of 2 rows: the same 7 rows, in order, nothing twice. */
    int64_t seen[8];
    int total = 0;
    q.limit = 2;
    q.before_id = 0;
    do {
        CHECK(cc_history_rows(l, &q, rows, &n, &next, &e) == CC_OK);
        for (int i = 0; i < n && total < 8; i++) seen[total++] = rows[i].entry.id;
        q.before_id = next;
    } while (next && total < 8);
    CHECK_EQ_I64(total, 7);
    for (int i = 1; i < total; i++) CHECK(seen[i] < seen[i - 1]);
    /* Filters. */
    q.before_id = 0; q.limit = 50; q.filter = CC_HROWS_RUNS;
    CHECK(cc_history_rows(l, &q, rows, &n, &next, &e) == CC_OK);
    CHECK_EQ_I64(n, 5);
    q.filter = CC_HROWS_PURCHASES | CC_HROWS_GRANTS;
    CHECK(cc_history_rows(l, &q, rows, &n, &next, &e) == CC_OK);
    CHECK(n == 2 && rows[0].kind == CC_HROW_PURCHASE && rows[1].kind == CC_HROW_GRANT);
    q.filter = CC_HROWS_GRANTS;
    CHECK(cc_history_rows(l, &q, rows, &n, &next, &e) == CC_OK);
    CHECK(n == 1 && rows[0].kind == CC_HROW_GRANT && next == 0);
    /* The running run resolves: its row moves to the top as charged. */
    settle(l, "settle:5", running, C(8), -1, "");
    q.filter = 0; q.limit = 1;
    CHECK(cc_history_rows(l, &q, rows, &n, &next, &e) == CC_OK);
    CHECK(n == 1 && rows[0].run_id == running && rows[0].state == CC_HRUN_CHARGED && next != 0);
    /* Bad input: clear errors, nothing read. */
    q.limit = 0;
    CHECK(cc_history_rows(l, &q, rows, &n, &next, &e) == CC_ERR_INVALID);
    CHECK_STR(e.field, "limit");
    q.limit = 5; q.filter = 8;
    CHECK(cc_history_rows(l, &q, rows, &n, &next, &e) == CC_ERR_INVALID);
    CHECK_STR(e.field, "filter");
    q.filter = 0; q.account_id = 0;
    CHECK(cc_history_rows(l, &q, rows, &n, &next, &e) == CC_ERR_INVALID);
    q.account_id = a; q.before_id = -1;
    CHECK(cc_history_rows(l, &q, rows, &n, &next, &e) == CC_ERR_INVALID);
    CHECK_STR(e.field, "cursor");
    cc_ledger_close(l);
}

/* More entries than one read batch (64): holds and settles folded across batches, each run once. */
static void scan_bound(void) {
    cc_ledger *l = fresh();
    cc_op op;
    int64_t a = ct_account(l, "s@example.com");
    cc_op_init(&op, CC_OP_GRANT);
    op.key = "g"; op.account_id = a; op.amount = C(10000); op.note = "x";
    op1(l, &op);
    for (int i = 0; i < 40; i++) {
        char k[32], s[32];
        snprintf(k, sizeof k, "h%d", i);
        snprintf(s, sizeof s, "s%d", i);
        settle(l, s, hold(l, k, a, C(2), "p"), C(1), -1, "");
    }
    cc_history_rows_query q = {.account_id = a, .limit = 200};
    static cc_history_row rows[200];
    int n;
    int64_t next;
    cc_error e;
    CHECK(cc_history_rows(l, &q, rows, &n, &next, &e) == CC_OK);
    CHECK_EQ_I64(n, 41);
    CHECK_EQ_I64(next, 0);
    for (int i = 0; i < 40; i++) CHECK(rows[i].state == CC_HRUN_CHARGED && rows[i].charged == C(1));
    cc_ledger_close(l);
}

void suite_history(void) {
    RUN(rows_per_run);
    RUN(scan_bound);
}
