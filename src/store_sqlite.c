/*
** store_sqlite.c — the SQLite backend of store.h.
**
** Durability: journal_mode=WAL and synchronous=FULL, so COMMIT returns only
** after the WAL frame is fsynced. Writers take BEGIN IMMEDIATE so a second
** process (the operator CLI next to a running ComfyUI) waits on busy_timeout
** instead of failing half-way. Readers use their own connections and see the
** last committed state (WAL snapshot isolation).
**
** Every statement is prepared once per connection and reset after use.
*/
#include "store.h"

#include <sqlite3.h>
#include <string.h>

#define SCHEMA_VERSION 1

static const char *const SCHEMA_SQL =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS accounts("
    " id INTEGER PRIMARY KEY,"
    " email TEXT NOT NULL UNIQUE COLLATE NOCASE,"
    " display_name TEXT NOT NULL DEFAULT '',"
    " active INTEGER NOT NULL, role INTEGER NOT NULL,"
    " created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,"
    " balance INTEGER NOT NULL, held INTEGER NOT NULL,"
    " paid_total INTEGER NOT NULL, granted_total INTEGER NOT NULL,"
    " spent_total INTEGER NOT NULL, uncollected_total INTEGER NOT NULL,"
    " test_balance INTEGER NOT NULL DEFAULT 0,"
    " cap_daily INTEGER NOT NULL DEFAULT -1, cap_monthly INTEGER NOT NULL DEFAULT -1,"
    " own_cap_daily INTEGER NOT NULL DEFAULT -1, own_cap_monthly INTEGER NOT NULL DEFAULT -1,"
    " cap_day INTEGER NOT NULL DEFAULT 0, cap_day_used INTEGER NOT NULL DEFAULT 0,"
    " cap_month INTEGER NOT NULL DEFAULT 0, cap_month_used INTEGER NOT NULL DEFAULT 0,"
    " CHECK (balance >= 0 AND held >= 0 AND held <= balance));"
    "CREATE TABLE IF NOT EXISTS entries("
    " id INTEGER PRIMARY KEY,"
    " op_key TEXT NOT NULL UNIQUE,"
    " kind INTEGER NOT NULL,"
    " account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " amount INTEGER NOT NULL, delta INTEGER NOT NULL, held_delta INTEGER NOT NULL,"
    " uncollected INTEGER NOT NULL, balance_after INTEGER NOT NULL, held_after INTEGER NOT NULL,"
    " hold_id INTEGER NOT NULL, ttl_ms INTEGER NOT NULL, created_ms INTEGER NOT NULL,"
    " prompt_id TEXT NOT NULL, node_id TEXT NOT NULL, node_class TEXT NOT NULL, model TEXT NOT NULL,"
    " tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL, images INTEGER NOT NULL,"
    " seconds_ms INTEGER NOT NULL,"
    " currency TEXT NOT NULL, amount_minor INTEGER NOT NULL, method TEXT NOT NULL,"
    " external_ref TEXT NOT NULL, note TEXT NOT NULL, test_after INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS entries_by_account ON entries(account_id, id);"
    "CREATE TABLE IF NOT EXISTS holds("
    " id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL, amount INTEGER NOT NULL,"
    " state INTEGER NOT NULL, expires_ms INTEGER NOT NULL, resolved_by INTEGER NOT NULL,"
    " credential_id INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS holds_open_by_expiry ON holds(expires_ms) WHERE state = 0;"
    "CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries"
    " BEGIN SELECT RAISE(ABORT, 'ledger entries are immutable'); END;"
    "CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries"
    " BEGIN SELECT RAISE(ABORT, 'ledger entries are immutable'); END;"
    "CREATE TRIGGER IF NOT EXISTS accounts_no_delete BEFORE DELETE ON accounts"
    " BEGIN SELECT RAISE(ABORT, 'accounts are never deleted; disable them'); END;"
    "CREATE TABLE IF NOT EXISTS credentials("
    " id INTEGER PRIMARY KEY, kind INTEGER NOT NULL, account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " hash BLOB NOT NULL UNIQUE, label TEXT NOT NULL, hint TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, revoked_ms INTEGER NOT NULL,"
    " cap_micro INTEGER NOT NULL DEFAULT -1, cap_used INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS credentials_by_account ON credentials(account_id, kind, id);"
    "CREATE TABLE IF NOT EXISTS passwords(account_id INTEGER PRIMARY KEY REFERENCES accounts(id),"
    " hash TEXT NOT NULL, updated_ms INTEGER NOT NULL);"
    /* Needs-attention purchases (attention.h); the same table comfy_credits_ext/attention.py kept
    ** in this file before, so a ledger that has one keeps its rows. */
    "CREATE TABLE IF NOT EXISTS purchase_attention("
    " session_id TEXT PRIMARY KEY, account_id INTEGER NOT NULL, currency TEXT NOT NULL,"
    " amount_minor INTEGER NOT NULL, credits_micro INTEGER NOT NULL, method TEXT NOT NULL,"
    " reason TEXT NOT NULL, first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL, reports INTEGER NOT NULL,"
    " resolved_ms INTEGER NOT NULL DEFAULT 0, resolution TEXT NOT NULL DEFAULT '');"
    "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', '" CC_SCHEMA_VERSION_TEXT "');";

#define ACCOUNT_COLS                                                           \
    "id, email, display_name, active, role, created_ms, updated_ms, balance, " \
    "held, paid_total, granted_total, spent_total, uncollected_total, test_balance, cap_daily, cap_monthly, " \
    "own_cap_daily, own_cap_monthly, cap_day, cap_day_used, cap_month, cap_month_used"
#define ENTRY_COLS                                                             \
    "id, op_key, kind, account_id, amount, delta, held_delta, uncollected, "   \
    "balance_after, held_after, hold_id, ttl_ms, created_ms, prompt_id, "      \
    "node_id, node_class, model, tokens_in, tokens_out, images, seconds_ms, "  \
    "currency, amount_minor, method, external_ref, note, test_after"
#define HOLD_COLS "id, account_id, amount, state, expires_ms, resolved_by, credential_id"
#define CRED_COLS "id, kind, account_id, hash, label, hint, created_ms, expires_ms, revoked_ms, cap_micro, cap_used"
#define ATT_COLS                                                                                       \
    "session_id, account_id, currency, amount_minor, credits_micro, method, reason, first_ms, last_ms, " \
    "reports, resolved_ms, resolution"

enum {
    ST_BEGIN_W, ST_COMMIT, ST_ROLLBACK, ST_BEGIN_R, ST_END_R, ST_DATA_VERSION,
    ST_ACC_INSERT, ST_ACC_GET, ST_ACC_BY_EMAIL, ST_ACC_UPDATE, ST_ACC_LIST,
    ST_ENT_BY_KEY, ST_ENT_GET, ST_ENT_INSERT,
    ST_HOLD_GET, ST_HOLD_INSERT, ST_HOLD_RESOLVE, ST_HOLD_EXTEND, ST_HOLDS_DUE,
    ST_SCAN_ACC, ST_SCAN_ENT, ST_SCAN_HOLD,
    ST_CRED_INSERT, ST_CRED_BY_HASH, ST_CRED_GET, ST_CRED_UPDATE, ST_CRED_REVOKE_ONE, ST_CRED_REVOKE_ALL, ST_CRED_LIST,
    ST_PW_SET, ST_PW_GET, ST_USAGE,
    ST_ATT_RECORD, ST_ATT_GET, ST_ATT_LIST_OPEN, ST_ATT_LIST_ALL, ST_ATT_RESOLVE,
    ST_COUNT
};

static const char *const STMT_SQL[ST_COUNT] = {
    [ST_BEGIN_W] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_BEGIN_R] = "BEGIN DEFERRED",
    [ST_END_R] = "COMMIT",
    [ST_DATA_VERSION] = "PRAGMA data_version",
    [ST_ACC_INSERT] =
        "INSERT INTO accounts(email, created_ms, display_name, active, role, updated_ms,"
        " balance, held, paid_total, granted_total, spent_total, uncollected_total, test_balance, cap_daily,"
        " cap_monthly, own_cap_daily, own_cap_monthly, cap_day, cap_day_used, cap_month, cap_month_used)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [ST_ACC_GET] = "SELECT " ACCOUNT_COLS " FROM accounts WHERE id = ?",
    [ST_ACC_BY_EMAIL] = "SELECT " ACCOUNT_COLS " FROM accounts WHERE email = ?",
    [ST_ACC_UPDATE] =
        "UPDATE accounts SET display_name=?, active=?, role=?, updated_ms=?, balance=?, held=?,"
        " paid_total=?, granted_total=?, spent_total=?, uncollected_total=?, test_balance=?, cap_daily=?,"
        " cap_monthly=?, own_cap_daily=?, own_cap_monthly=?, cap_day=?, cap_day_used=?, cap_month=?,"
        " cap_month_used=? WHERE id=?",
    [ST_ACC_LIST] = "SELECT " ACCOUNT_COLS " FROM accounts WHERE id > ? ORDER BY id LIMIT ?",
    [ST_ENT_BY_KEY] = "SELECT " ENTRY_COLS " FROM entries WHERE op_key = ?",
    [ST_ENT_GET] = "SELECT " ENTRY_COLS " FROM entries WHERE id = ?",
    [ST_ENT_INSERT] =
        "INSERT INTO entries(op_key, kind, account_id, amount, delta, held_delta, uncollected,"
        " balance_after, held_after, hold_id, ttl_ms, created_ms, prompt_id, node_id, node_class,"
        " model, tokens_in, tokens_out, images, seconds_ms, currency, amount_minor, method,"
        " external_ref, note, test_after) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [ST_HOLD_GET] = "SELECT " HOLD_COLS " FROM holds WHERE id = ?",
    [ST_HOLD_INSERT] = "INSERT INTO holds(" HOLD_COLS ") VALUES (?,?,?,?,?,?,?)",
    [ST_HOLD_RESOLVE] = "UPDATE holds SET state = ?, resolved_by = ? WHERE id = ? AND state = 0",
    [ST_HOLD_EXTEND] = "UPDATE holds SET expires_ms = ? WHERE id = ? AND state = 0 AND expires_ms < ?",
    [ST_HOLDS_DUE] =
        "SELECT id FROM holds WHERE state = 0 AND expires_ms <= ? ORDER BY expires_ms, id LIMIT ?",
    [ST_SCAN_ACC] = "SELECT " ACCOUNT_COLS " FROM accounts ORDER BY id",
    [ST_SCAN_ENT] = "SELECT " ENTRY_COLS " FROM entries ORDER BY account_id, id",
    [ST_SCAN_HOLD] = "SELECT " HOLD_COLS " FROM holds ORDER BY id",
    [ST_PW_SET] = "INSERT INTO passwords(account_id, hash, updated_ms) VALUES (?1, ?2, ?3)"
                  " ON CONFLICT(account_id) DO UPDATE SET hash = ?2, updated_ms = ?3",
    [ST_PW_GET] = "SELECT hash FROM passwords WHERE account_id = ?",
    [ST_USAGE] = "SELECT created_ms / 86400000 AS day, node_class, -SUM(delta), COUNT(*) FROM entries"
                 " WHERE account_id = ? AND kind = 4 AND created_ms >= ? AND created_ms < ?"
                 " GROUP BY day, node_class ORDER BY day, node_class LIMIT ?",
    [ST_CRED_INSERT] = "INSERT INTO credentials(kind, account_id, hash, label, hint, created_ms, expires_ms,"
                       " revoked_ms) VALUES (?,?,?,?,?,?,?,0)",
    [ST_CRED_BY_HASH] = "SELECT " CRED_COLS " FROM credentials WHERE hash = ?",
    [ST_CRED_GET] = "SELECT " CRED_COLS " FROM credentials WHERE id = ?",
    [ST_CRED_UPDATE] = "UPDATE credentials SET expires_ms = ?, cap_micro = ?, cap_used = ? WHERE id = ?",
    [ST_CRED_REVOKE_ONE] = "UPDATE credentials SET revoked_ms = ?1 WHERE id = ?2 AND account_id = ?3"
                           " AND kind = ?4 AND revoked_ms = 0",
    [ST_CRED_REVOKE_ALL] = "UPDATE credentials SET revoked_ms = ?1 WHERE account_id = ?3 AND kind = ?4"
                           " AND revoked_ms = 0",
    [ST_CRED_LIST] = "SELECT " CRED_COLS " FROM credentials WHERE account_id = ? AND kind = ? AND revoked_ms = 0"
                     " AND (expires_ms = 0 OR expires_ms > ?) ORDER BY id DESC LIMIT ?",
    [ST_ATT_RECORD] = "INSERT INTO purchase_attention(session_id, account_id, currency, amount_minor, credits_micro,"
                      " method, reason, first_ms, last_ms, reports) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?8,1)"
                      " ON CONFLICT(session_id) DO UPDATE SET reason = excluded.reason, last_ms = excluded.last_ms,"
                      " reports = reports + 1",
    [ST_ATT_GET] = "SELECT " ATT_COLS " FROM purchase_attention WHERE session_id = ?",
    [ST_ATT_LIST_OPEN] = "SELECT " ATT_COLS " FROM purchase_attention WHERE resolved_ms = 0"
                         " ORDER BY first_ms, session_id LIMIT ?",
    [ST_ATT_LIST_ALL] = "SELECT " ATT_COLS " FROM purchase_attention ORDER BY first_ms, session_id LIMIT ?",
    [ST_ATT_RESOLVE] = "UPDATE purchase_attention SET resolved_ms = ?, resolution = ? WHERE session_id = ?"
                       " AND resolved_ms = 0",
};

