/* test_caps.c — spending caps (caps.c): windows, the rule, and threads racing on one cap. */
#include "ctest.h"
#include "auth.h"
#include "caps.h"
#include "pg_helper.h"

#include <pthread.h>
#include <time.h>

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

/* Grants `amount` to an account (key "g"). */
static void grant(cc_ledger *l, int64_t account, int64_t amount) {
    cc_op op;
    cc_result r;
    cc_op_init(&op, CC_OP_GRANT);
    op.key = "g";
    op.account_id = account;
    op.amount = amount;
    CHECK(cc_ledger_execute1(l, &op, &r) == CC_OK);
}

typedef struct racer { cc_ledger *l; int64_t account, first; int ok; int64_t key; } racer;

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
        op.credential_id = r->key;
        if (cc_ledger_execute1(r->l, &op, &res) == CC_OK) r->ok++;
        else CHECK_STR(res.err.field, r->key ? "key_cap" : "cap_daily");
    }
    return NULL;
}

/* A fresh ledger on SQLite, or on a new PostgreSQL database (its URI in uri). */
static cc_ledger *open_backend(int pg, char *uri, size_t cap) {
    if (!pg) return ct_ledger(4, NULL, 0);
    cc_store *s;
    cc_ledger *l = NULL;
    cc_error e;
    if (!uri[0] && ct_pg_new_db(uri, cap) != 0) return NULL;
    if (cc_store_pg_open(uri, 10000, &s, &e) != CC_OK || cc_ledger_open(s, 4, &l, &e) != CC_OK) {
        fprintf(stderr, "pg: %s\n", e.message);
        return NULL;
    }
    return l;
}

