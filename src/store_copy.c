/*
** store_copy.c — copies a SQLite ledger into an empty PostgreSQL ledger
** (the operator's `migrate --to postgresql://...`). See store.h.
**
** Contract: the source is read in one SQLite read transaction (a consistent
** snapshot; stop the ComfyUI servers writing to it first); the target must be
** a comfy-credits PostgreSQL ledger (schema created by cc_store_pg_open's
** writer) with no accounts. Every row of accounts, entries, holds, credentials
** and passwords (and needs-attention purchases, if the source has any) is copied with its id, in one PostgreSQL transaction holding
** the writer lock. Before COMMIT, every account is compared between source
** and target — its balance, held, totals, number of entries and the sum of
** their deltas — and the copy is rolled back on any difference. Nothing is
** written to the source.
*/
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CC_HAVE_LIBPQ

cc_rc cc_store_copy_sqlite_to_pg(const char *sqlite_path, const char *uri, cc_copy_stats *stats, cc_error *err) {
    (void)sqlite_path;
    (void)uri;
    memset(stats, 0, sizeof *stats);
    return cc_fail(err, CC_ERR_INVALID, "database",
                   "this build of comfy-credits has no PostgreSQL support (built without libpq; "
                   "install libpq-dev and rebuild)");
}

#else

#include <libpq-fe.h>
#include <sqlite3.h>

#define CC_PG_WRITE_LOCK_SQL "SELECT pg_advisory_xact_lock(7236833297138283)" /* store_pg.c's writer lock */

typedef struct table_copy {
    const char *table;
    const char *cols;
    int ncols;
    int blob_col; /* index of a BLOB column (bytea), or -1 */
    int optional; /* a ledger never opened by a version that has it lacks it: 0 rows */
} table_copy;

static const table_copy TABLES[] = {
    {"accounts",
     "id, email, display_name, active, role, created_ms, updated_ms, balance, held, paid_total, granted_total, "
     "spent_total, uncollected_total, test_balance, cap_daily, cap_monthly, own_cap_daily, own_cap_monthly, "
     "cap_day, cap_day_used, cap_month, cap_month_used",
     22, -1, 0},
    {"entries",
     "id, op_key, kind, account_id, amount, delta, held_delta, uncollected, balance_after, held_after, hold_id, "
     "ttl_ms, created_ms, prompt_id, node_id, node_class, model, tokens_in, tokens_out, images, seconds_ms, "
     "currency, amount_minor, method, external_ref, note, test_after",
     27, -1, 0},
    {"holds", "id, account_id, amount, state, expires_ms, resolved_by, credential_id", 7, -1, 0},
    {"credentials", "id, kind, account_id, hash, label, hint, created_ms, expires_ms, revoked_ms, cap_micro, cap_used",
     11, 3, 0},
    {"passwords", "account_id, hash, updated_ms", 3, -1, 0},
    {"purchase_attention",
     "session_id, account_id, currency, amount_minor, credits_micro, method, reason, first_ms, last_ms, reports, "
     "resolved_ms, resolution",
     12, -1, 1},
};
#define TABLES_N ((int)(sizeof TABLES / sizeof TABLES[0]))

/* Per-account figures compared before COMMIT (the same SQL on both). */
static const char *const ACCOUNT_SUMS_SQL =
    "SELECT a.id, a.balance, a.held, a.paid_total, a.granted_total, a.spent_total, a.uncollected_total, "
    "a.test_balance, (SELECT count(*) FROM entries e WHERE e.account_id = a.id), "
    "(SELECT COALESCE(sum(e.delta), 0) FROM entries e WHERE e.account_id = a.id), a.cap_daily, a.cap_monthly, "
    "a.own_cap_daily, a.own_cap_monthly, a.cap_day_used, a.cap_month_used FROM accounts a ORDER BY a.id";
#define SUM_COLS 16

static cc_rc pq_fail(PGconn *pg, PGresult *r, cc_error *err, const char *what) {
    const char *m = r ? PQresultErrorMessage(r) : NULL;
    if (!m || !*m) m = PQerrorMessage(pg);
    char line[300];
    size_t j = 0;
    for (size_t i = 0; m[i] && j + 1 < sizeof line; i++) line[j++] = (m[i] == '\n' || m[i] == '\r') ? ' ' : m[i];
    while (j && line[j - 1] == ' ') j--;
    line[j] = 0;
    return cc_fail(err, CC_ERR_STORAGE, "database", "copy to PostgreSQL: %s: %s", what, line);
}