typedef struct sq_store {
    cc_store base;
    char *path;
    int busy_timeout_ms;
} sq_store;

typedef struct sq_conn {
    cc_conn base;
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    sqlite3_stmt *history; /* prepared per query shape; see sq_history */
    int64_t data_version;  /* last PRAGMA data_version seen; -1 = never */
    unsigned history_shape;
} sq_conn;

static cc_rc sq_err(sqlite3 *db, cc_error *err, const char *what) {
    return cc_fail(err, CC_ERR_STORAGE, "", "sqlite: %s: %s", what,
                   db ? sqlite3_errmsg(db) : "cannot open");
}

static sqlite3_stmt *stmt(sq_conn *c, int i) {
    sqlite3_stmt *s = c->st[i];
    CC_ASSERT(s != NULL);
    return s;
}

/* Runs a bound statement that returns no rows (INSERT, UPDATE, DELETE) and makes it ready for its next use:
** reset, and its bindings let go (bound text and blobs are the caller's, SQLITE_STATIC). CC_OK, or the
** storage error naming `what`. */
static cc_rc step_done(sq_conn *c, sqlite3_stmt *s, const char *what, cc_error *err) {
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? CC_OK : sq_err(c->db, err, what);
}

static cc_rc exec_simple(sq_conn *c, int i, cc_error *err) { return step_done(c, stmt(c, i), STMT_SQL[i], err); }

