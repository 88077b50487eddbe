/* test_ledger.c — the ledger's rules, idempotency, concurrency and verify. */
#include "ctest.h"
#include "ledger.h"
#include "attention.h"
#include "i64map.h"
#include "pg_helper.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#define C(n) ((int64_t)(n) * CC_MICRO)

static char path_last[CT_PATH_BYTES_MAX]; /* the file of the newest fresh() ledger */

static int on_pg; /* 1 while the backend-neutral tests run on PostgreSQL */

static cc_ledger *fresh(void) {
    if (!on_pg) return ct_ledger(4, path_last, sizeof path_last);
    char uri[200];
    cc_store *s;
    cc_ledger *l = NULL;
    cc_error e;
    CHECK(ct_pg_new_db(uri, sizeof uri) == 0);
    CHECK(cc_store_pg_open(uri, 10000, &s, &e) == CC_OK);
    CHECK(cc_ledger_open(s, 4, &l, &e) == CC_OK);
    if (!l) fprintf(stderr, "pg: %s\n", e.message);
    return l;
}

static int64_t mkacct(cc_ledger *l, const char *email) { return ct_account(l, email); }

static cc_rc grant(cc_ledger *l, const char *key, int64_t acct, int64_t amount, cc_result *r) {
    cc_op op;
    cc_op_init(&op, CC_OP_GRANT);
    op.key = key;
    op.account_id = acct;
    op.amount = amount;
    op.note = "promo";
    return cc_ledger_execute1(l, &op, r);
}

static cc_rc hold(cc_ledger *l, const char *key, int64_t acct, int64_t amount, cc_result *r) {
    cc_op op;
    cc_op_init(&op, CC_OP_HOLD);
    op.key = key;
    op.account_id = acct;
    op.amount = amount;
    op.ttl_ms = 60000;
    op.ctx.prompt_id = "p1";
    op.ctx.node_id = "7";
    op.ctx.node_class = "OpenAIDalle3";
    op.ctx.model = "dall-e-3";
    return cc_ledger_execute1(l, &op, r);
}

static cc_rc settle(cc_ledger *l, const char *key, int64_t hold_id, int64_t cost, cc_result *r) {
    cc_op op;
    cc_op_init(&op, CC_OP_SETTLE);
    op.key = key;
    op.hold_id = hold_id;
    op.amount = cost;
    op.usage.tokens_in = 10;
    op.usage.tokens_out = 20;
    return cc_ledger_execute1(l, &op, r);
}

static cc_rc voidh(cc_ledger *l, const char *key, int64_t hold_id, cc_result *r) {
    cc_op op;
    cc_op_init(&op, CC_OP_VOID);
    op.key = key;
    op.hold_id = hold_id;
    op.note = "cancelled";
    return cc_ledger_execute1(l, &op, r);
}

static int verify_quiet;

static int verify_ok(cc_ledger *l) {
    char *probs[16];
    int n = -1;
    cc_verify_stats st;
    cc_error e;
    if (cc_ledger_verify(l, probs, 16, &n, &st, &e) != CC_OK) return 0;
    for (int i = 0; i < n; i++) {
        if (!verify_quiet) fprintf(stderr, "  verify: %s\n", probs[i]);
        free(probs[i]);
    }
    return n == 0;
}

static void accounts(void) {
    cc_ledger *l = fresh();
    int64_t a = mkacct(l, "Ann@Example.com");
    CHECK(a > 0);
    cc_account_new n = {.email = "ann@example.COM", .role = -1}; /* case-insensitive unique */
    int64_t id = 0;
    cc_error e;
    CHECK(cc_ledger_account_create(l, &n, &id, &e) == CC_ERR_EXISTS);
    CHECK_STR(e.field, "email");
    n.email = "not-an-email";
    CHECK(cc_ledger_account_create(l, &n, &id, &e) == CC_ERR_INVALID);
    n.email = "a@b";
    CHECK(cc_ledger_account_create(l, &n, &id, &e) == CC_ERR_INVALID);
    n.email = "role@example.com";
    n.role = 7;
    CHECK(cc_ledger_account_create(l, &n, &id, &e) == CC_ERR_INVALID);
    CHECK_STR(e.field, "role");
    cc_account acc;
    CHECK(cc_ledger_account_by_email(l, "ANN@example.com", &acc, &e) == CC_OK);
    CHECK_EQ_I64(acc.id, a);
    CHECK(acc.active == 1 && acc.role == CC_ROLE_USER);
    CHECK(cc_ledger_account(l, 999, &acc, &e) == CC_ERR_NOT_FOUND);
    cc_account_change ch;
    cc_account_change_init(&ch, a);
    ch.active = 0;
    ch.role = CC_ROLE_ADMIN;
    CHECK(cc_ledger_account_update(l, &ch, &e) == CC_OK);
    CHECK(cc_ledger_account(l, a, &acc, &e) == CC_OK);
    CHECK(acc.active == 0 && acc.role == CC_ROLE_ADMIN);
    CHECK_STR(acc.display_name, "Test");
    cc_ledger_close(l);
}

