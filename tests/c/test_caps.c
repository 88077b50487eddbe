/* test_caps.c — spending caps (caps.c): windows, the rule, and threads racing on one cap. */
#include "ctest.h"
#include "auth.h"
#include "caps.h"

#include <pthread.h>

#define C(n) ((int64_t)(n) * CC_MICRO)
#define DAY INT64_C(86400000)

static void test_calendar(void) {
    /* 2026-12-01 12:00 UTC */
    int64_t t = INT64_C(1796126400000);
    CHECK_EQ_I64(cc_caps_day(t), 20788);
    CHECK_EQ_I64(cc_caps_month(t), 2026 * 12 + 11);
    CHECK_EQ_I64(cc_caps_month_start_ms(2026 * 12 + 12), INT64_C(1798761600000)); /* 2027-01-01 */
    CHECK_EQ_I64(cc_caps_month_start_ms(2024 * 12 + 1), INT64_C(1706745600000));  /* 2024-02-01 */
    CHECK_EQ_I64(cc_caps_month(INT64_C(1709164800000)), 2024 * 12 + 1);            /* 2024-02-29: leap day */
    CHECK_EQ_I64(cc_caps_month(0), 1970 * 12);
    CHECK_EQ_I64(cc_caps_day(-1), -1);
}

static void test_rule_windows_and_release(void) {
    cc_account a;
    memset(&a, 0, sizeof a);
    cc_caps_init(&a);
    cc_error e;
    int64_t t = INT64_C(1796126400000);
    CHECK(cc_caps_admit(&a, C(1000), t, &e) == CC_OK); /* no cap: counted anyway */
    a.cap_daily = C(10);
    CHECK(cc_caps_admit(&a, C(1), t, &e) == CC_ERR_INSUFFICIENT);
    CHECK_STR(e.field, "cap_daily");
    CHECK(strstr(e.message, "resets at 2026-12-02 00:00 UTC") != NULL);
    CHECK(cc_caps_admit(&a, C(1), t + DAY, &e) == CC_OK); /* the next day is a new window */
    CHECK_EQ_I64(a.cap_day_used, C(1));
    cc_caps_release(&a, t, C(1000), t + DAY); /* a hold of yesterday returns nothing to today */
    CHECK_EQ_I64(a.cap_day_used, C(1));
    cc_caps_release(&a, t + DAY, C(1), t + DAY);
    CHECK_EQ_I64(a.cap_day_used, 0);
    a.cap_daily = 0; /* a cap of 0 stops all spending */
    CHECK(cc_caps_check(&a, 1, t + DAY, &e) == CC_ERR_INSUFFICIENT);
    CHECK(cc_caps_check(&a, 0, t + DAY, &e) == CC_OK);
}

typedef struct racer { cc_ledger *l; int64_t account, first; int ok; } racer;

static void *race(void *arg) {
    racer *r = arg;
    for (int i = 0; i < 100; i++) {
        char key[32];
        snprintf(key, sizeof key, "h%lld", (long long)(r->first + i));
        cc_op op;
        cc_result res;
        cc_op_init(&op, CC_OP_HOLD);
        op.key = key;
        op.account_id = r->account;
        op.amount = C(1);
        op.ttl_ms = 60000;
        if (cc_ledger_execute1(r->l, &op, &res) == CC_OK) r->ok++;
        else CHECK_STR(res.err.field, "cap_daily");
    }
    return NULL;
}

static void test_threads_hold_exactly_the_cap(void) {
    cc_ledger *l = ct_ledger(4, NULL, 0);
    cc_account_new an = {.email = "t@example.com", .display_name = NULL, .role = -1};
    int64_t id = 0;
    cc_error e;
    CHECK(cc_ledger_account_create(l, &an, &id, &e) == CC_OK);
    cc_op op;
    cc_result res;
    cc_op_init(&op, CC_OP_GRANT);
    op.key = "g";
    op.account_id = id;
    op.amount = C(1000);
    CHECK(cc_ledger_execute1(l, &op, &res) == CC_OK);
    cc_account a;
    CHECK(cc_ledger_set_caps(l, id, CC_CAPS_ADMIN, C(37), CC_CAP_NONE, &a, &e) == CC_OK);
    CHECK(cc_ledger_set_caps(l, id, CC_CAPS_ADMIN, -2, CC_CAP_NONE, &a, &e) == CC_ERR_INVALID);
    CHECK(cc_ledger_set_caps(l, 999, CC_CAPS_ADMIN, C(1), CC_CAP_NONE, &a, &e) == CC_ERR_NOT_FOUND);
    racer r[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        r[i] = (racer){l, id, i * 100, 0};
        pthread_create(&th[i], NULL, race, &r[i]);
    }
    int total = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        total += r[i].ok;
    }
    CHECK_EQ_I64(total, 37);
    CHECK(cc_ledger_account(l, id, &a, &e) == CC_OK);
    CHECK_EQ_I64(a.held, C(37));
    CHECK_EQ_I64(a.cap_day_used, C(37));
    cc_ledger_close(l);
}

void suite_caps(void) {
    RUN(test_calendar);
    RUN(test_rule_windows_and_release);
    RUN(test_threads_hold_exactly_the_cap);
}