static void copy_text(char *dst, size_t cap, sqlite3_stmt *s, int col) {
    const unsigned char *t = sqlite3_column_text(s, col);
    int n = sqlite3_column_bytes(s, col);
    if (!t) { dst[0] = 0; return; }
    /* The ledger validated lengths on the way in; a longer value means the
    ** file was edited by hand. Truncating would hide it, so stop. */
    CC_ASSERT((size_t)n < cap);
    memcpy(dst, t, (size_t)n);
    dst[n] = 0;
}

static void read_account(sqlite3_stmt *s, void *out) {
    cc_account *a = out;
    a->id = sqlite3_column_int64(s, 0);
    copy_text(a->email, sizeof a->email, s, 1);
    copy_text(a->display_name, sizeof a->display_name, s, 2);
    a->active = sqlite3_column_int(s, 3);
    a->role = sqlite3_column_int(s, 4);
    a->created_ms = sqlite3_column_int64(s, 5);
    a->updated_ms = sqlite3_column_int64(s, 6);
    a->balance = sqlite3_column_int64(s, 7);
    a->held = sqlite3_column_int64(s, 8);
    a->paid_total = sqlite3_column_int64(s, 9);
    a->granted_total = sqlite3_column_int64(s, 10);
    a->spent_total = sqlite3_column_int64(s, 11);
    a->uncollected_total = sqlite3_column_int64(s, 12);
    a->test_balance = sqlite3_column_int64(s, 13);
    int64_t *caps[] = {&a->cap_daily, &a->cap_monthly, &a->own_cap_daily, &a->own_cap_monthly,
                       &a->cap_day, &a->cap_day_used, &a->cap_month, &a->cap_month_used};
    for (int i = 0; i < 8; i++) *caps[i] = sqlite3_column_int64(s, 14 + i);
}

/* The account row's changeable columns, display_name .. cap_month_used (19 parameters from `first`), in the
** order ST_ACC_INSERT (after email, created_ms) and ST_ACC_UPDATE (before id) name them. */
static void bind_account_row(sqlite3_stmt *s, int first, const cc_account *a) {
    sqlite3_bind_text(s, first, a->display_name, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, first + 1, a->active);
    sqlite3_bind_int(s, first + 2, a->role);
    const int64_t v[] = {a->updated_ms, a->balance, a->held, a->paid_total, a->granted_total, a->spent_total,
                         a->uncollected_total, a->test_balance, a->cap_daily, a->cap_monthly, a->own_cap_daily,
                         a->own_cap_monthly, a->cap_day, a->cap_day_used, a->cap_month, a->cap_month_used};
    for (int i = 0; i < 16; i++) sqlite3_bind_int64(s, first + 3 + i, v[i]);
}

static void read_entry(sqlite3_stmt *s, void *out) {
    cc_entry *e = out;
    e->id = sqlite3_column_int64(s, 0);
    copy_text(e->key, sizeof e->key, s, 1);
    e->kind = sqlite3_column_int(s, 2);
    e->account_id = sqlite3_column_int64(s, 3);
    e->amount = sqlite3_column_int64(s, 4);
    e->delta = sqlite3_column_int64(s, 5);
    e->held_delta = sqlite3_column_int64(s, 6);
    e->uncollected = sqlite3_column_int64(s, 7);
    e->balance_after = sqlite3_column_int64(s, 8);
    e->held_after = sqlite3_column_int64(s, 9);
    e->hold_id = sqlite3_column_int64(s, 10);
    e->ttl_ms = sqlite3_column_int64(s, 11);
    e->created_ms = sqlite3_column_int64(s, 12);
    copy_text(e->prompt_id, sizeof e->prompt_id, s, 13);
    copy_text(e->node_id, sizeof e->node_id, s, 14);
    copy_text(e->node_class, sizeof e->node_class, s, 15);
    copy_text(e->model, sizeof e->model, s, 16);
    e->tokens_in = sqlite3_column_int64(s, 17);
    e->tokens_out = sqlite3_column_int64(s, 18);
    e->images = sqlite3_column_int64(s, 19);
    e->seconds_ms = sqlite3_column_int64(s, 20);
    copy_text(e->currency, sizeof e->currency, s, 21);
    e->amount_minor = sqlite3_column_int64(s, 22);
    copy_text(e->method, sizeof e->method, s, 23);
    copy_text(e->external_ref, sizeof e->external_ref, s, 24);
    copy_text(e->note, sizeof e->note, s, 25);
    e->test_after = sqlite3_column_int64(s, 26);
}

static void read_hold(sqlite3_stmt *s, void *out) {
    cc_hold *h = out;
    h->id = sqlite3_column_int64(s, 0);
    h->account_id = sqlite3_column_int64(s, 1);
    h->amount = sqlite3_column_int64(s, 2);
    h->state = sqlite3_column_int(s, 3);
    h->expires_ms = sqlite3_column_int64(s, 4);
    h->resolved_by = sqlite3_column_int64(s, 5);
    h->credential_id = sqlite3_column_int64(s, 6);
}