static void idempotency(void) {
    cc_ledger *l = fresh();
    int64_t a = mkacct(l, "b@example.com");
    cc_result r, r2;
    CHECK(grant(l, "g1", a, C(10), &r) == CC_OK);
    CHECK(!r.replayed);
    CHECK_EQ_I64(r.balance_after, C(10));
    CHECK(grant(l, "g1", a, C(10), &r2) == CC_OK);
    CHECK(r2.replayed);
    CHECK_EQ_I64(r2.entry_id, r.entry_id);
    CHECK_EQ_I64(r2.balance_after, C(10));
    /* Same key, different amount: names the field, changes nothing. */
    CHECK(grant(l, "g1", a, C(11), &r2) == CC_ERR_CONFLICT);
    CHECK_STR(r2.err.field, "amount");
    /* Same key for a different kind of operation. */
    CHECK(hold(l, "g1", a, C(1), &r2) == CC_ERR_CONFLICT);
    CHECK_STR(r2.err.field, "kind");
    cc_account acc;
    cc_error e;
    CHECK(cc_ledger_account(l, a, &acc, &e) == CC_OK);
    CHECK_EQ_I64(acc.balance, C(10));
    CHECK_EQ_I64(acc.granted_total, C(10));
    /* A hold replayed with other context fields conflicts on that field. */
    CHECK(hold(l, "h1", a, C(2), &r) == CC_OK);
    cc_op op;
    cc_op_init(&op, CC_OP_HOLD);
    op.key = "h1"; op.account_id = a; op.amount = C(2); op.ttl_ms = 60000;
    op.ctx.prompt_id = "p1"; op.ctx.node_id = "8"; op.ctx.node_class = "OpenAIDalle3"; op.ctx.model = "dall-e-3";
    CHECK(cc_ledger_execute1(l, &op, &r2) == CC_ERR_CONFLICT);
    CHECK_STR(r2.err.field, "node_id");
    /* Settle replay returns the original, even after the hold resolved. */
    CHECK(settle(l, "s1", r.hold_id, C(1), &r2) == CC_OK);
    cc_result r3;
    CHECK(settle(l, "s1", r.hold_id, C(1), &r3) == CC_OK);
    CHECK(r3.replayed && r3.entry_id == r2.entry_id && r3.balance_after == C(9));
    CHECK(settle(l, "s1", r.hold_id, C(2), &r3) == CC_ERR_CONFLICT);
    CHECK_STR(r3.err.field, "amount");
    /* Purchase: reference mismatch named. */
    cc_op_init(&op, CC_OP_PURCHASE);
    op.key = "cs_1"; op.account_id = a; op.amount = C(211); op.currency = "usd";
    op.amount_minor = 100; op.method = "card"; op.external_ref = "cs_1";
    CHECK(cc_ledger_execute1(l, &op, &r) == CC_OK);
    CHECK(cc_ledger_execute1(l, &op, &r2) == CC_OK && r2.replayed);
    op.method = "alipay";
    CHECK(cc_ledger_execute1(l, &op, &r2) == CC_ERR_CONFLICT);
    CHECK_STR(r2.err.field, "method");
    CHECK(cc_ledger_account(l, a, &acc, &e) == CC_OK);
    CHECK_EQ_I64(acc.paid_total, C(211));
    CHECK_EQ_I64(acc.balance, C(9) + C(211));
    /* A failed op records nothing: the same key may succeed later. */
    CHECK(hold(l, "big", a, C(100000), &r) == CC_ERR_INSUFFICIENT);
    CHECK(hold(l, "big", a, C(5), &r) == CC_OK && !r.replayed);
    CHECK(verify_ok(l));
    cc_ledger_close(l);
}

