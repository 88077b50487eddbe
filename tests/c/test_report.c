/* test_report.c — reconciliation sums (report.c) and the audit log (audit.c). */
#include "ctest.h"
#include "audit.h"
#include "auth.h"
#include "report.h"
#include "stripe.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#define C(n) ((int64_t)(n) * CC_MICRO)

static cc_ledger *fresh(void) { return ct_ledger(2, NULL, 0); }

static int64_t account(cc_ledger *l, const char *email) {
    cc_account_new a = {.email = email, .display_name = NULL, .role = -1};
    int64_t id = 0;
    cc_error e;
    CHECK(cc_ledger_account_create(l, &a, &id, &e) == CC_OK);
    return id;
}

static void money(cc_ledger *l, cc_op_kind kind, const char *key, int64_t acct, int64_t amount) {
    cc_op op;
    cc_result r;
    cc_op_init(&op, kind);
    op.key = key;
    op.account_id = acct;
    op.amount = amount;
    if (kind != CC_OP_GRANT) {
        op.currency = "usd";
        op.amount_minor = 100;
        op.method = "card";
        op.external_ref = key;
    }
    CHECK(cc_ledger_execute1(l, &op, &r) == CC_OK);
}

/* hold `held`, then settle at `billed` (0: void) */
static void run(cc_ledger *l, const char *key, int64_t acct, const char *node, const char *model, int64_t held,
                int64_t billed) {
    cc_op op;
    cc_result r;
    cc_op_init(&op, CC_OP_HOLD);
    op.key = key;
    op.account_id = acct;
    op.amount = held;
    op.ttl_ms = 60000;
    op.ctx.node_class = node;
    op.ctx.model = model;
    CHECK(cc_ledger_execute1(l, &op, &r) == CC_OK);
    int64_t hold_id = r.hold_id;
    char k2[80];
    snprintf(k2, sizeof k2, "%s:%s", billed ? "settle" : "void", key);
    cc_op_init(&op, billed ? CC_OP_SETTLE : CC_OP_VOID);
    op.key = k2;
    op.hold_id = hold_id;
    op.amount = billed;
    CHECK(cc_ledger_execute1(l, &op, &r) == CC_OK);
}

static void test_report_sums_equal_ledger(void) {
    cc_ledger *l = fresh();
    int64_t a = account(l, "a@example.com"), b = account(l, "b@example.com");
    money(l, CC_OP_PURCHASE, "stripe:cs_1", a, C(100));
    money(l, CC_OP_GRANT, "g1", b, C(10));
    run(l, "r1", a, "OpenAIDalle3", "dall-e-3", C(20), C(8));       /* charged 8 */
    run(l, "r2", a, "OpenAIDalle3", "dall-e-3", C(20), C(30));      /* charged 20, uncollected 10 */
    run(l, "r3", b, "GeminiNode", "gemini-2.5-pro", C(5), 0);       /* free */
    run(l, "r4", b, "GeminiNode", "gemini-2.5-pro", C(5), C(3));
    int64_t now = cc_now_ms();
    cc_report *r = NULL;
    cc_error e;
    CHECK(cc_report_build(l, now - CC_DAY_MS, now + 1000, &r, &e) == CC_OK);
    if (!r) return;
    CHECK_EQ_I64(r->total.runs, 4);
    CHECK_EQ_I64(r->total.runs_free, 1);
    CHECK_EQ_I64(r->total.billed, C(41));
    CHECK_EQ_I64(r->total.charged, C(31));
    CHECK_EQ_I64(r->total.uncollected, C(10));
    CHECK_EQ_I64(r->total.purchased, C(100));
    CHECK_EQ_I64(r->total.granted, C(10));
    CHECK_EQ_I64(r->n_spend, 2);
    CHECK_STR(r->spend[0].node_class, "OpenAIDalle3");            /* largest charge first */
    CHECK_EQ_I64(r->spend[0].charged, C(28));
    CHECK_EQ_I64(r->spend[0].uncollected, C(10));
    CHECK_EQ_I64(r->n_accounts, 2);
    CHECK_EQ_I64(r->accounts[0].account_id, a);
    CHECK_EQ_I64(r->accounts[0].charged, C(28));
    int64_t days_charged = 0;
    for (int i = 0; i < r->n_days; i++) days_charged += r->days[i].t.charged;
    CHECK_EQ_I64(days_charged, C(31));
    cc_report_free(r);

    /* all time: the report's sums equal the accounts' totals */
    char *probs[8];
    int n = -1;
    cc_report_totals t;
    CHECK(cc_report_check(l, probs, 8, &n, &t, &e) == CC_OK);
    CHECK_EQ_I64(n, 0);
    CHECK_EQ_I64(t.charged, C(31));

    /* a range with nothing in it */
    CHECK(cc_report_build(l, now + CC_DAY_MS, now + 2 * CC_DAY_MS, &r, &e) == CC_OK);
    if (r) CHECK_EQ_I64(r->total.runs, 0);
    cc_report_free(r);
    cc_ledger_close(l);
}