/* The one row a bound statement returns, read into out by read, then the statement made ready for its
** next use (reset, bindings let go). CC_OK; CC_ERR_NOT_FOUND when there is no row, err left to the
** caller, which says what was not found; or the storage error naming `what`. */
static cc_rc one_row(sq_conn *c, sqlite3_stmt *s, void (*read)(sqlite3_stmt *, void *), void *out, const char *what,
                     cc_error *err) {
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) read(s, out);
    cc_rc r = rc == SQLITE_ROW ? CC_OK : rc == SQLITE_DONE ? CC_ERR_NOT_FOUND : sq_err(c->db, err, what);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return r;
}

/* The row of statement i whose ?1 is id, read into out by read; CC_ERR_NOT_FOUND "no <noun> with id N" on
** field when there is none. */
static cc_rc row_by_id(sq_conn *c, int i, int64_t id, void (*read)(sqlite3_stmt *, void *), void *out,
                       const char *field, const char *noun, cc_error *err) {
    sqlite3_stmt *s = stmt(c, i);
    sqlite3_bind_int64(s, 1, id);
    char what[48];
    snprintf(what, sizeof what, "get %s", noun);
    cc_rc r = one_row(c, s, read, out, what, err);
    return r == CC_ERR_NOT_FOUND ? cc_fail(err, r, field, "no %s with id %lld", noun, (long long)id) : r;
}

static void sq_close(cc_conn *base) {
    sq_conn *c = (sq_conn *)base;
    if (!c) return;
    for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(c->st[i]);
    sqlite3_finalize(c->history);
    sqlite3_close(c->db);
    free(c);
}

static cc_rc sq_begin_write(cc_conn *b, cc_error *err) { return exec_simple((sq_conn *)b, ST_BEGIN_W, err); }
static cc_rc sq_commit(cc_conn *b, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    cc_rc rc = exec_simple(c, ST_COMMIT, err);
    if (rc != CC_OK && !sqlite3_get_autocommit(c->db)) {
        /* COMMIT failed (e.g. disk full): leave no transaction open. */
        sqlite3_stmt *s = stmt(c, ST_ROLLBACK);
        sqlite3_step(s);
        sqlite3_reset(s);
    }
    return rc;
}
static void sq_rollback(cc_conn *b) {
    sq_conn *c = (sq_conn *)b;
    if (sqlite3_get_autocommit(c->db)) return;
    sqlite3_stmt *s = stmt(c, ST_ROLLBACK);
    sqlite3_step(s);
    sqlite3_reset(s);
}
static cc_rc sq_data_changed(cc_conn *b, int *changed, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_DATA_VERSION);
    int rc = sqlite3_step(s);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW) return sq_err(c->db, err, "data_version");
    *changed = v != c->data_version;
    c->data_version = v;
    return CC_OK;
}

static cc_rc sq_begin_read(cc_conn *b, cc_error *err) { return exec_simple((sq_conn *)b, ST_BEGIN_R, err); }
static void sq_end_read(cc_conn *b) {
    sq_conn *c = (sq_conn *)b;
    if (sqlite3_get_autocommit(c->db)) return;
    sqlite3_stmt *s = stmt(c, ST_END_R);
    sqlite3_step(s);
    sqlite3_reset(s);
}

static cc_rc sq_account_insert(cc_conn *b, cc_account *a, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_ACC_INSERT);
    sqlite3_bind_text(s, 1, a->email, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, a->created_ms);
    bind_account_row(s, 3, a);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc == SQLITE_CONSTRAINT)
        return cc_fail(err, CC_ERR_EXISTS, "email", "an account with email '%s' already exists",
                       a->email);
    if (rc != SQLITE_DONE) return sq_err(c->db, err, "insert account");
    a->id = sqlite3_last_insert_rowid(c->db);
    return CC_OK;
}

static cc_rc account_one(sq_conn *c, sqlite3_stmt *s, cc_account *out, cc_error *err,
                         const char *what) {
    cc_rc r = one_row(c, s, read_account, out, what, err);
    return r == CC_ERR_NOT_FOUND ? cc_fail(err, r, "account", "no such account") : r;
}

static cc_rc sq_account_get(cc_conn *b, int64_t id, cc_account *out, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_ACC_GET);
    sqlite3_bind_int64(s, 1, id);
    return account_one(c, s, out, err, "get account");
}

static cc_rc sq_account_by_email(cc_conn *b, const char *email, cc_account *out, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_ACC_BY_EMAIL);
    sqlite3_bind_text(s, 1, email, -1, SQLITE_STATIC);
    return account_one(c, s, out, err, "find account");
}

static cc_rc sq_account_update(cc_conn *b, const cc_account *a, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_ACC_UPDATE);
    bind_account_row(s, 1, a);
    sqlite3_bind_int64(s, 20, a->id);
    cc_rc r = step_done(c, s, "update account", err);
    if (r != CC_OK) return r;
    if (sqlite3_changes(c->db) != 1)
        return cc_fail(err, CC_ERR_NOT_FOUND, "account", "no such account");
    return CC_OK;
}

static cc_rc sq_account_list(cc_conn *b, int64_t after_id, int limit, cc_account *out,
                             int *n_out, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_ACC_LIST);
    sqlite3_bind_int64(s, 1, after_id);
    sqlite3_bind_int(s, 2, limit);
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < limit) read_account(s, &out[n++]);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return sq_err(c->db, err, "list accounts");
    *n_out = n;
    return CC_OK;
}

static cc_rc sq_entry_by_key(cc_conn *b, const char *key, cc_entry *out, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_ENT_BY_KEY);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    cc_rc r = one_row(c, s, read_entry, out, "find entry", err);
    return r == CC_ERR_NOT_FOUND ? cc_fail(err, r, "key", "no entry with that key") : r;
}

static cc_rc sq_entry_get(cc_conn *b, int64_t id, cc_entry *out, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_ENT_GET);
    sqlite3_bind_int64(s, 1, id);
    cc_rc r = one_row(c, s, read_entry, out, "get entry", err);
    return r == CC_ERR_NOT_FOUND ? cc_fail(err, r, "entry_id", "no entry %lld", (long long)id) : r;
}