/* 8 threads, a daily cap of 37 one-credit holds. On PostgreSQL the threads are
** split between two ledgers on one database (two servers of a farm). */
static void threads_hold_exactly_the_cap(int pg) {
    char uri[200] = "";
    cc_ledger *l = open_backend(pg, uri, sizeof uri);
    CHECK(l != NULL);
    if (!l) return;
    cc_ledger *l2 = pg ? open_backend(pg, uri, sizeof uri) : l;
    CHECK(l2 != NULL);
    if (!l2) { cc_ledger_close(l); return; }
    cc_account_new an = {.email = "t@example.com", .display_name = NULL, .role = -1};
    int64_t id = 0;
    cc_error e;
    CHECK(cc_ledger_account_create(l, &an, &id, &e) == CC_OK);
    cc_op op;
    cc_result res;
    grant(l, id, C(1000));
    cc_account a;
    CHECK(cc_ledger_set_caps(l, id, CC_CAPS_ADMIN, C(37), CC_CAP_NONE, &a, &e) == CC_OK);
    CHECK(cc_ledger_set_caps(l, id, CC_CAPS_ADMIN, -2, CC_CAP_NONE, &a, &e) == CC_ERR_INVALID);
    CHECK(cc_ledger_set_caps(l, 999, CC_CAPS_ADMIN, C(1), CC_CAP_NONE, &a, &e) == CC_ERR_NOT_FOUND);
    racer r[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        r[i] = (racer){i % 2 ? l2 : l, id, i * 100, 0, 0};
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
    /* What a hold did not charge returns to the window, seen by the other server too. */
    cc_op_init(&op, CC_OP_VOID);
    op.key = "v";
    op.hold_id = 0;
    cc_history_query q = {.account_id = id, .kinds_mask = 1u << CC_KIND_HOLD, .limit = 1};
    cc_entry last;
    int n = 0;
    int64_t next = 0;
    CHECK(cc_ledger_history(l, &q, &last, &n, &next, &e) == CC_OK && n == 1);
    op.hold_id = last.id;
    op.account_id = id;
    CHECK(cc_ledger_execute1(l, &op, &res) == CC_OK);
    CHECK(cc_ledger_account(l2, id, &a, &e) == CC_OK);
    CHECK_EQ_I64(a.cap_day_used, C(36));
    CHECK_EQ_I64(a.cap_daily, C(37));
    CHECK_EQ_I64(a.cap_monthly, CC_CAP_NONE);
    if (l2 != l) cc_ledger_close(l2);
    cc_ledger_close(l);
}

static void test_threads_hold_exactly_the_cap(void) { threads_hold_exactly_the_cap(0); }

/* Farm mode: the caps live in PostgreSQL's accounts rows. */
static void test_pg_two_servers_hold_exactly_the_cap(void) { threads_hold_exactly_the_cap(1); }

/* ---- personal API keys: a cap over the key's life and an expiry, checked with each hold */

static cc_rc key_hold(cc_ledger *l, const char *key, int64_t acct, int64_t cred, int64_t amount, cc_result *r) {
    cc_op op;
    cc_op_init(&op, CC_OP_HOLD);
    op.key = key;
    op.account_id = acct;
    op.amount = amount;
    op.ttl_ms = 60000;
    op.credential_id = cred;
    return cc_ledger_execute1(l, &op, r);
}

static int64_t key_used(cc_ledger *l, int64_t acct, int64_t cred) {
    cc_credential k[8];
    int n = 0;
    cc_error e;
    CHECK(cc_ledger_credential_list(l, acct, CC_CRED_API_KEY, 0, k, 8, &n, &e) == CC_OK);
    for (int i = 0; i < n; i++)
        if (k[i].id == cred) return k[i].cap_used;
    return -1;
}

/* An expired key: listed only when asked for expired ones too, with its expiry; its secret does not work; it
** counts against the per-account bound (it can be extended, so expiring keys is no way round the bound). */
static void key_expired_listed(cc_ledger *l, int64_t a, cc_credential *k, const char *tok) {
    cc_credential ks[8], seen;
    cc_account acc;
    cc_error e;
    int n = -1;
    CHECK(cc_ledger_credential_list(l, a, CC_CRED_API_KEY, 0, ks, 8, &n, &e) == CC_OK);
    CHECK_EQ_I64(n, 0);
    CHECK(cc_ledger_credential_list(l, a, CC_CRED_API_KEY, 1, ks, 8, &n, &e) == CC_OK);
    CHECK_EQ_I64(n, 1);
    CHECK(ks[0].id == k->id && ks[0].expires_ms == k->expires_ms && ks[0].expires_ms <= cc_now_ms());
    CHECK(cc_ledger_credential_check(l, tok, &seen, &acc, &e) == CC_ERR_NOT_FOUND);
    char t[CC_CRED_TOKEN_BYTES + 1];
    cc_credential x;
    for (int i = 1; i < CC_API_KEYS_PER_ACCOUNT_MAX; i++)
        CHECK(cc_ledger_credential_create(l, a, CC_CRED_API_KEY, "more", 0, t, sizeof t, &x, &e) == CC_OK);
    CHECK(cc_ledger_credential_create(l, a, CC_CRED_API_KEY, "one too many", 0, t, sizeof t, &x, &e) == CC_ERR_LIMIT);
    int revoked = 0;
    CHECK(cc_ledger_credential_revoke(l, a, CC_CRED_API_KEY, x.id, &revoked, &e) == CC_OK && revoked == 1);
    /* extended, it works again */
    CHECK(cc_ledger_key_limits(l, a, k->id, k->cap_micro, cc_now_ms() + 3600000, k, NULL, &e) == CC_OK);
    CHECK(cc_ledger_credential_check(l, tok, &seen, &acc, &e) == CC_OK);
    CHECK_EQ_I64(seen.id, k->id);
}

static void key_caps(int pg) {
    char uri[200] = "";
    cc_ledger *l = open_backend(pg, uri, sizeof uri);
    CHECK(l != NULL);
    if (!l) return;
    int64_t a = ct_account(l, "k@example.com"), b = ct_account(l, "other@example.com");
    cc_op op;
    cc_result r;
    grant(l, a, C(1000));
    char tok[CC_CRED_TOKEN_BYTES + 1], tokb[CC_CRED_TOKEN_BYTES + 1];
    cc_credential k, kb;
    cc_error e;
    CHECK(cc_ledger_credential_create(l, a, CC_CRED_API_KEY, "ci", 0, tok, sizeof tok, &k, &e) == CC_OK);
    CHECK_EQ_I64(k.cap_micro, -1);
    CHECK(cc_ledger_credential_create(l, b, CC_CRED_API_KEY, "b", 0, tokb, sizeof tokb, &kb, &e) == CC_OK);
    /* bad limits: nothing changes */
    CHECK(cc_ledger_key_limits(l, a, k.id, -2, 0, NULL, NULL, &e) == CC_ERR_INVALID);
    CHECK_STR(e.field, "cap");
    CHECK(cc_ledger_key_limits(l, a, k.id, C(10), cc_now_ms() - 1000, NULL, NULL, &e) == CC_ERR_INVALID);
    CHECK_STR(e.field, "expires");
    CHECK(cc_ledger_key_limits(l, b, k.id, C(10), 0, NULL, NULL, &e) == CC_ERR_NOT_FOUND); /* not b's key */
    cc_credential was;
    CHECK(cc_ledger_key_limits(l, a, k.id, C(10), 0, &k, &was, &e) == CC_OK);
    CHECK_EQ_I64(k.cap_micro, C(10));
    CHECK_EQ_I64(was.id, k.id); /* what the change replaced: no cap, never expires (the audit log's "was") */
    CHECK_EQ_I64(was.cap_micro, -1);
    CHECK_EQ_I64(was.expires_ms, 0);
    /* the cap binds holds placed with the key, never other holds of the account */
    CHECK(key_hold(l, "k1", a, k.id, C(6), &r) == CC_OK);
    int64_t h1 = r.hold_id;
    CHECK(key_hold(l, "k2", a, k.id, C(6), &r) == CC_ERR_INSUFFICIENT);
    CHECK_STR(r.err.field, "key_cap");
    CHECK(strstr(r.err.message, "4.00 are left") != NULL && strstr(r.err.message, "needs up to 6.00") != NULL);
    CHECK(key_hold(l, "n1", a, 0, C(6), &r) == CC_OK);
    CHECK_EQ_I64(key_used(l, a, k.id), C(6));
    /* what a hold did not charge comes back: settle 2 of 6 */
    cc_op_init(&op, CC_OP_SETTLE);
    op.key = "s1";
    op.hold_id = h1;
    op.amount = C(2);
    CHECK(cc_ledger_execute1(l, &op, &r) == CC_OK);
    CHECK_EQ_I64(key_used(l, a, k.id), C(2));
    CHECK(key_hold(l, "k3", a, k.id, C(8), &r) == CC_OK);
    CHECK(key_hold(l, "k4", a, k.id, 1, &r) == CC_ERR_INSUFFICIENT);
    /* someone else's key, an expired key, a revoked key: refused, nothing held */
    cc_account before;
    CHECK(cc_ledger_account(l, a, &before, &e) == CC_OK);
    CHECK(key_hold(l, "x1", a, kb.id, C(1), &r) == CC_ERR_STATE);
    CHECK_STR(r.err.field, "key");
    /* The key expires soon: a hold with it before that goes through. The window starts at 150 ms and is widened
    ** (x4, up to 9.6 s) only when the machine was too slow to place the hold inside it: a refusal fails the test
    ** only when the whole call ended before the expiry (the ledger reads its clock inside the call). */
    cc_rc k5 = CC_ERR_STATE;
    for (int64_t window_ms = 150;; window_ms *= 4) {
        CHECK(cc_ledger_key_limits(l, 0, k.id, CC_CAP_NONE, cc_now_ms() + window_ms, &k, &was, &e) == CC_OK);
        if (window_ms == 150) { /* an admin: owner 0; what it replaced */
            CHECK_EQ_I64(was.cap_micro, C(10));
            CHECK_EQ_I64(was.expires_ms, 0);
            CHECK_EQ_I64(k.cap_micro, -1);
        }
        char k5key[32];
        snprintf(k5key, sizeof k5key, "k5-%lld", (long long)window_ms);
        k5 = key_hold(l, k5key, a, k.id, C(1), &r);
        if (k5 == CC_OK || cc_now_ms() < k.expires_ms || window_ms >= 9600) break;
    }
    CHECK_EQ_I64(k5, CC_OK);
    /* Past the expiry (a condition, not a fixed sleep): refused. */
    while (cc_now_ms() <= k.expires_ms) cc_sleep_ms(10);
    CHECK(key_hold(l, "k6", a, k.id, C(1), &r) == CC_ERR_STATE);
    CHECK(strstr(r.err.message, "expired") != NULL);
    key_expired_listed(l, a, &k, tok);
    int n = 0;
    CHECK(cc_ledger_credential_revoke(l, b, CC_CRED_API_KEY, kb.id, &n, &e) == CC_OK);
    CHECK(cc_ledger_key_limits(l, 0, kb.id, C(1), 0, NULL, NULL, &e) == CC_ERR_NOT_FOUND);
    cc_account after;
    CHECK(cc_ledger_account(l, a, &after, &e) == CC_OK);
    CHECK_EQ_I64(after.held, before.held + C(1)); /* only k5 */
    cc_ledger_close(l);
}

static void test_key_caps(void) { key_caps(0); }
static void test_pg_key_caps(void) { key_caps(1); }

/* 8 threads (two servers on PostgreSQL) race one-credit holds on a key with a cap of 37. */
static void key_race(int pg) {
    char uri[200] = "";
    cc_ledger *l = open_backend(pg, uri, sizeof uri);
    CHECK(l != NULL);
    if (!l) return;
    cc_ledger *l2 = pg ? open_backend(pg, uri, sizeof uri) : l;
    int64_t id = ct_account(l, "race@example.com");
    grant(l, id, C(1000));
    char tok[CC_CRED_TOKEN_BYTES + 1];
    cc_credential k;
    cc_error e;
    CHECK(cc_ledger_credential_create(l, id, CC_CRED_API_KEY, "race", 0, tok, sizeof tok, &k, &e) == CC_OK);
    CHECK(cc_ledger_key_limits(l, id, k.id, C(37), 0, &k, NULL, &e) == CC_OK);
    racer r[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        r[i] = (racer){i % 2 && l2 ? l2 : l, id, i * 100, 0, k.id};
        pthread_create(&th[i], NULL, race, &r[i]);
    }
    int total = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        total += r[i].ok;
    }
    CHECK_EQ_I64(total, 37);
    CHECK_EQ_I64(key_used(l, id, k.id), C(37));
    if (l2 && l2 != l) cc_ledger_close(l2);
    cc_ledger_close(l);
}