static int pq_ok(PGresult *r) {
    ExecStatusType s = PQresultStatus(r);
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

static cc_rc copy_table(sqlite3 *db, PGconn *pg, const table_copy *t, int64_t *rows, cc_error *err) {
    char sql[700], ins[900], ph[200];
    snprintf(sql, sizeof sql, "SELECT %s FROM %s ORDER BY 1", t->cols, t->table);
    int off = 0;
    for (int i = 0; i < t->ncols; i++) off += snprintf(ph + off, sizeof ph - (size_t)off, "%s$%d", i ? "," : "", i + 1);
    snprintf(ins, sizeof ins, "INSERT INTO %s(%s) VALUES (%s)", t->table, t->cols, ph);
    sqlite3_stmt *s = NULL;
    *rows = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        if (t->optional && strstr(sqlite3_errmsg(db), "no such table")) return CC_OK;
        return cc_fail(err, CC_ERR_STORAGE, "path", "the SQLite ledger cannot be read (%s): %s", t->table,
                       sqlite3_errmsg(db));
    }
    PGresult *pr = PQprepare(pg, t->table, ins, 0, NULL);
    if (!pq_ok(pr)) {
        cc_rc rc = pq_fail(pg, pr, err, "prepare");
        PQclear(pr);
        sqlite3_finalize(s);
        return rc;
    }
    PQclear(pr);
    const char *vals[32];
    int lens[32], fmts[32];
    cc_rc rc = CC_OK;
    int step;
    *rows = 0;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        for (int i = 0; i < t->ncols; i++) {
            if (i == t->blob_col) {
                vals[i] = sqlite3_column_blob(s, i);
                lens[i] = sqlite3_column_bytes(s, i);
                fmts[i] = 1;
            } else {
                vals[i] = (const char *)sqlite3_column_text(s, i);
                if (!vals[i]) vals[i] = "";
                lens[i] = 0;
                fmts[i] = 0;
            }
        }
        PGresult *r = PQexecPrepared(pg, t->table, t->ncols, vals, lens, fmts, 0);
        if (!pq_ok(r)) {
            char what[64];
            snprintf(what, sizeof what, "insert into %s", t->table);
            rc = pq_fail(pg, r, err, what);
            PQclear(r);
            break;
        }
        PQclear(r);
        (*rows)++;
    }
    if (rc == CC_OK && step != SQLITE_DONE)
        rc = cc_fail(err, CC_ERR_STORAGE, "path", "reading %s from the SQLite ledger failed: %s", t->table,
                     sqlite3_errmsg(db));
    sqlite3_finalize(s);
    return rc;
}

/* Compares every account's figures; fills the totals of the source. */
static cc_rc compare_accounts(sqlite3 *db, PGconn *pg, cc_copy_stats *st, cc_error *err) {
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, ACCOUNT_SUMS_SQL, -1, &s, NULL) != SQLITE_OK)
        return cc_fail(err, CC_ERR_STORAGE, "path", "the SQLite ledger cannot be summed: %s", sqlite3_errmsg(db));
    PGresult *r = PQexec(pg, ACCOUNT_SUMS_SQL);
    if (!pq_ok(r)) {
        cc_rc rc = pq_fail(pg, r, err, "sum accounts");
        PQclear(r);
        sqlite3_finalize(s);
        return rc;
    }
    static const char *const NAMES[SUM_COLS] = {"id", "balance", "held", "paid_total", "granted_total",
                                                "spent_total", "uncollected_total", "test_balance",
                                                "entries", "sum of deltas", "cap_daily", "cap_monthly",
                                                "own_cap_daily", "own_cap_monthly", "cap_day_used",
                                                "cap_month_used"};
    int n = PQntuples(r), row = 0, step;
    cc_rc rc = CC_OK;
    while (rc == CC_OK && (step = sqlite3_step(s)) == SQLITE_ROW) {
        if (row >= n) {
            rc = cc_fail(err, CC_ERR_STORAGE, "database", "copy check: account %lld is missing in PostgreSQL",
                         (long long)sqlite3_column_int64(s, 0));
            break;
        }
        for (int c = 0; c < SUM_COLS; c++) {
            long long a = sqlite3_column_int64(s, c), b = strtoll(PQgetvalue(r, row, c), NULL, 10);
            if (a != b) {
                rc = cc_fail(err, CC_ERR_STORAGE, "database",
                             "copy check: account %lld differs in %s (SQLite %lld, PostgreSQL %lld); nothing was "
                             "copied",
                             (long long)sqlite3_column_int64(s, 0), NAMES[c], a, b);
                break;
            }
        }
        st->balance_total += sqlite3_column_int64(s, 1);
        st->held_total += sqlite3_column_int64(s, 2);
        st->delta_total += sqlite3_column_int64(s, 9);
        row++;
    }
    if (rc == CC_OK && row != n)
        rc = cc_fail(err, CC_ERR_STORAGE, "database", "copy check: PostgreSQL has %d accounts, SQLite %d", n, row);
    st->accounts_checked = row;
    PQclear(r);
    sqlite3_finalize(s);
    return rc;
}