static cc_rc sq_entry_insert(cc_conn *b, cc_entry *e, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_ENT_INSERT);
    int i = 1;
    sqlite3_bind_text(s, i++, e->key, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, i++, e->kind);
    sqlite3_bind_int64(s, i++, e->account_id);
    sqlite3_bind_int64(s, i++, e->amount);
    sqlite3_bind_int64(s, i++, e->delta);
    sqlite3_bind_int64(s, i++, e->held_delta);
    sqlite3_bind_int64(s, i++, e->uncollected);
    sqlite3_bind_int64(s, i++, e->balance_after);
    sqlite3_bind_int64(s, i++, e->held_after);
    sqlite3_bind_int64(s, i++, e->hold_id);
    sqlite3_bind_int64(s, i++, e->ttl_ms);
    sqlite3_bind_int64(s, i++, e->created_ms);
    sqlite3_bind_text(s, i++, e->prompt_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, i++, e->node_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, i++, e->node_class, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, i++, e->model, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, i++, e->tokens_in);
    sqlite3_bind_int64(s, i++, e->tokens_out);
    sqlite3_bind_int64(s, i++, e->images);
    sqlite3_bind_int64(s, i++, e->seconds_ms);
    sqlite3_bind_text(s, i++, e->currency, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, i++, e->amount_minor);
    sqlite3_bind_text(s, i++, e->method, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, i++, e->external_ref, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, i++, e->note, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, i++, e->test_after);
    int rc = sqlite3_step(s);
    int xrc = sqlite3_extended_errcode(c->db);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc == SQLITE_CONSTRAINT && xrc == SQLITE_CONSTRAINT_UNIQUE)
        return cc_fail(err, CC_ERR_EXISTS, "key", "idempotency key '%.64s' is taken", e->key);
    if (rc != SQLITE_DONE) return sq_err(c->db, err, "insert entry");
    e->id = sqlite3_last_insert_rowid(c->db);
    return CC_OK;
}

/* History statements differ by which filters are present; each shape is
** prepared when first needed (the last one is cached: pages of one listing
** share a shape). */
static cc_rc sq_history(cc_conn *b, const cc_history_query *q, cc_entry *out, int *n_out,
                        cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    CC_ASSERT(q->limit >= 1 && q->limit <= CC_HISTORY_PAGE_MAX);
    unsigned shape = (q->before_id > 0) | (q->kinds_mask ? 2u : 0u) | (q->since_ms ? 4u : 0u) |
                     (q->until_ms ? 8u : 0u) | 16u;
    if (c->history_shape != shape) {
        char sql[512];
        int n = snprintf(sql, sizeof sql, "SELECT " ENTRY_COLS " FROM entries WHERE account_id = ?1%s%s%s%s"
                         " ORDER BY id DESC LIMIT ?6",
                         (shape & 1) ? " AND id < ?2" : "",
                         (shape & 2) ? " AND ((1 << kind) & ?3) != 0" : "",
                         (shape & 4) ? " AND created_ms >= ?4" : "",
                         (shape & 8) ? " AND created_ms < ?5" : "");
        CC_ASSERT(n > 0 && (size_t)n < sizeof sql);
        sqlite3_finalize(c->history);
        c->history = NULL;
        c->history_shape = 0;
        if (sqlite3_prepare_v2(c->db, sql, -1, &c->history, NULL) != SQLITE_OK)
            return sq_err(c->db, err, "prepare history");
        c->history_shape = shape;
    }
    sqlite3_stmt *s = c->history;
    sqlite3_bind_int64(s, 1, q->account_id);
    if (shape & 1) sqlite3_bind_int64(s, 2, q->before_id);
    if (shape & 2) sqlite3_bind_int64(s, 3, (sqlite3_int64)q->kinds_mask);
    if (shape & 4) sqlite3_bind_int64(s, 4, q->since_ms);
    if (shape & 8) sqlite3_bind_int64(s, 5, q->until_ms);
    sqlite3_bind_int(s, 6, q->limit);
    int n = 0, rc = SQLITE_DONE;
    while (n < q->limit && (rc = sqlite3_step(s)) == SQLITE_ROW) read_entry(s, &out[n++]);
    if (n == q->limit) rc = SQLITE_DONE;
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE) return sq_err(c->db, err, "history");
    *n_out = n;
    return CC_OK;
}

static cc_rc sq_hold_get(cc_conn *b, int64_t id, cc_hold *out, cc_error *err) {
    return row_by_id((sq_conn *)b, ST_HOLD_GET, id, read_hold, out, "hold_id", "hold", err);
}

static cc_rc sq_hold_insert(cc_conn *b, const cc_hold *h, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_HOLD_INSERT);
    sqlite3_bind_int64(s, 1, h->id);
    sqlite3_bind_int64(s, 2, h->account_id);
    sqlite3_bind_int64(s, 3, h->amount);
    sqlite3_bind_int(s, 4, h->state);
    sqlite3_bind_int64(s, 5, h->expires_ms);
    sqlite3_bind_int64(s, 6, h->resolved_by);
    sqlite3_bind_int64(s, 7, h->credential_id);
    return step_done(c, s, "insert hold", err);
}

static cc_rc sq_hold_resolve(cc_conn *b, int64_t id, int state, int64_t by_entry, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_HOLD_RESOLVE);
    sqlite3_bind_int(s, 1, state);
    sqlite3_bind_int64(s, 2, by_entry);
    sqlite3_bind_int64(s, 3, id);
    cc_rc r = step_done(c, s, "resolve hold", err);
    if (r != CC_OK) return r;
    /* The WHERE state = 0 makes "resolves at most once" hold in storage too. */
    if (sqlite3_changes(c->db) != 1)
        return cc_fail(err, CC_ERR_STATE, "hold_id", "hold %lld is not open", (long long)id);
    return CC_OK;
}

static cc_rc sq_hold_extend(cc_conn *b, int64_t id, int64_t expires_ms, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_HOLD_EXTEND);
    sqlite3_bind_int64(s, 1, expires_ms);
    sqlite3_bind_int64(s, 2, id);
    sqlite3_bind_int64(s, 3, expires_ms);
    return step_done(c, s, "extend hold", err);
}

static cc_rc sq_holds_due(cc_conn *b, int64_t now_ms, int limit, int64_t *ids, int *n_out,
                          cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_HOLDS_DUE);
    sqlite3_bind_int64(s, 1, now_ms);
    sqlite3_bind_int(s, 2, limit);
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < limit) ids[n++] = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return sq_err(c->db, err, "due holds");
    *n_out = n;
    return CC_OK;
}

static cc_rc sq_scan_accounts(cc_conn *b, cc_account_cb cb, void *ctx, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_SCAN_ACC);
    cc_account a;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        read_account(s, &a);
        if (cb(ctx, &a)) { rc = SQLITE_DONE; break; }
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? CC_OK : sq_err(c->db, err, "scan accounts");
}

static cc_rc sq_scan_entries(cc_conn *b, cc_entry_cb cb, void *ctx, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_SCAN_ENT);
    cc_entry *e = malloc(sizeof *e);
    if (!e) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        read_entry(s, e);
        if (cb(ctx, e)) { rc = SQLITE_DONE; break; }
    }
    sqlite3_reset(s);
    free(e);
    return rc == SQLITE_DONE ? CC_OK : sq_err(c->db, err, "scan entries");
}

