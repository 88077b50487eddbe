/* test_fulfil.c — a paid session credits exactly what it was priced at, once;
** a paid session that cannot be credited is "needs attention", never lost. */
#include "ctest.h"
#include "fulfil.h"
#include "money.h"

#include <stdlib.h>
#include <unistd.h>

static cc_ledger *fresh(void) { return ct_ledger(2, NULL, 0); }

static int64_t account(cc_ledger *l) { return ct_account(l, "buyer@example.com"); }

/* A paid USD session priced at 211 credits per dollar. */
static cc_checkout_session paid(const char *id, int64_t acct, int64_t cents) {
    cc_checkout_session s;
    memset(&s, 0, sizeof s);
    snprintf(s.id, sizeof s.id, "%s", id);
    strcpy(s.status, "complete");
    strcpy(s.payment_status, "paid");
    strcpy(s.currency, "usd");
    strcpy(s.priced_currency, "usd");
    s.amount_total = s.priced_amount_minor = cents;
    s.rate_micro = 211 * CC_MICRO;
    s.credits_micro = cents * 211 * CC_MICRO / 100;
    s.account_id = acct;
    strcpy(s.methods_offered, "card,wechat_pay,alipay");
    return s;
}

static void credits_what_was_priced(void) {
    cc_ledger *l = fresh();
    int64_t a = account(l);
    cc_checkout_session s = paid("cs_test_f1", a, 100); /* $1 at 211 */
    strcpy(s.method_used, "wechat_pay");
    cc_fulfil_state st = 0;
    cc_result r;
    cc_error e;
    CHECK(cc_fulfil_checkout(l, &s, 0, &st, &r, &e) == CC_OK);
    CHECK(st == CC_FULFIL_CREDITED);
    CHECK_EQ_I64(r.balance_after, 211 * CC_MICRO);
    cc_entry en;
    CHECK(cc_ledger_entry(l, "stripe:cs_test_f1", &en, &e) == CC_OK);
    CHECK_STR(en.method, "wechat_pay");
    CHECK_STR(en.note, "offered: card,wechat_pay,alipay");
    CHECK_EQ_I64(en.amount_minor, 100);
    /* replays (webhook retries, the return path) credit nothing more */
    for (int i = 0; i < 3; i++) {
        CHECK(cc_fulfil_checkout(l, &s, 0, &st, &r, &e) == CC_OK);
        CHECK(st == CC_FULFIL_ALREADY);
    }
    /* a later report without the method (e.g. not expanded) is still the same purchase */
    s.method_used[0] = 0;
    CHECK(cc_fulfil_checkout(l, &s, 0, &st, &r, &e) == CC_OK);
    CHECK(st == CC_FULFIL_ALREADY);
    cc_account ac;
    CHECK(cc_ledger_account(l, a, &ac, &e) == CC_OK);
    CHECK_EQ_I64(ac.balance, 211 * CC_MICRO);
    /* priced at another rate (the operator changed it later): credits what that session promised */
    cc_checkout_session s2 = paid("cs_test_f2", a, 100);
    s2.rate_micro = 250 * CC_MICRO;
    s2.credits_micro = 250 * CC_MICRO;
    CHECK(cc_fulfil_checkout(l, &s2, 0, &st, &r, &e) == CC_OK);
    CHECK(st == CC_FULFIL_CREDITED);
    CHECK_EQ_I64(r.balance_after, 461 * CC_MICRO);
    /* a single method offered is the method used */
    cc_checkout_session s3 = paid("cs_test_f3", a, 500);
    strcpy(s3.methods_offered, "alipay");
    CHECK(cc_fulfil_checkout(l, &s3, 0, &st, &r, &e) == CC_OK);
    CHECK(cc_ledger_entry(l, "stripe:cs_test_f3", &en, &e) == CC_OK);
    CHECK_STR(en.method, "alipay");
    cc_ledger_close(l);
}

static void needs_attention(void) {
    cc_ledger *l = fresh();
    int64_t a = account(l);
    cc_fulfil_state st = 0;
    cc_result r;
    cc_error e;
    struct { const char *why; const char *field; } cases[] = {
        {"amount", "amount_total"}, {"currency", "amount_total"}, {"credits", "metadata.credits_micro"},
        {"no price", "metadata"}, {"no account", "client_reference_id"}, {"unknown account", "account"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char id[32];
        snprintf(id, sizeof id, "cs_test_na%zu", i);
        cc_checkout_session s = paid(id, a, 1000);
        switch (i) {
        case 0: s.amount_total = 999; break;              /* charged other than priced */
        case 1: strcpy(s.priced_currency, "eur"); break;
        case 2: s.credits_micro += 1; break;              /* promises more than the amount buys */
        case 3: s.priced_amount_minor = 0; break;         /* created without a price */
        case 4: s.account_id = 0; break;
        case 5: s.account_id = a + 100; break;            /* account gone */
        }
        memset(&e, 0, sizeof e);
        CHECK(cc_fulfil_checkout(l, &s, 0, &st, &r, &e) == CC_OK);
        CHECK(st == CC_FULFIL_NEEDS_ATTENTION);
        CHECK_STR(e.field, cases[i].field);
        CHECK(e.message[0] != 0);
    }
    cc_account ac;
    CHECK(cc_ledger_account(l, a, &ac, &e) == CC_OK);
    CHECK_EQ_I64(ac.balance, 0);
    /* the operator credits the first one by hand under the session's key: later reports are "already" */
    cc_op op;
    cc_op_init(&op, CC_OP_PURCHASE);
    op.key = "stripe:cs_test_na0";
    op.account_id = a;
    op.amount = 2100 * CC_MICRO;
    op.currency = "usd";
    op.amount_minor = 999;
    op.method = "card";
    op.external_ref = "cs_test_na0";
    CHECK(cc_ledger_execute1(l, &op, &r) == CC_OK);
    cc_checkout_session again = paid("cs_test_na0", a, 1000);
    again.amount_total = 999;
    CHECK(cc_fulfil_checkout(l, &again, 0, &st, &r, &e) == CC_OK);
    CHECK(st == CC_FULFIL_ALREADY);
    CHECK(cc_ledger_account(l, a, &ac, &e) == CC_OK);
    CHECK_EQ_I64(ac.balance, 2100 * CC_MICRO);
    /* unpaid states are not for the operator */
    cc_checkout_session s = paid("cs_test_open", a, 1000);
    strcpy(s.status, "open");
    strcpy(s.payment_status, "unpaid");
    CHECK(cc_fulfil_checkout(l, &s, 0, &st, &r, &e) == CC_OK && st == CC_FULFIL_PENDING);
    strcpy(s.status, "expired");
    CHECK(cc_fulfil_checkout(l, &s, 0, &st, &r, &e) == CC_OK && st == CC_FULFIL_NOT_PAID);
    cc_ledger_close(l);
}

void suite_fulfil(void) {
    RUN(credits_what_was_priced);
    RUN(needs_attention);
}