/* The source must have this build's schema (every column copied): opening it
** with cc_store_sqlite_open once migrates it in place. Copying an older file
** would leave out columns such as the caps. */
static cc_rc check_source_schema(sqlite3 *db, const char *path, cc_error *err) {
    sqlite3_stmt *s = NULL;
    long long v = -1;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema_version'", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    if (v == CC_SCHEMA_VERSION) return CC_OK;
    if (v < 0) return cc_fail(err, CC_ERR_STORAGE, "path", "'%s' is not a comfy-credits ledger (no schema version)", path);
    return cc_fail(err, CC_ERR_STATE, "path",
                   "the SQLite ledger '%s' has schema version %lld, this version copies %d: open it once with this "
                   "version (e.g. `verify`) to bring it up to date, then copy (nothing was copied)",
                   path, v, CC_SCHEMA_VERSION);
}

cc_rc cc_store_copy_sqlite_to_pg(const char *sqlite_path, const char *uri, cc_copy_stats *stats, cc_error *err) {
    memset(stats, 0, sizeof *stats);
    cc_store *target = NULL;
    cc_conn *w = NULL;
    /* Opening a writer creates / migrates the target's schema (or refuses it). */
    cc_rc rc = cc_store_pg_open(uri, 600000, &target, err);
    if (rc == CC_OK) rc = target->v->connect(target, 1, &w, err);
    if (w) w->v->close(w);
    if (target) target->v->close(target);
    if (rc != CC_OK) return rc;

    sqlite3 *db = NULL;
    if (sqlite3_open_v2(sqlite_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        rc = cc_fail(err, CC_ERR_STORAGE, "path", "cannot open the SQLite ledger '%s': %s", sqlite_path,
                     db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return rc;
    }
    sqlite3_busy_timeout(db, 10000);
    rc = check_source_schema(db, sqlite_path, err);
    if (rc != CC_OK) {
        sqlite3_close(db);
        return rc;
    }
    PGconn *pg = PQconnectdb(uri);
    if (PQstatus(pg) != CONNECTION_OK) {
        rc = pq_fail(pg, NULL, err, "connect");
        goto out;
    }
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        rc = cc_fail(err, CC_ERR_STORAGE, "path", "cannot read the SQLite ledger: %s", sqlite3_errmsg(db));
        goto out;
    }
    PGresult *r = PQexec(pg, "BEGIN; " CC_PG_WRITE_LOCK_SQL "; SELECT (SELECT count(*) FROM accounts) + "
                             "(SELECT count(*) FROM entries)");
    if (!pq_ok(r)) {
        rc = pq_fail(pg, r, err, "begin");
        PQclear(r);
        goto out;
    }
    if (strcmp(PQgetvalue(r, 0, 0), "0") != 0) {
        PQclear(r);
        rc = cc_fail(err, CC_ERR_STATE, "database",
                     "the PostgreSQL ledger is not empty; copy into a new database (nothing was copied)");
        goto out;
    }
    PQclear(r);
    int64_t *counts[TABLES_N] = {&stats->accounts, &stats->entries, &stats->holds, &stats->credentials,
                                 &stats->passwords, &stats->attention};
    for (int i = 0; rc == CC_OK && i < TABLES_N; i++) rc = copy_table(db, pg, &TABLES[i], counts[i], err);
    if (rc != CC_OK) goto out;
    r = PQexec(pg, "SELECT setval(pg_get_serial_sequence('accounts', 'id'), GREATEST((SELECT max(id) FROM accounts), 1));"
                   "SELECT setval(pg_get_serial_sequence('entries', 'id'), GREATEST((SELECT max(id) FROM entries), 1));"
                   "SELECT setval(pg_get_serial_sequence('credentials', 'id'), "
                   "GREATEST((SELECT max(id) FROM credentials), 1));"
                   "UPDATE cc_writes SET n = n + 1");
    if (!pq_ok(r)) {
        rc = pq_fail(pg, r, err, "set sequences");
        PQclear(r);
        goto out;
    }
    PQclear(r);
    rc = compare_accounts(db, pg, stats, err);
    if (rc != CC_OK) goto out;
    r = PQexec(pg, "COMMIT");
    if (!pq_ok(r) || strcmp(PQcmdStatus(r), "COMMIT") != 0) rc = pq_fail(pg, r, err, "commit");
    PQclear(r);
out:
    if (pg && PQstatus(pg) == CONNECTION_OK && PQtransactionStatus(pg) != PQTRANS_IDLE) PQclear(PQexec(pg, "ROLLBACK"));
    PQfinish(pg);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

#endif /* CC_HAVE_LIBPQ */