static cc_rc sq_scan_holds(cc_conn *b, cc_hold_cb cb, void *ctx, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_SCAN_HOLD);
    cc_hold h;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        read_hold(s, &h);
        if (cb(ctx, &h)) { rc = SQLITE_DONE; break; }
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? CC_OK : sq_err(c->db, err, "scan holds");
}

static void read_cred(sqlite3_stmt *s, void *out) {
    cc_credential *c = out;
    c->id = sqlite3_column_int64(s, 0);
    c->kind = sqlite3_column_int(s, 1);
    c->account_id = sqlite3_column_int64(s, 2);
    const void *h = sqlite3_column_blob(s, 3);
    CC_ASSERT(sqlite3_column_bytes(s, 3) == CC_CRED_HASH_BYTES && h);
    memcpy(c->hash, h, CC_CRED_HASH_BYTES);
    copy_text(c->label, sizeof c->label, s, 4);
    copy_text(c->hint, sizeof c->hint, s, 5);
    c->created_ms = sqlite3_column_int64(s, 6);
    c->expires_ms = sqlite3_column_int64(s, 7);
    c->revoked_ms = sqlite3_column_int64(s, 8);
    c->cap_micro = sqlite3_column_int64(s, 9);
    c->cap_used = sqlite3_column_int64(s, 10);
}

static cc_rc sq_cred_insert(cc_conn *b, cc_credential *cr, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_CRED_INSERT);
    sqlite3_bind_int(s, 1, cr->kind);
    sqlite3_bind_int64(s, 2, cr->account_id);
    sqlite3_bind_blob(s, 3, cr->hash, CC_CRED_HASH_BYTES, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, cr->label, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, cr->hint, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, cr->created_ms);
    sqlite3_bind_int64(s, 7, cr->expires_ms);
    cc_rc r = step_done(c, s, "insert credential", err);
    if (r != CC_OK) return r;
    cr->id = sqlite3_last_insert_rowid(c->db);
    return CC_OK;
}

static cc_rc sq_cred_by_hash(cc_conn *b, const unsigned char *hash, cc_credential *out, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_CRED_BY_HASH);
    sqlite3_bind_blob(s, 1, hash, CC_CRED_HASH_BYTES, SQLITE_STATIC);
    cc_rc r = one_row(c, s, read_cred, out, "find credential", err);
    return r == CC_ERR_NOT_FOUND ? cc_fail(err, r, "token", "unknown credential") : r;
}

static cc_rc sq_cred_get(cc_conn *b, int64_t id, cc_credential *out, cc_error *err) {
    return row_by_id((sq_conn *)b, ST_CRED_GET, id, read_cred, out, "id", "credential", err);
}

static cc_rc sq_cred_update(cc_conn *b, const cc_credential *cr, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_CRED_UPDATE);
    sqlite3_bind_int64(s, 1, cr->expires_ms);
    sqlite3_bind_int64(s, 2, cr->cap_micro);
    sqlite3_bind_int64(s, 3, cr->cap_used);
    sqlite3_bind_int64(s, 4, cr->id);
    cc_rc r = step_done(c, s, "update credential", err);
    if (r != CC_OK) return r;
    if (sqlite3_changes(c->db) != 1)
        return cc_fail(err, CC_ERR_STORAGE, "id", "credential %lld vanished while updating it", (long long)cr->id);
    return CC_OK;
}

static cc_rc sq_cred_revoke(cc_conn *b, int64_t id, int64_t account_id, int kind, int64_t now_ms, int *count,
                            cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, id > 0 ? ST_CRED_REVOKE_ONE : ST_CRED_REVOKE_ALL);
    sqlite3_bind_int64(s, 1, now_ms);
    if (id > 0) sqlite3_bind_int64(s, 2, id);
    sqlite3_bind_int64(s, 3, account_id);
    sqlite3_bind_int(s, 4, kind);
    cc_rc r = step_done(c, s, "revoke credential", err);
    if (r != CC_OK) return r;
    *count = sqlite3_changes(c->db);
    return CC_OK;
}

static cc_rc sq_cred_list(cc_conn *b, int64_t account_id, int kind, int64_t now_ms, cc_credential *out, int cap,
                          int *n_out, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_CRED_LIST);
    sqlite3_bind_int64(s, 1, account_id);
    sqlite3_bind_int(s, 2, kind);
    sqlite3_bind_int64(s, 3, now_ms);
    sqlite3_bind_int(s, 4, cap);
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < cap) read_cred(s, &out[n++]);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return sq_err(c->db, err, "list credentials");
    *n_out = n;
    return CC_OK;
}

static cc_rc sq_password_set(cc_conn *b, int64_t account_id, const char *encoded, int64_t now_ms, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_PW_SET);
    sqlite3_bind_int64(s, 1, account_id);
    sqlite3_bind_text(s, 2, encoded, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now_ms);
    return step_done(c, s, "set password", err);
}

static cc_rc sq_password_get(cc_conn *b, int64_t account_id, char *out, size_t out_bytes, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_PW_GET);
    sqlite3_bind_int64(s, 1, account_id);
    int rc = sqlite3_step(s);
    cc_rc r = CC_OK;
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        int n = sqlite3_column_bytes(s, 0);
        if (!t || (size_t)n >= out_bytes) r = cc_fail(err, CC_ERR_STORAGE, "", "stored password hash is malformed");
        else {
            memcpy(out, t, (size_t)n);
            out[n] = 0;
        }
    } else if (rc == SQLITE_DONE) {
        r = cc_fail(err, CC_ERR_NOT_FOUND, "password", "no password is set");
    } else {
        r = sq_err(c->db, err, "get password");
    }
    sqlite3_reset(s);
    return r;
}

static cc_rc sq_usage_summary(cc_conn *b, int64_t account_id, int64_t since_ms, int64_t until_ms, cc_usage_row *out,
                              int cap, int *n_out, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_USAGE);
    sqlite3_bind_int64(s, 1, account_id);
    sqlite3_bind_int64(s, 2, since_ms);
    sqlite3_bind_int64(s, 3, until_ms);
    sqlite3_bind_int(s, 4, cap);
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < cap) {
        out[n].day = sqlite3_column_int64(s, 0);
        copy_text(out[n].node_class, sizeof out[n].node_class, s, 1);
        out[n].charged = sqlite3_column_int64(s, 2);
        out[n].runs = sqlite3_column_int64(s, 3);
        n++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return sq_err(c->db, err, "usage summary");
    *n_out = n;
    return CC_OK;
}

/* ---- needs-attention purchases */