static void holds(void) {
    cc_ledger *l = fresh();
    int64_t a = mkacct(l, "c@example.com");
    cc_result r, h1, h2;
    cc_error e;
    cc_account acc;
    /* Balance 0: no hold, whatever the amount. */
    CHECK(hold(l, "h0", a, 1, &r) == CC_ERR_INSUFFICIENT);
    CHECK(grant(l, "g", a, C(10), &r) == CC_OK);
    CHECK(hold(l, "h1", a, C(6), &h1) == CC_OK);
    CHECK_EQ_I64(h1.held_after, C(6));
    CHECK_EQ_I64(h1.balance_after, C(10));
    /* Available is 4: a hold of 5 is refused, 4 fits. */
    CHECK(hold(l, "h2", a, C(5), &r) == CC_ERR_INSUFFICIENT);
    CHECK(strstr(r.err.message, "needs 5.000000, available 4.000000") != NULL);
    CHECK(hold(l, "h2", a, C(4), &h2) == CC_OK);
    /* Settle below the hold returns the rest. */
    CHECK(settle(l, "s1", h1.hold_id, C(2), &r) == CC_OK);
    CHECK_EQ_I64(r.delta, -C(2));
    CHECK_EQ_I64(r.balance_after, C(8));
    CHECK_EQ_I64(r.held_after, C(4));
    /* A hold resolves at most once. */
    CHECK(settle(l, "s1b", h1.hold_id, C(1), &r) == CC_ERR_STATE);
    CHECK(voidh(l, "v1", h1.hold_id, &r) == CC_ERR_STATE);
    CHECK(strstr(r.err.message, "settled") != NULL);
    /* Void releases everything. */
    CHECK(voidh(l, "v2", h2.hold_id, &r) == CC_OK);
    CHECK_EQ_I64(r.delta, 0);
    CHECK_EQ_I64(r.held_after, 0);
    CHECK_EQ_I64(r.balance_after, C(8));
    CHECK(settle(l, "s2", h2.hold_id, C(1), &r) == CC_ERR_STATE);
    /* Unknown hold. */
    CHECK(settle(l, "s3", 424242, C(1), &r) == CC_ERR_NOT_FOUND);
    /* Settle above the hold: "up to" means up to. The charge stops at the
    ** hold even when unreserved credits remain; the rest is uncollected. */
    CHECK(hold(l, "h3", a, C(3), &h1) == CC_OK);   /* held 3 of 8 */
    CHECK(hold(l, "h4", a, C(4), &h2) == CC_OK);   /* held 7 of 8, available 1 */
    CHECK(settle(l, "s4", h1.hold_id, C(10), &r) == CC_OK);
    CHECK_EQ_I64(r.delta, -C(3));
    CHECK_EQ_I64(r.uncollected, C(7));
    CHECK_EQ_I64(r.balance_after, C(5));
    CHECK_EQ_I64(r.held_after, C(4));
    CHECK(settle(l, "s5", h2.hold_id, C(4) + 1, &r) == CC_OK);
    CHECK_EQ_I64(r.balance_after, C(1));
    CHECK_EQ_I64(r.uncollected, 1);
    CHECK(cc_ledger_account(l, a, &acc, &e) == CC_OK);
    CHECK_EQ_I64(acc.balance, C(1));
    CHECK_EQ_I64(acc.spent_total, C(9));
    CHECK_EQ_I64(acc.uncollected_total, C(7) + 1);
    /* charge_max waives (part of) a cost; the waived part is uncollected. */
    CHECK(hold(l, "h4b", a, C(1), &h2) == CC_OK);
    {
        cc_op op;
        cc_op_init(&op, CC_OP_SETTLE);
        op.key = "s4b";
        op.hold_id = h2.hold_id;
        op.amount = C(1);
        op.charge_max = 0;
        op.note = "interrupted; not charged by the operator's choice";
        CHECK(cc_ledger_execute1(l, &op, &r) == CC_OK);
        CHECK_EQ_I64(r.delta, 0);
        CHECK_EQ_I64(r.uncollected, C(1));
        cc_entry en;
        CHECK(cc_ledger_entry(l, "s4b", &en, &e) == CC_OK);
        CHECK_STR(en.note, "interrupted; not charged by the operator's choice");
    }
    CHECK(settle(l, "s4c", h1.hold_id, 1, &r) == CC_ERR_STATE);
    /* Spend the rest: balance 0, the next hold is refused. */
    CHECK(hold(l, "h4c", a, C(1), &h2) == CC_OK);
    CHECK(settle(l, "s4d", h2.hold_id, C(1), &r) == CC_OK);
    CHECK_EQ_I64(r.balance_after, 0);
    /* Balance is 0: the next hold is refused. */
    CHECK(hold(l, "h5", a, 1, &r) == CC_ERR_INSUFFICIENT);
    /* Settle with cost 0 is a free run. */
    CHECK(grant(l, "g2", a, C(1), &r) == CC_OK);
    CHECK(hold(l, "h6", a, C(1), &h1) == CC_OK);
    CHECK(settle(l, "s6", h1.hold_id, 0, &r) == CC_OK);
    CHECK_EQ_I64(r.balance_after, C(1));
    /* Disabled accounts cannot hold. */
    cc_account_change ch;
    cc_account_change_init(&ch, a);
    ch.active = 0;
    CHECK(cc_ledger_account_update(l, &ch, &e) == CC_OK);
    CHECK(hold(l, "h7", a, 1, &r) == CC_ERR_STATE);
    CHECK(verify_ok(l));
    cc_ledger_close(l);
}

static void expiry(void) {
    cc_ledger *l = fresh();
    int64_t a = mkacct(l, "d@example.com");
    cc_result r, h1, h2;
    CHECK(grant(l, "g", a, C(10), &r) == CC_OK);
    CHECK(hold(l, "h1", a, C(2), &h1) == CC_OK);
    CHECK(hold(l, "h2", a, C(3), &h2) == CC_OK);
    cc_op op;
    cc_op_init(&op, CC_OP_EXPIRE);
    op.now_ms = cc_now_ms();        /* nothing due yet (ttl 60 s) */
    CHECK(cc_ledger_execute1(l, &op, &r) == CC_OK);
    CHECK_EQ_I64(r.count, 0);
    op.now_ms = cc_now_ms() + 61000;
    op.limit = 1;                   /* limits are honoured */
    CHECK(cc_ledger_execute1(l, &op, &r) == CC_OK);
    CHECK_EQ_I64(r.count, 1);
    op.limit = 0;
    CHECK(cc_ledger_execute1(l, &op, &r) == CC_OK);
    CHECK_EQ_I64(r.count, 1);
    CHECK(cc_ledger_execute1(l, &op, &r) == CC_OK);
    CHECK_EQ_I64(r.count, 0);
    CHECK(settle(l, "late", h1.hold_id, C(1), &r) == CC_ERR_STATE);
    CHECK(strstr(r.err.message, "expired") != NULL);
    cc_hold h;
    cc_error e;
    CHECK(cc_ledger_hold(l, h2.hold_id, &h, &e) == CC_OK);
    CHECK(h.state == CC_HOLD_EXPIRED);
    cc_account acc;
    CHECK(cc_ledger_account(l, a, &acc, &e) == CC_OK);
    CHECK_EQ_I64(acc.held, 0);
    CHECK_EQ_I64(acc.balance, C(10));
    /* Caller keys may not impersonate expiry entries. */
    CHECK(voidh(l, "expire:1", h1.hold_id, &r) == CC_ERR_INVALID);
    CHECK(verify_ok(l));
    cc_ledger_close(l);
}