static void test_key_race(void) { key_race(0); }
static void test_pg_key_race(void) { key_race(1); }

/* A PostgreSQL ledger of schema 2 (before caps) is migrated in place: every
** account is uncapped (-1), never "a cap of 0"; the version is recorded once. */
static void test_pg_schema_2_is_migrated_uncapped(void) {
    char uri[200] = "";
    cc_ledger *l = open_backend(1, uri, sizeof uri);
    CHECK(l != NULL);
    if (!l) return;
    int64_t id = ct_account(l, "old@example.com");
    cc_op op;
    cc_result res;
    grant(l, id, C(10));
    cc_ledger_close(l);
    CHECK(ct_pg_exec(uri, "DELETE FROM cc_migrations WHERE version IN (3, 4); ALTER TABLE holds DROP COLUMN credential_id;"
                          " ALTER TABLE credentials DROP COLUMN cap_micro, DROP COLUMN cap_used;"
                          " ALTER TABLE accounts DROP COLUMN cap_daily,"
                          " DROP COLUMN cap_monthly, DROP COLUMN own_cap_daily, DROP COLUMN own_cap_monthly,"
                          " DROP COLUMN cap_day, DROP COLUMN cap_day_used, DROP COLUMN cap_month,"
                          " DROP COLUMN cap_month_used") == 0);
    l = open_backend(1, uri, sizeof uri);
    CHECK(l != NULL);
    if (!l) return;
    cc_account a;
    cc_error e;
    CHECK(cc_ledger_account(l, id, &a, &e) == CC_OK);
    CHECK_EQ_I64(a.cap_daily, CC_CAP_NONE);
    CHECK_EQ_I64(a.own_cap_monthly, CC_CAP_NONE);
    CHECK_EQ_I64(a.cap_day_used, 0);
    cc_op_init(&op, CC_OP_HOLD);
    op.key = "h";
    op.account_id = id;
    op.amount = C(10);
    op.ttl_ms = 60000;
    CHECK(cc_ledger_execute1(l, &op, &res) == CC_OK);
    /* Recorded once: a second server opening the same database migrates nothing. */
    cc_ledger *l2 = open_backend(1, uri, sizeof uri);
    CHECK(l2 != NULL);
    if (l2) cc_ledger_close(l2);
    CHECK(ct_pg_exec(uri, "DO $$ BEGIN IF (SELECT count(*) FROM cc_migrations WHERE version = 3) <> 1 THEN"
                          " RAISE EXCEPTION 'migration 3 recorded more than once'; END IF; END $$") == 0);
    cc_ledger_close(l);
}

void suite_caps(void) {
    RUN(test_calendar);
    RUN(test_rule_windows_and_release);
    RUN(test_threads_hold_exactly_the_cap);
    RUN(test_key_caps);
    RUN(test_key_race);
    if (ct_pg_available()) {
        RUN(test_pg_two_servers_hold_exactly_the_cap);
        RUN(test_pg_schema_2_is_migrated_uncapped);
        RUN(test_pg_key_caps);
        RUN(test_pg_key_race);
    }
}