/* Rows written by attention.py before this table moved behind store.h may be
** longer than attention.c now allows: operator notes, shown cut, never asserted on. */
static void copy_cut(char *dst, size_t cap, sqlite3_stmt *s, int col) {
    const unsigned char *t = sqlite3_column_text(s, col);
    size_t n = t ? (size_t)sqlite3_column_bytes(s, col) : 0;
    if (n >= cap) n = cap - 1;
    if (n) memcpy(dst, t, n);
    dst[n] = 0;
}

static void read_attention(sqlite3_stmt *s, void *out) {
    cc_attention *a = out;
    copy_cut(a->session_id, sizeof a->session_id, s, 0);
    a->account_id = sqlite3_column_int64(s, 1);
    copy_cut(a->currency, sizeof a->currency, s, 2);
    a->amount_minor = sqlite3_column_int64(s, 3);
    a->credits_micro = sqlite3_column_int64(s, 4);
    copy_cut(a->method, sizeof a->method, s, 5);
    copy_cut(a->reason, sizeof a->reason, s, 6);
    a->first_ms = sqlite3_column_int64(s, 7);
    a->last_ms = sqlite3_column_int64(s, 8);
    a->reports = sqlite3_column_int64(s, 9);
    a->resolved_ms = sqlite3_column_int64(s, 10);
    copy_cut(a->resolution, sizeof a->resolution, s, 11);
}

static cc_rc sq_attention_record(cc_conn *b, const cc_attention *a, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_ATT_RECORD);
    sqlite3_bind_text(s, 1, a->session_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, a->account_id);
    sqlite3_bind_text(s, 3, a->currency, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, a->amount_minor);
    sqlite3_bind_int64(s, 5, a->credits_micro);
    sqlite3_bind_text(s, 6, a->method, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, a->reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 8, a->last_ms);
    return step_done(c, s, "record needs-attention purchase", err);
}

static cc_rc sq_attention_get(cc_conn *b, const char *session_id, cc_attention *out, cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_ATT_GET);
    sqlite3_bind_text(s, 1, session_id, -1, SQLITE_STATIC);
    cc_rc r = one_row(c, s, read_attention, out, "get needs-attention purchase", err);
    return r == CC_ERR_NOT_FOUND ? cc_fail(err, r, "session_id", "no needs-attention purchase %.80s", session_id) : r;
}

static cc_rc sq_attention_list(cc_conn *b, int include_resolved, cc_attention *out, int cap, int *n_out,
                               cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, include_resolved ? ST_ATT_LIST_ALL : ST_ATT_LIST_OPEN);
    sqlite3_bind_int(s, 1, cap);
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < cap) read_attention(s, &out[n++]);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return sq_err(c->db, err, "list needs-attention purchases");
    *n_out = n;
    return CC_OK;
}

static cc_rc sq_attention_resolve(cc_conn *b, const char *session_id, const char *note, int64_t now_ms, int *changed,
                                  cc_error *err) {
    sq_conn *c = (sq_conn *)b;
    sqlite3_stmt *s = stmt(c, ST_ATT_RESOLVE);
    sqlite3_bind_int64(s, 1, now_ms);
    sqlite3_bind_text(s, 2, note, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, session_id, -1, SQLITE_STATIC);
    cc_rc r = step_done(c, s, "resolve needs-attention purchase", err);
    if (r != CC_OK) return r;
    *changed = sqlite3_changes(c->db);
    return CC_OK;
}

static const cc_conn_vtab SQ_CONN_VTAB = {
    .close = sq_close,
    .begin_write = sq_begin_write,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .data_changed = sq_data_changed,
    .begin_read = sq_begin_read,
    .end_read = sq_end_read,
    .account_insert = sq_account_insert,
    .account_get = sq_account_get,
    .account_by_email = sq_account_by_email,
    .account_update = sq_account_update,
    .account_list = sq_account_list,
    .entry_by_key = sq_entry_by_key,
    .entry_get = sq_entry_get,
    .entry_insert = sq_entry_insert,
    .history = sq_history,
    .hold_get = sq_hold_get,
    .hold_insert = sq_hold_insert,
    .hold_resolve = sq_hold_resolve,
    .hold_extend = sq_hold_extend,
    .holds_due = sq_holds_due,
    .cred_insert = sq_cred_insert,
    .cred_by_hash = sq_cred_by_hash,
    .cred_get = sq_cred_get,
    .cred_update = sq_cred_update,
    .cred_revoke = sq_cred_revoke,
    .cred_list = sq_cred_list,
    .usage_summary = sq_usage_summary,
    .password_set = sq_password_set,
    .password_get = sq_password_get,
    .attention_record = sq_attention_record,
    .attention_get = sq_attention_get,
    .attention_list = sq_attention_list,
    .attention_resolve = sq_attention_resolve,
    .scan_accounts = sq_scan_accounts,
    .scan_entries = sq_scan_entries,
    .scan_holds = sq_scan_holds,
};

/* Ledgers made before TEST credits existed gain their two columns (0 = none). */
static int has_column(sqlite3 *db, const char *table, const char *col) {
    sqlite3_stmt *s = NULL;
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT 1 FROM pragma_table_info('%s') WHERE name = '%s'", table, col);
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) return -1;
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static int sq_migrate(sqlite3 *db, char **msg) {
    static const char *const add[][3] = {
        {"accounts", "test_balance", "ALTER TABLE accounts ADD COLUMN test_balance INTEGER NOT NULL DEFAULT 0"},
        {"entries", "test_after", "ALTER TABLE entries ADD COLUMN test_after INTEGER NOT NULL DEFAULT 0"},
        {"accounts", "cap_daily", "ALTER TABLE accounts ADD COLUMN cap_daily INTEGER NOT NULL DEFAULT -1"},
        {"accounts", "cap_monthly", "ALTER TABLE accounts ADD COLUMN cap_monthly INTEGER NOT NULL DEFAULT -1"},
        {"accounts", "own_cap_daily", "ALTER TABLE accounts ADD COLUMN own_cap_daily INTEGER NOT NULL DEFAULT -1"},
        {"accounts", "own_cap_monthly", "ALTER TABLE accounts ADD COLUMN own_cap_monthly INTEGER NOT NULL DEFAULT -1"},
        {"accounts", "cap_day", "ALTER TABLE accounts ADD COLUMN cap_day INTEGER NOT NULL DEFAULT 0"},
        {"accounts", "cap_day_used", "ALTER TABLE accounts ADD COLUMN cap_day_used INTEGER NOT NULL DEFAULT 0"},
        {"accounts", "cap_month", "ALTER TABLE accounts ADD COLUMN cap_month INTEGER NOT NULL DEFAULT 0"},
        {"accounts", "cap_month_used", "ALTER TABLE accounts ADD COLUMN cap_month_used INTEGER NOT NULL DEFAULT 0"},
        {"holds", "credential_id", "ALTER TABLE holds ADD COLUMN credential_id INTEGER NOT NULL DEFAULT 0"},
        {"credentials", "cap_micro", "ALTER TABLE credentials ADD COLUMN cap_micro INTEGER NOT NULL DEFAULT -1"},
        {"credentials", "cap_used", "ALTER TABLE credentials ADD COLUMN cap_used INTEGER NOT NULL DEFAULT 0"},
    };
    for (size_t i = 0; i < sizeof add / sizeof add[0]; i++) {
        int h = has_column(db, add[i][0], add[i][1]);
        if (h < 0) return SQLITE_ERROR;
        if (!h) {
            int rc = sqlite3_exec(db, add[i][2], NULL, NULL, msg);
            if (rc != SQLITE_OK) return rc;
        }
    }
    /* The ledger now has this build's schema: older builds must not write to it. */
    return sqlite3_exec(db, "UPDATE meta SET value = '" CC_SCHEMA_VERSION_TEXT "' WHERE key = 'schema_version' "
                            "AND CAST(value AS INTEGER) < " CC_SCHEMA_VERSION_TEXT, NULL, NULL, msg);
}