static void bad_input(void) {
    cc_ledger *l = fresh();
    int64_t a = mkacct(l, "e@example.com");
    cc_result r;
    CHECK(grant(l, "n", a, -5, &r) == CC_ERR_INVALID); CHECK_STR(r.err.field, "amount");
    CHECK(grant(l, "z", a, 0, &r) == CC_ERR_INVALID);
    CHECK(grant(l, "m", a, INT64_MAX, &r) == CC_ERR_INVALID);
    CHECK(grant(l, "m2", a, CC_AMOUNT_MAX, &r) == CC_OK);
    /* Many max grants hit the balance limit instead of overflowing. */
    int limited = 0;
    for (int i = 0; i < 1100 && !limited; i++) {
        char k[32];
        snprintf(k, sizeof k, "mx%d", i);
        cc_rc rc = grant(l, k, a, CC_AMOUNT_MAX, &r);
        if (rc == CC_ERR_LIMIT) limited = 1; else CHECK(rc == CC_OK);
    }
    CHECK(limited);
    CHECK(grant(l, "u", 9999, C(1), &r) == CC_ERR_NOT_FOUND);
    CHECK(grant(l, "", a, C(1), &r) == CC_ERR_INVALID); CHECK_STR(r.err.field, "key");
    CHECK(grant(l, NULL, a, C(1), &r) == CC_ERR_INVALID);
    CHECK(grant(l, "has space", a, C(1), &r) == CC_ERR_INVALID);
    char longkey[300];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = 0;
    CHECK(grant(l, longkey, a, C(1), &r) == CC_ERR_INVALID);
    CHECK(grant(l, "acct0", 0, C(1), &r) == CC_ERR_INVALID); CHECK_STR(r.err.field, "account_id");
    CHECK(hold(l, "hneg", a, -1, &r) == CC_ERR_INVALID);
    CHECK(settle(l, "sneg", 1, -1, &r) == CC_ERR_INVALID);
    cc_op op;
    cc_op_init(&op, CC_OP_HOLD);
    op.key = "ttl"; op.account_id = a; op.amount = 1; op.ttl_ms = 0;
    CHECK(cc_ledger_execute1(l, &op, &r) == CC_ERR_INVALID); CHECK_STR(r.err.field, "ttl_ms");
    cc_op_init(&op, CC_OP_PURCHASE);
    op.key = "p"; op.account_id = a; op.amount = C(1); op.currency = "USD"; op.amount_minor = 1;
    op.method = "card"; op.external_ref = "x";
    CHECK(cc_ledger_execute1(l, &op, &r) == CC_ERR_INVALID); CHECK_STR(r.err.field, "currency");
    op.kind = (cc_op_kind)99;
    CHECK(cc_ledger_execute1(l, &op, &r) == CC_ERR_INVALID); CHECK_STR(r.err.field, "kind");
    cc_error e;
    CHECK(cc_ledger_execute(l, &op, 0, &r, &e) == CC_ERR_INVALID);
    cc_history_query q = {.account_id = a, .limit = 0};
    cc_entry ent[2];
    int n;
    int64_t next;
    CHECK(cc_ledger_history(l, &q, ent, &n, &next, &e) == CC_ERR_INVALID);
    q.limit = 2; q.kinds_mask = 1u << 9;
    CHECK(cc_ledger_history(l, &q, ent, &n, &next, &e) == CC_ERR_INVALID);
    CHECK(verify_ok(l));
    cc_ledger_close(l);
}

static void history(void) {
    cc_ledger *l = fresh();
    int64_t a = mkacct(l, "f@example.com"), b = mkacct(l, "g@example.com");
    cc_result r, h;
    CHECK(grant(l, "g", a, C(100), &r) == CC_OK);
    CHECK(grant(l, "gb", b, C(5), &r) == CC_OK);
    for (int i = 0; i < 10; i++) {
        char k[32], s[32];
        snprintf(k, sizeof k, "h%d", i);
        snprintf(s, sizeof s, "s%d", i);
        CHECK(hold(l, k, a, C(2), &h) == CC_OK);
        CHECK(settle(l, s, h.hold_id, C(1), &r) == CC_OK);
    }
    cc_history_query q = {.account_id = a, .limit = 7};
    cc_entry ent[7];
    int n, total = 0;
    int64_t next, prev = INT64_MAX;
    cc_error e;
    do {
        CHECK(cc_ledger_history(l, &q, ent, &n, &next, &e) == CC_OK);
        for (int i = 0; i < n; i++) {
            CHECK(ent[i].id < prev);     /* newest first, no repeats */
            CHECK(ent[i].account_id == a);
            prev = ent[i].id;
        }
        total += n;
        q.before_id = next;
    } while (next);
    CHECK_EQ_I64(total, 21);
    /* The newest entry is the last settle: balance after 90, model from hold. */
    q.before_id = 0; q.limit = 1;
    CHECK(cc_ledger_history(l, &q, ent, &n, &next, &e) == CC_OK);
    CHECK(n == 1 && ent[0].kind == CC_KIND_SETTLE);
    CHECK_EQ_I64(ent[0].balance_after, C(90));
    CHECK_STR(ent[0].model, "dall-e-3");
    CHECK_STR(ent[0].node_class, "OpenAIDalle3");
    CHECK_EQ_I64(ent[0].tokens_out, 20);
    q.kinds_mask = 1u << CC_KIND_GRANT; q.limit = 5;
    CHECK(cc_ledger_history(l, &q, ent, &n, &next, &e) == CC_OK);
    CHECK(n == 1 && ent[0].kind == CC_KIND_GRANT && next == 0);
    q.kinds_mask = 0; q.since_ms = cc_now_ms() + 100000;
    CHECK(cc_ledger_history(l, &q, ent, &n, &next, &e) == CC_OK);
    CHECK(n == 0);
    cc_ledger_close(l);
}

/* 1,000 holds of 1 credit race on a balance of exactly 50 from 8 threads. */
#define RACE_THREADS 8
#define RACE_HOLDS 1000
typedef struct race { cc_ledger *l; int64_t acct; int tid; int ok; int64_t ids[RACE_HOLDS]; } race;

