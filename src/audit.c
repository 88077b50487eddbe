/* audit.c — append-only, hash-chained log of admin actions (see audit.h). */
#include "audit.h"

#include <openssl/evp.h>
#include <sqlite3.h>
#include <string.h>

struct cc_audit {
    sqlite3 *db;
    cc_mutex_t mu;
};

static const char *SCHEMA =
    "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
    "CREATE TABLE IF NOT EXISTS audit("
    " id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, actor_id INTEGER NOT NULL, actor TEXT NOT NULL,"
    " action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL, source TEXT NOT NULL,"
    " hash TEXT NOT NULL);"
    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;";

#define COLS "id, at_ms, actor_id, actor, action, target, detail, source, hash"

static cc_rc db_fail(sqlite3 *db, cc_error *err, const char *what) {
    return cc_fail(err, CC_ERR_STORAGE, "", "audit log: %s: %s", what, sqlite3_errmsg(db));
}

cc_rc cc_audit_open(const char *path, cc_audit **out, cc_error *err) {
    *out = NULL;
    if (!path || !*path || !strcmp(path, ":memory:"))
        return cc_fail(err, CC_ERR_INVALID, "path", "the audit log needs a file path");
    cc_audit *a = calloc(1, sizeof *a);
    if (!a) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    if (sqlite3_open_v2(path, &a->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) !=
        SQLITE_OK) {
        cc_rc rc = cc_fail(err, CC_ERR_STORAGE, "path", "cannot open the audit log %s: %s", path,
                           a->db ? sqlite3_errmsg(a->db) : "out of memory");
        sqlite3_close(a->db);
        free(a);
        return rc;
    }
    sqlite3_busy_timeout(a->db, 10000);
    if (sqlite3_exec(a->db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK) {
        cc_rc rc = db_fail(a->db, err, "schema");
        sqlite3_close(a->db);
        free(a);
        return rc;
    }
    cc_mutex_init(&a->mu);
    *out = a;
    return CC_OK;
}

void cc_audit_close(cc_audit *a) {
    if (!a) return;
    sqlite3_close(a->db);
    cc_mutex_destroy(&a->mu);
    free(a);
}

static cc_rc check_field(const char *s, size_t max, int required, const char *field, cc_error *err) {
    size_t n = strnlen(s, max + 1);
    if (n > max) return cc_fail(err, CC_ERR_INVALID, field, "%s is longer than %zu bytes", field, max);
    if (required && n == 0) return cc_fail(err, CC_ERR_INVALID, field, "%s must not be empty", field);
    return CC_OK;
}

/* hash = SHA-256(prev || "\n" || fields joined by "\n"), lower-case hex. */
static void chain_hash(const char *prev, const cc_audit_record *r, char out[CC_AUDIT_HASH_HEX_BYTES + 1]) {
    char nums[96];
    snprintf(nums, sizeof nums, "%lld\n%lld\n%lld\n", (long long)r->id, (long long)r->at_ms,
             (long long)r->actor_id);
    const char *parts[] = {prev, "\n", nums, r->actor, "\n", r->action, "\n", r->target, "\n",
                           r->detail, "\n", r->source};
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    CC_ASSERT(ctx);
    unsigned char md[32];
    unsigned mdlen = 0;
    CC_ASSERT(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1);
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        CC_ASSERT(EVP_DigestUpdate(ctx, parts[i], strlen(parts[i])) == 1);
    CC_ASSERT(EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32);
    EVP_MD_CTX_free(ctx);
    cc_hex_encode(md, 32, out);
}

static void copy_col(char *dst, size_t cap, sqlite3_stmt *s, int col) {
    const unsigned char *t = sqlite3_column_text(s, col);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

static void read_row(sqlite3_stmt *s, cc_audit_record *r) {
    r->id = sqlite3_column_int64(s, 0);
    r->at_ms = sqlite3_column_int64(s, 1);
    r->actor_id = sqlite3_column_int64(s, 2);
    copy_col(r->actor, sizeof r->actor, s, 3);
    copy_col(r->action, sizeof r->action, s, 4);
    copy_col(r->target, sizeof r->target, s, 5);
    copy_col(r->detail, sizeof r->detail, s, 6);
    copy_col(r->source, sizeof r->source, s, 7);
    copy_col(r->hash, sizeof r->hash, s, 8);
}

cc_rc cc_audit_append(cc_audit *a, const cc_audit_record *in, cc_audit_record *out, cc_error *err) {
    if (!in) return cc_fail(err, CC_ERR_INVALID, "", "no record");
    cc_rc rc;
    if ((rc = check_field(in->actor, CC_AUDIT_ACTOR_BYTES_MAX, 1, "actor", err)) != CC_OK ||
        (rc = check_field(in->action, CC_AUDIT_ACTION_BYTES_MAX, 1, "action", err)) != CC_OK ||
        (rc = check_field(in->target, CC_AUDIT_TARGET_BYTES_MAX, 0, "target", err)) != CC_OK ||
        (rc = check_field(in->detail, CC_AUDIT_DETAIL_BYTES_MAX, 0, "detail", err)) != CC_OK ||
        (rc = check_field(in->source, CC_AUDIT_SOURCE_BYTES_MAX, 1, "source", err)) != CC_OK)
        return rc;
    if (in->actor_id < 0) return cc_fail(err, CC_ERR_INVALID, "actor_id", "actor_id must be >= 0");
    cc_audit_record r = *in;
    cc_mutex_lock(&a->mu);
    sqlite3_stmt *s = NULL;
    char prev[CC_AUDIT_HASH_HEX_BYTES + 1] = "";
    if (sqlite3_exec(a->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        rc = db_fail(a->db, err, "begin");
        goto out;
    }
    r.id = 1;
    if (sqlite3_prepare_v2(a->db, "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1", -1, &s, NULL) != SQLITE_OK)
        goto fail;
    int st = sqlite3_step(s);
    if (st == SQLITE_ROW) {
        r.id = sqlite3_column_int64(s, 0) + 1;
        copy_col(prev, sizeof prev, s, 1);
    } else if (st != SQLITE_DONE) {
        goto fail;
    }
    sqlite3_finalize(s);
    s = NULL;
    r.at_ms = cc_now_ms();
    chain_hash(prev, &r, r.hash);
    if (sqlite3_prepare_v2(a->db, "INSERT INTO audit(" COLS ") VALUES (?,?,?,?,?,?,?,?,?)", -1, &s, NULL) !=
        SQLITE_OK)
        goto fail;
    sqlite3_bind_int64(s, 1, r.id);
    sqlite3_bind_int64(s, 2, r.at_ms);
    sqlite3_bind_int64(s, 3, r.actor_id);
    sqlite3_bind_text(s, 4, r.actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, r.action, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, r.target, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, r.detail, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, r.source, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 9, r.hash, -1, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE) goto fail;
    sqlite3_finalize(s);
    s = NULL;
    if (sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) goto fail;
    if (out) *out = r;
    rc = CC_OK;
    goto out;
fail:
    rc = db_fail(a->db, err, "append");
    sqlite3_finalize(s);
    sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
out:
    cc_mutex_unlock(&a->mu);
    return rc;
}

cc_rc cc_audit_list(cc_audit *a, int64_t before_id, int limit, cc_audit_record *out, int *n_out,
                    int64_t *next_before, cc_error *err) {
    *n_out = 0;
    *next_before = 0;
    if (limit < 1 || limit > CC_AUDIT_PAGE_MAX)
        return cc_fail(err, CC_ERR_INVALID, "limit", "limit must be between 1 and %d", CC_AUDIT_PAGE_MAX);
    if (before_id < 0) return cc_fail(err, CC_ERR_INVALID, "cursor", "the cursor must be positive");
    cc_mutex_lock(&a->mu);
    sqlite3_stmt *s = NULL;
    cc_rc rc = CC_OK;
    if (sqlite3_prepare_v2(a->db, "SELECT " COLS " FROM audit WHERE (?1 = 0 OR id < ?1) ORDER BY id DESC LIMIT ?2",
                           -1, &s, NULL) != SQLITE_OK) {
        rc = db_fail(a->db, err, "list");
        goto out;
    }
    sqlite3_bind_int64(s, 1, before_id);
    sqlite3_bind_int(s, 2, limit + 1);
    int n = 0, st;
    while ((st = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == limit) {
            *next_before = out[n - 1].id;
            break;
        }
        read_row(s, &out[n++]);
    }
    if (st != SQLITE_ROW && st != SQLITE_DONE) rc = db_fail(a->db, err, "list");
    else *n_out = n;
out:
    sqlite3_finalize(s);
    cc_mutex_unlock(&a->mu);
    return rc;
}

cc_rc cc_audit_verify(cc_audit *a, int64_t *records, int64_t *first_bad, cc_error *err) {
    *records = 0;
    *first_bad = 0;
    cc_mutex_lock(&a->mu);
    sqlite3_stmt *s = NULL;
    cc_rc rc = CC_OK;
    cc_audit_record *r = malloc(sizeof *r);
    if (!r) {
        rc = cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
        goto out;
    }
    if (sqlite3_prepare_v2(a->db, "SELECT " COLS " FROM audit ORDER BY id", -1, &s, NULL) != SQLITE_OK) {
        rc = db_fail(a->db, err, "verify");
        goto out;
    }
    char prev[CC_AUDIT_HASH_HEX_BYTES + 1] = "", want[CC_AUDIT_HASH_HEX_BYTES + 1];
    int64_t expect_id = 1;
    int st;
    while ((st = sqlite3_step(s)) == SQLITE_ROW) {
        read_row(s, r);
        (*records)++;
        chain_hash(prev, r, want);
        if (!*first_bad && (r->id != expect_id || strcmp(want, r->hash) != 0)) *first_bad = r->id;
        memcpy(prev, r->hash, sizeof prev);
        expect_id = r->id + 1;
    }
    if (st != SQLITE_DONE) rc = db_fail(a->db, err, "verify");
out:
    sqlite3_finalize(s);
    free(r);
    cc_mutex_unlock(&a->mu);
    return rc;
}