/* A ledger written by a newer comfy-credits is refused before anything is
** written to it: this build would not know its rules. */
static cc_rc check_schema_version(sqlite3 *db, const char *path, cc_error *err) {
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema_version'", -1, &s, NULL) != SQLITE_OK) {
        sqlite3_finalize(s);
        return CC_OK; /* no meta table yet: a new ledger */
    }
    cc_rc r = CC_OK;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(s, 0);
        char *end = NULL;
        long long ver = v ? strtoll(v, &end, 10) : -1;
        if (!v || end == v || *end != '\0' || ver < 1)
            r = cc_fail(err, CC_ERR_STORAGE, "path", "ledger '%s' has an unreadable schema_version '%s'", path,
                        v ? v : "");
        else if (ver > CC_SCHEMA_VERSION)
            r = cc_fail(err, CC_ERR_STORAGE, "path",
                        "ledger '%s' was written by a newer comfy-credits (schema version %lld; this version "
                        "understands up to %d). Upgrade comfy-credits; the ledger was not changed.",
                        path, ver, CC_SCHEMA_VERSION);
    } else if (rc != SQLITE_DONE) {
        r = sq_err(db, err, "read schema version");
    }
    sqlite3_finalize(s);
    return r;
}

static cc_rc sq_connect(cc_store *base, int writer, cc_conn **out, cc_error *err) {
    sq_store *st = (sq_store *)base;
    sq_conn *c = calloc(1, sizeof *c);
    if (!c) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    c->base.v = &SQ_CONN_VTAB;
    c->data_version = -1;
    /* NOMUTEX: the ledger guarantees one thread per connection at a time. */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(st->path, &c->db, flags, NULL) != SQLITE_OK) {
        cc_rc r = cc_fail(err, CC_ERR_STORAGE, "path", "cannot open database '%s': %s", st->path,
                          c->db ? sqlite3_errmsg(c->db) : "out of memory");
        sq_close(&c->base);
        return r;
    }
    sqlite3_busy_timeout(c->db, st->busy_timeout_ms);
    sqlite3_extended_result_codes(c->db, 0);
    char *msg = NULL;
    const char *pragmas = writer
        ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-16384;"
        : "PRAGMA synchronous=FULL; PRAGMA query_only=ON;";
    if (sqlite3_exec(c->db, pragmas, NULL, NULL, &msg) != SQLITE_OK) {
        cc_rc r = cc_fail(err, CC_ERR_STORAGE, "path", "cannot configure database '%s': %s",
                          st->path, msg ? msg : "?");
        sqlite3_free(msg);
        sq_close(&c->base);
        return r;
    }
    if (writer) {
        cc_rc r = check_schema_version(c->db, st->path, err);
        if (r != CC_OK) {
            sq_close(&c->base);
            return r;
        }
    }
    if (writer && sqlite3_exec(c->db, SCHEMA_SQL, NULL, NULL, &msg) != SQLITE_OK) {
        cc_rc r = cc_fail(err, CC_ERR_STORAGE, "path", "cannot create schema in '%s': %s",
                          st->path, msg ? msg : "?");
        sqlite3_free(msg);
        sq_close(&c->base);
        return r;
    }
    if (writer && sq_migrate(c->db, &msg) != SQLITE_OK) {
        cc_rc r = cc_fail(err, CC_ERR_STORAGE, "path", "cannot upgrade the schema of '%s': %s",
                          st->path, msg ? msg : sqlite3_errmsg(c->db));
        sqlite3_free(msg);
        sq_close(&c->base);
        return r;
    }
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(c->db, STMT_SQL[i], -1, SQLITE_PREPARE_PERSISTENT, &c->st[i],
                               NULL) != SQLITE_OK) {
            cc_rc r = cc_fail(err, CC_ERR_STORAGE, "path",
                              "database '%s' is not a comfy-credits ledger (%s)", st->path,
                              sqlite3_errmsg(c->db));
            sq_close(&c->base);
            return r;
        }
    }
    *out = &c->base;
    return CC_OK;
}

static void sq_store_close(cc_store *base) {
    sq_store *st = (sq_store *)base;
    if (!st) return;
    free(st->path);
    free(st);
}

static const cc_store_vtab SQ_STORE_VTAB = {.connect = sq_connect, .close = sq_store_close};

cc_rc cc_store_sqlite_open(const char *path, int busy_timeout_ms, cc_store **out, cc_error *err) {
    *out = NULL;
    if (!path || !*path) return cc_fail(err, CC_ERR_INVALID, "path", "database path is empty");
    if (strcmp(path, ":memory:") == 0 || strncmp(path, "file:", 5) == 0)
        return cc_fail(err, CC_ERR_INVALID, "path",
                       "database path must be a file (the ledger uses several connections)");
    if (busy_timeout_ms < 0 || busy_timeout_ms > 600000)
        return cc_fail(err, CC_ERR_INVALID, "busy_timeout_ms", "busy timeout must be 0..600000 ms");
    if (!sqlite3_threadsafe())
        return cc_fail(err, CC_ERR_STORAGE, "", "SQLite was built without thread support");
    sq_store *st = calloc(1, sizeof *st);
    if (!st) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    st->path = strdup(path);
    if (!st->path) { free(st); return cc_fail(err, CC_ERR_NOMEM, "", "out of memory"); }
    st->busy_timeout_ms = busy_timeout_ms;
    st->base.v = &SQ_STORE_VTAB;
    *out = &st->base;
    return CC_OK;
}