static void *race_main(void *p) {
    race *r = p;
    for (int i = r->tid; i < RACE_HOLDS; i += RACE_THREADS) {
        char k[32];
        snprintf(k, sizeof k, "race-%d", i);
        cc_result res;
        cc_rc rc = hold(r->l, k, r->acct, C(1), &res);
        if (rc == CC_OK) r->ids[r->ok++] = res.hold_id;
        else if (rc != CC_ERR_INSUFFICIENT) fprintf(stderr, "race: %s\n", res.err.message);
    }
    return NULL;
}

static void race_exact(void) {
    cc_ledger *l = fresh();
    int64_t a = mkacct(l, "race@example.com");
    cc_result r;
    CHECK(grant(l, "g", a, C(50), &r) == CC_OK);
    static race rs[RACE_THREADS];
    pthread_t th[RACE_THREADS];
    for (int t = 0; t < RACE_THREADS; t++) {
        memset(&rs[t], 0, sizeof rs[t]);
        rs[t].l = l; rs[t].acct = a; rs[t].tid = t;
        pthread_create(&th[t], NULL, race_main, &rs[t]);
    }
    int ok = 0;
    for (int t = 0; t < RACE_THREADS; t++) { pthread_join(th[t], NULL); ok += rs[t].ok; }
    CHECK_EQ_I64(ok, 50);
    for (int t = 0; t < RACE_THREADS; t++)
        for (int i = 0; i < rs[t].ok; i++) {
            char k[40];
            snprintf(k, sizeof k, "settle-%d-%d", t, i);
            CHECK(settle(l, k, rs[t].ids[i], C(1), &r) == CC_OK);
        }
    cc_account acc;
    cc_error e;
    CHECK(cc_ledger_account(l, a, &acc, &e) == CC_OK);
    CHECK_EQ_I64(acc.balance, 0);
    CHECK_EQ_I64(acc.held, 0);
    int64_t ops, commits;
    cc_ledger_counters(l, &ops, &commits);
    CHECK(commits <= ops);
    CHECK(verify_ok(l));
    cc_ledger_close(l);
}

static void batch_semantics(void) {
    cc_ledger *l = fresh();
    int64_t a = mkacct(l, "batch@example.com");
    cc_op ops[4];
    cc_result res[4];
    cc_error e;
    cc_op_init(&ops[0], CC_OP_GRANT); ops[0].key = "bg"; ops[0].account_id = a; ops[0].amount = C(3);
    cc_op_init(&ops[1], CC_OP_HOLD); ops[1].key = "bh"; ops[1].account_id = a; ops[1].amount = C(5); ops[1].ttl_ms = 1000;
    cc_op_init(&ops[2], CC_OP_HOLD); ops[2].key = "bh2"; ops[2].account_id = a; ops[2].amount = C(3); ops[2].ttl_ms = 1000;
    cc_op_init(&ops[3], CC_OP_GRANT); ops[3].key = "bg"; ops[3].account_id = a; ops[3].amount = C(3);
    CHECK(cc_ledger_execute(l, ops, 4, res, &e) == CC_OK);
    CHECK(res[0].rc == CC_OK && !res[0].replayed);
    CHECK(res[1].rc == CC_ERR_INSUFFICIENT);     /* sees the grant before it: 3 < 5 */
    CHECK(res[2].rc == CC_OK);
    CHECK(res[3].rc == CC_OK && res[3].replayed);  /* same key in one batch */
    CHECK(verify_ok(l));
    cc_ledger_close(l);
}