static void test_report_bad_ranges(void) {
    cc_ledger *l = fresh();
    cc_report *r = (cc_report *)1;
    cc_error e;
    CHECK(cc_report_build(l, 1000, 1000, &r, &e) == CC_ERR_INVALID);
    CHECK_STR(e.field, "to");
    CHECK(r == NULL);
    CHECK(cc_report_build(l, 2000, 1000, &r, &e) == CC_ERR_INVALID);
    CHECK(cc_report_build(l, -1, 1000, &r, &e) == CC_ERR_INVALID);
    CHECK_STR(e.field, "from");
    CHECK(cc_report_build(l, 0, CC_REPORT_RANGE_MS_MAX + 1, &r, &e) == CC_ERR_INVALID);
    CHECK(cc_report_build(l, 0, CC_REPORT_RANGE_MS_MAX, &r, &e) == CC_OK);
    if (r) CHECK_EQ_I64(r->n_days, 366);
    cc_report_free(r);
    cc_ledger_close(l);
}

static void test_audit_append_list_verify(void) {
    char path[CT_PATH_BYTES_MAX];
    ct_db_path(path, sizeof path);
    cc_audit *a = NULL;
    cc_error e;
    CHECK(cc_audit_open(path, &a, &e) == CC_OK);
    if (!a) return;
    cc_audit_record in, out;
    memset(&in, 0, sizeof in);
    in.actor_id = 7;
    snprintf(in.actor, sizeof in.actor, "admin@example.com");
    snprintf(in.action, sizeof in.action, "grant");
    snprintf(in.target, sizeof in.target, "account 3");
    snprintf(in.detail, sizeof in.detail, "{\"credits\":\"5\"}");
    snprintf(in.source, sizeof in.source, "127.0.0.1");
    for (int i = 0; i < 5; i++) CHECK(cc_audit_append(a, &in, &out, &e) == CC_OK);
    CHECK_EQ_I64(out.id, 5);
    CHECK(out.at_ms > 0);
    /* bad input writes nothing */
    cc_audit_record bad = in;
    bad.action[0] = '\0';
    CHECK(cc_audit_append(a, &bad, NULL, &e) == CC_ERR_INVALID);
    CHECK_STR(e.field, "action");
    bad = in;
    memset(bad.source, 'x', sizeof bad.source); /* no NUL within the limit */
    bad.source[sizeof bad.source - 1] = '\0';
    CHECK(cc_audit_append(a, &bad, NULL, &e) == CC_OK); /* exactly the limit is fine */
    cc_audit_record page[4];
    int n = 0;
    int64_t next = 0;
    CHECK(cc_audit_list(a, 0, 4, page, &n, &next, &e) == CC_OK);
    CHECK_EQ_I64(n, 4);
    CHECK_EQ_I64(page[0].id, 6);
    CHECK_EQ_I64(next, 3);
    CHECK(cc_audit_list(a, next, 4, page, &n, &next, &e) == CC_OK);
    CHECK_EQ_I64(n, 2);
    CHECK_EQ_I64(next, 0);
    CHECK(cc_audit_list(a, 0, 0, page, &n, &next, &e) == CC_ERR_INVALID);
    int64_t count = 0, first_bad = -1;
    CHECK(cc_audit_verify(a, &count, &first_bad, &e) == CC_OK);
    CHECK_EQ_I64(count, 6);
    CHECK_EQ_I64(first_bad, 0);
    cc_audit_close(a);

    /* append-only: the schema refuses edits; an edit made by dropping the
    ** trigger is found by verify */
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "UPDATE audit SET detail='{}' WHERE id=2", NULL, NULL, NULL) != SQLITE_OK);
    CHECK(sqlite3_exec(db, "DELETE FROM audit WHERE id=2", NULL, NULL, NULL) != SQLITE_OK);
    CHECK(sqlite3_exec(db, "DROP TRIGGER audit_no_update; UPDATE audit SET detail='{}' WHERE id=3", NULL, NULL,
                       NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK(cc_audit_open(path, &a, &e) == CC_OK);
    CHECK(cc_audit_verify(a, &count, &first_bad, &e) == CC_OK);
    CHECK_EQ_I64(first_bad, 3);
    cc_audit_close(a);
}

static void test_payment_intent_receipt_parse(void) {
    cc_payment_receipt r;
    cc_error e;
    const char *ok = "{\"id\":\"pi_1\",\"object\":\"payment_intent\",\"status\":\"succeeded\",\"livemode\":true,"
                     "\"latest_charge\":{\"id\":\"ch_1\",\"receipt_url\":\"https://pay.stripe.com/receipts/x\","
                     "\"payment_method_details\":{\"type\":\"wechat_pay\"}}}";
    CHECK(cc_stripe_payment_intent_parse(ok, strlen(ok), &r, &e) == CC_OK);
    CHECK_STR(r.receipt_url, "https://pay.stripe.com/receipts/x");
    CHECK_STR(r.method_used, "wechat_pay");
    CHECK_STR(r.charge, "ch_1");
    CHECK(r.livemode == 1);
    const char *unexpanded = "{\"id\":\"pi_1\",\"object\":\"payment_intent\",\"latest_charge\":\"ch_9\"}";
    CHECK(cc_stripe_payment_intent_parse(unexpanded, strlen(unexpanded), &r, &e) == CC_OK);
    CHECK_STR(r.charge, "ch_9");
    CHECK_STR(r.receipt_url, "");
    const char *none = "{\"id\":\"pi_1\",\"object\":\"payment_intent\",\"latest_charge\":null}";
    CHECK(cc_stripe_payment_intent_parse(none, strlen(none), &r, &e) == CC_OK);
    CHECK_STR(r.charge, "");
    const char *js = "{\"id\":\"pi_1\",\"object\":\"payment_intent\",\"latest_charge\":{\"id\":\"ch_1\","
                     "\"receipt_url\":\"javascript:alert(1)\"}}";
    CHECK(cc_stripe_payment_intent_parse(js, strlen(js), &r, &e) == CC_ERR_INVALID);
    CHECK_STR(e.field, "receipt_url");
    CHECK_STR(r.receipt_url, "");
    const char *session = "{\"id\":\"cs_1\",\"object\":\"checkout.session\"}";
    CHECK(cc_stripe_payment_intent_parse(session, strlen(session), &r, &e) == CC_ERR_INVALID);
    CHECK(cc_stripe_payment_intent_parse("{", 1, &r, &e) == CC_ERR_INVALID);
}

void suite_report(void) {
    RUN(test_payment_intent_receipt_parse);
    RUN(test_report_sums_equal_ledger);
    RUN(test_report_bad_ranges);
    RUN(test_audit_append_list_verify);
}