/* One commit that places, extends, settles and voids holds, repeats keys and
** is refused once: each operation sees every one before it in the same commit
** (PostgreSQL buffers a commit's rows and sends them together, store_pg.c:
** the order must hold all the same). Entry ids are max + 1 on both backends,
** so the holds this batch places can be named in it. */
static void batch_one_commit(void) {
    cc_ledger *l = fresh();
    int64_t a = mkacct(l, "one-commit@example.com");
    cc_result r, old;
    cc_error e;
    CHECK(grant(l, "oc-g", a, C(20), &r) == CC_OK);
    CHECK(hold(l, "oc-old", a, C(4), &old) == CC_OK); /* placed in an earlier commit */
    int64_t n = old.entry_id + 1;                      /* the first id of the next commit */
    enum { OPS = 11 };
    cc_op ops[OPS];
    cc_result res[OPS];
    for (int i = 0; i < OPS; i++) cc_op_init(&ops[i], CC_OP_HOLD);
    ops[0].key = "oc-h1"; ops[0].account_id = a; ops[0].amount = C(5); ops[0].ttl_ms = 1000;       /* id n */
    cc_op_init(&ops[1], CC_OP_HOLD_EXTEND); ops[1].hold_id = n; ops[1].ttl_ms = 3600000;
    cc_op_init(&ops[2], CC_OP_SETTLE); ops[2].key = "oc-s1"; ops[2].hold_id = n; ops[2].amount = C(2); /* n + 1 */
    ops[2].usage.tokens_in = 10; ops[2].usage.tokens_out = 20; /* as settle() sends them */
    ops[3] = ops[2];                                                                                /* replay */
    cc_op_init(&ops[4], CC_OP_SETTLE); ops[4].key = "oc-s-old"; ops[4].hold_id = old.hold_id; ops[4].amount = C(1); /* n + 2 */
    ops[5].key = "oc-h2"; ops[5].account_id = a; ops[5].amount = C(3); ops[5].ttl_ms = 1000;       /* n + 3 */
    cc_op_init(&ops[6], CC_OP_VOID); ops[6].key = "oc-v2"; ops[6].hold_id = n + 3; ops[6].note = "cancelled";  /* n + 4 */
    ops[7].key = "oc-old"; ops[7].account_id = a; ops[7].amount = C(4); ops[7].ttl_ms = 60000;      /* replay */
    ops[7].ctx.prompt_id = "p1"; ops[7].ctx.node_id = "7"; ops[7].ctx.node_class = "OpenAIDalle3";
    ops[7].ctx.model = "dall-e-3";
    ops[8].key = "oc-h3"; ops[8].account_id = a; ops[8].amount = C(100); ops[8].ttl_ms = 1000;     /* refused */
    ops[9].key = "oc-h4"; ops[9].account_id = a; ops[9].amount = C(1); ops[9].ttl_ms = 1000;       /* n + 5 */
    cc_op_init(&ops[10], CC_OP_HOLD_EXTEND); ops[10].hold_id = n + 5; ops[10].ttl_ms = 3600000;
    int64_t t0 = cc_now_ms();
    CHECK(cc_ledger_execute(l, ops, OPS, res, &e) == CC_OK);
    CHECK(res[0].rc == CC_OK && res[0].hold_id == n);
    CHECK(res[1].rc == CC_OK && res[1].expires_ms >= t0 + 3600000);
    CHECK(res[2].rc == CC_OK && !res[2].replayed && res[2].entry_id == n + 1 && res[2].delta == -C(2));
    CHECK(res[3].rc == CC_OK && res[3].replayed && res[3].entry_id == n + 1);
    CHECK(res[4].rc == CC_OK && res[4].delta == -C(1));
    CHECK(res[5].rc == CC_OK && res[5].hold_id == n + 3);
    CHECK(res[6].rc == CC_OK && res[6].hold_id == n + 3 && res[6].delta == 0);
    CHECK(res[7].rc == CC_OK && res[7].replayed && res[7].entry_id == old.entry_id);
    CHECK(res[8].rc == CC_ERR_INSUFFICIENT);
    CHECK(res[9].rc == CC_OK && res[9].hold_id == n + 5);
    CHECK(res[10].rc == CC_OK && res[10].expires_ms >= t0 + 3600000);
    cc_hold h;
    CHECK(cc_ledger_hold(l, n, &h, &e) == CC_OK && h.state == CC_HOLD_SETTLED && h.resolved_by == n + 1);
    CHECK(cc_ledger_hold(l, n + 3, &h, &e) == CC_OK && h.state == CC_HOLD_VOIDED && h.resolved_by == n + 4);
    CHECK(cc_ledger_hold(l, old.hold_id, &h, &e) == CC_OK && h.state == CC_HOLD_SETTLED && h.resolved_by == n + 2);
    CHECK(cc_ledger_hold(l, n + 5, &h, &e) == CC_OK && h.state == CC_HOLD_OPEN && h.expires_ms >= t0 + 3600000);
    cc_account ac;
    CHECK(cc_ledger_account(l, a, &ac, &e) == CC_OK);
    CHECK_EQ_I64(ac.balance, C(17));
    CHECK_EQ_I64(ac.held, C(1));
    /* The same keys again in a later commit: the original results. */
    CHECK(settle(l, "oc-s1", n, C(2), &r) == CC_OK && r.replayed && r.entry_id == n + 1);
    CHECK(voidh(l, "oc-v2", n + 3, &r) == CC_OK && r.replayed && r.entry_id == n + 4);
    CHECK(verify_ok(l));
    cc_ledger_close(l);
}

/* Tampering with the file is caught by verify. */
static void verify_detects(void) {
    cc_ledger *l = fresh();
    int64_t a = mkacct(l, "v@example.com");
    cc_result r;
    CHECK(grant(l, "g", a, C(5), &r) == CC_OK);
    CHECK(verify_ok(l));
    char path[300];
    snprintf(path, sizeof path, "%s", path_last);
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "UPDATE accounts SET balance = balance + 1, held = 0", 0, 0, 0) == SQLITE_OK);
    /* Entries are immutable even by hand. */
    CHECK(sqlite3_exec(db, "UPDATE entries SET delta = 0", 0, 0, 0) != SQLITE_OK);
    CHECK(sqlite3_exec(db, "DELETE FROM entries", 0, 0, 0) != SQLITE_OK);
    sqlite3_close(db);
    verify_quiet = 1;
    CHECK(!verify_ok(l));
    verify_quiet = 0;
    cc_ledger_close(l);
}

/* Two ledgers on one file (ComfyUI and the operator CLI in another process):
** each must see the other's commits despite its writer-side caches. */
static void two_writers(void) {
    cc_ledger *l1 = fresh();
    char path[300];
    snprintf(path, sizeof path, "%s", path_last);
    cc_store *s2;
    cc_ledger *l2 = NULL;
    cc_error e;
    CHECK(cc_store_sqlite_open(path, 5000, &s2, &e) == CC_OK);
    CHECK(cc_ledger_open(s2, 1, &l2, &e) == CC_OK);
    int64_t a = mkacct(l1, "two@example.com");
    cc_result r, h;
    CHECK(grant(l1, "g1", a, C(1), &r) == CC_OK);        /* l1 caches the account */
    CHECK(hold(l1, "h0", a, C(1), &h) == CC_OK);
    CHECK(voidh(l1, "v0", h.hold_id, &r) == CC_OK);
    CHECK(grant(l2, "g2", a, C(10), &r) == CC_OK);       /* the CLI grants */
    CHECK_EQ_I64(r.balance_after, C(11));
    CHECK(hold(l1, "h1", a, C(11), &h) == CC_OK);        /* l1 sees 11, not its cached 1 */
    CHECK(settle(l2, "s1", h.hold_id, C(2), &r) == CC_OK); /* l2 settles l1's cached hold */
    CHECK_EQ_I64(r.balance_after, C(9));
    CHECK(settle(l1, "s1b", h.hold_id, C(2), &r) == CC_ERR_STATE); /* l1 must not settle it again */
    cc_account_change ch;
    cc_account_change_init(&ch, a);
    ch.active = 0;
    CHECK(cc_ledger_account_update(l2, &ch, &e) == CC_OK); /* disabled elsewhere */
    CHECK(hold(l1, "h2", a, C(1), &h) == CC_ERR_STATE);
    CHECK(verify_ok(l1));
    cc_ledger_close(l2);
    cc_ledger_close(l1);
}

/* The map against a plain array, through inserts, removals and refusals. */
static void map_model(void) {
    enum { KEYS = 3000, MAXI = 1000 };
    static int present[KEYS + 1];
    memset(present, 0, sizeof present);
    i64map m;
    CHECK(i64map_init(&m, MAXI) == 0);
    unsigned x = 12345;
    size_t count = 0;
    for (int step = 0; step < 200000; step++) {
        x = x * 1103515245u + 12345u;
        int64_t k = 1 + (int64_t)((x >> 8) % KEYS);
        if ((x >> 3) & 1) {
            int rc = i64map_put(&m, k, (void *)(intptr_t)k);
            if (present[k]) CHECK(rc == 0);
            else if (count < MAXI) { CHECK(rc == 0); present[k] = 1; count++; }
            else CHECK(rc == -1);
        } else {
            void *v = i64map_remove(&m, k);
            CHECK(present[k] ? v == (void *)(intptr_t)k : v == NULL);
            if (present[k]) { present[k] = 0; count--; }
        }
        if (step % 9973 == 0)
            for (int64_t q = 1; q <= KEYS; q++)
                CHECK((i64map_get(&m, q) != NULL) == present[q]);
    }
    CHECK(m.count == count);
    i64map_destroy(&m, NULL);
}

/* A run that is still making calls keeps its hold past the first ttl. */
static void hold_extend(void) {
    cc_ledger *l = fresh();
    int64_t a = mkacct(l, "ext@example.com");
    cc_result r, h1;
    CHECK(grant(l, "g", a, C(10), &r) == CC_OK);
    CHECK(hold(l, "h1", a, C(2), &h1) == CC_OK); /* ttl 60 s */
    cc_op op;
    cc_op_init(&op, CC_OP_HOLD_EXTEND);
    op.hold_id = h1.hold_id;
    op.ttl_ms = 600000;
    CHECK(cc_ledger_execute1(l, &op, &r) == CC_OK);
    CHECK(r.expires_ms >= cc_now_ms() + 590000);
    cc_op ex;
    cc_op_init(&ex, CC_OP_EXPIRE);
    ex.now_ms = cc_now_ms() + 120000; /* past the first ttl, before the extended one */
    CHECK(cc_ledger_execute1(l, &ex, &r) == CC_OK);
    CHECK_EQ_I64(r.count, 0);
    /* Extending never shortens. */
    op.ttl_ms = 1;
    CHECK(cc_ledger_execute1(l, &op, &r) == CC_OK);
    CHECK(r.expires_ms >= cc_now_ms() + 590000);
    CHECK(settle(l, "s1", h1.hold_id, C(1), &r) == CC_OK);
    op.ttl_ms = 600000;
    CHECK(cc_ledger_execute1(l, &op, &r) == CC_ERR_STATE); /* resolved: nothing to keep alive */
    op.hold_id = 999999;
    CHECK(cc_ledger_execute1(l, &op, &r) == CC_ERR_NOT_FOUND);
    op.ttl_ms = 0;
    CHECK(cc_ledger_execute1(l, &op, &r) == CC_ERR_INVALID);
    CHECK(verify_ok(l));
    cc_ledger_close(l);
}

/* An operator's grant can never take the key of a system operation. */
static void reserved_keys(void) {
    cc_ledger *l = fresh();
    int64_t a = mkacct(l, "keys@example.com");
    cc_result r;
    const char *sys[] = {"settle:1", "void:1", "stripe:cs_test_1", "run:p:1:x", "expire:1", "reserve:p"};
    for (size_t i = 0; i < sizeof sys / sizeof sys[0]; i++) {
        CHECK(grant(l, sys[i], a, C(1), &r) == CC_ERR_INVALID);
        CHECK_STR(r.err.field, "key");
        CHECK(strstr(r.err.message, "reserved") != NULL);
    }
    CHECK(grant(l, "settlement-bonus", a, C(1), &r) == CC_OK); /* a prefix without the colon is fine */
    cc_ledger_close(l);
}

/* A ledger written by a newer comfy-credits is refused, untouched. */
static void schema_newer(void) {
    char path[300];
    ct_db_path(path, sizeof path);
    cc_store *s;
    cc_ledger *l = NULL;
    cc_error e;
    CHECK(cc_store_sqlite_open(path, 5000, &s, &e) == CC_OK);
    CHECK(cc_ledger_open(s, 2, &l, &e) == CC_OK);
    cc_ledger_close(l);
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK(cc_store_sqlite_open(path, 5000, &s, &e) == CC_OK);
    l = NULL;
    CHECK(cc_ledger_open(s, 2, &l, &e) == CC_ERR_STORAGE);
    CHECK(l == NULL);
    CHECK(strstr(e.message, "newer comfy-credits") != NULL);
    CHECK(strstr(e.message, "schema version 99") != NULL);
}

/* Running totals never wrap: an operation that would overflow one is refused. */
static void totals_overflow(void) {
    char path[300];
    ct_db_path(path, sizeof path);
    cc_store *s;
    cc_ledger *l = NULL;
    cc_error e;
    CHECK(cc_store_sqlite_open(path, 5000, &s, &e) == CC_OK);
    CHECK(cc_ledger_open(s, 2, &l, &e) == CC_OK);
    int64_t a = mkacct(l, "totals@example.com");
    cc_result r, h;
    CHECK(grant(l, "g0", a, C(10), &r) == CC_OK);
    CHECK(hold(l, "h0", a, C(5), &h) == CC_OK);
    cc_ledger_close(l);
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "UPDATE accounts SET granted_total = 9223372036854775000, "
                           "spent_total = 9223372036854775000, uncollected_total = 9223372036854775000",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK(cc_store_sqlite_open(path, 5000, &s, &e) == CC_OK);
    CHECK(cc_ledger_open(s, 2, &l, &e) == CC_OK);
    CHECK(grant(l, "g1", a, C(1), &r) == CC_ERR_LIMIT);
    CHECK(strstr(r.err.message, "overflow") != NULL);
    CHECK(settle(l, "s1", h.hold_id, C(5), &r) == CC_ERR_LIMIT);
    cc_account acc;
    CHECK(cc_ledger_account(l, a, &acc, &e) == CC_OK);
    CHECK_EQ_I64(acc.balance, C(10)); /* nothing applied */
    CHECK_EQ_I64(acc.held, C(5));
    cc_ledger_close(l);
}

/* Needs-attention purchases (attention.h): one row per session, reports
** counted, resolved once with a note, listed oldest first. */
static void attention(void) {
    cc_ledger *l = fresh();
    if (!l) return;
    cc_attention a, out;
    memset(&a, 0, sizeof a);
    cc_error e;
    snprintf(a.session_id, sizeof a.session_id, "cs_1");
    a.account_id = 7;
    snprintf(a.currency, sizeof a.currency, "usd");
    a.amount_minor = 500;
    a.credits_micro = C(10);
    snprintf(a.method, sizeof a.method, "card");
    snprintf(a.reason, sizeof a.reason, "amount differs");
    CHECK(cc_ledger_attention_record(l, &a, &out, &e) == CC_OK);
    CHECK_EQ_I64(out.reports, 1);
    CHECK(out.first_ms > 0 && out.first_ms == out.last_ms && out.resolved_ms == 0);
    snprintf(a.reason, sizeof a.reason, "still differs");
    CHECK(cc_ledger_attention_record(l, &a, &out, &e) == CC_OK);
    CHECK_EQ_I64(out.reports, 2);
    CHECK(strcmp(out.reason, "still differs") == 0 && out.amount_minor == 500 && out.account_id == 7);
    snprintf(a.session_id, sizeof a.session_id, "cs_2");
    memset(a.reason, 0, sizeof a.reason);
    memset(a.method, 'm', sizeof a.method - 1); /* the longest kept */
    CHECK(cc_ledger_attention_record(l, &a, &out, &e) == CC_OK);
    CHECK(strcmp(out.reason, "unknown") == 0 && strlen(out.method) == CC_ATTENTION_WORD_BYTES_MAX);
    cc_attention rows[4];
    int n = 0;
    CHECK(cc_ledger_attention_list(l, 0, rows, 4, &n, &e) == CC_OK);
    CHECK(n == 2 && strcmp(rows[0].session_id, "cs_1") == 0);
    CHECK(cc_ledger_attention_resolve(l, "cs_1", "   ", &out, &e) == CC_ERR_INVALID);
    CHECK(cc_ledger_attention_resolve(l, "cs_1", "granted by hand", &out, &e) == CC_OK);
    CHECK(out.resolved_ms > 0 && strcmp(out.resolution, "granted by hand") == 0);
    CHECK(cc_ledger_attention_resolve(l, "cs_1", "again", &out, &e) == CC_ERR_NOT_FOUND);
    CHECK(cc_ledger_attention_resolve(l, "cs_none", "x", &out, &e) == CC_ERR_NOT_FOUND);
    CHECK(cc_ledger_attention_list(l, 0, rows, 4, &n, &e) == CC_OK);
    CHECK(n == 1 && strcmp(rows[0].session_id, "cs_2") == 0);
    CHECK(cc_ledger_attention_list(l, 1, rows, 4, &n, &e) == CC_OK);
    CHECK(n == 2);
    CHECK(cc_ledger_attention_get(l, "cs_none", &out, &e) == CC_ERR_NOT_FOUND);
    memset(a.session_id, 0, sizeof a.session_id);
    CHECK(cc_ledger_attention_record(l, &a, &out, &e) == CC_ERR_INVALID);
    CHECK(cc_ledger_attention_list(l, 0, rows, 0, &n, &e) == CC_ERR_INVALID);
    cc_ledger_close(l);
}

/* The ledger's rules, the same on every backend (store.h). */
static void backend_neutral(void) {
    RUN(attention);
    RUN(hold_extend);
    RUN(reserved_keys);
    RUN(accounts);
    RUN(idempotency);
    RUN(holds);
    RUN(expiry);
    RUN(bad_input);
    RUN(history);
    RUN(race_exact);
    RUN(batch_semantics);
    RUN(batch_one_commit);
}

void suite_ledger(void) {
    backend_neutral();
    /* SQLite-specific: the file, its schema version, edits by hand. */
    RUN(totals_overflow);
    RUN(schema_newer);
    RUN(two_writers);
    RUN(verify_detects);
    RUN(map_model);
    /* The same tests on PostgreSQL (store_pg.c); its own tests: test_store_pg.c. */
    if (ct_pg_available()) {
        on_pg = 1;
        backend_neutral();
        on_pg = 0;
    }
}
