/*
** store_pg.c — the PostgreSQL backend of store.h (farm mode: several ComfyUI
** servers on several machines share one ledger). Built on libpq (Debian
** libpq-dev); without it (CC_HAVE_LIBPQ undefined) cc_store_pg_open says so.
**
** Concurrency across processes and machines — the choice and why:
**   Every write transaction starts with pg_advisory_xact_lock(CC_PG_WRITE_LOCK):
**   one writer at a time per database, across every server, the PostgreSQL
**   equivalent of SQLite's BEGIN IMMEDIATE that store.h was written for. The
**   ledger's rules (balance checks, "a hold resolves once", idempotency) then
**   run on data no other server can change underneath, so ledger.c keeps its
**   rules unchanged and the same C tests hold on both backends. The lock is
**   the database's, not the process's: it is held by the PostgreSQL session
**   and released by PostgreSQL at COMMIT/ROLLBACK or when the session dies
**   (kill -9 of a server, a lost machine: idle_in_transaction_session_timeout
**   ends a session that stops talking inside a transaction).
**   Why not only row locks or SERIALIZABLE: the ledger batches many
**   operations of many accounts into one commit (group commit), and its
**   writer keeps accounts and open holds cached between commits. Row locks
**   taken in batch order deadlock between servers and SERIALIZABLE aborts
**   whole batches; both need the batch to run again and every row to be
**   re-read per commit. A single writer lock costs nothing per operation
**   (one statement per commit), and group commit amortises it. It stays the
**   fallback that always succeeds; while several servers write, batches
**   first try a shared transaction (below), which is that retry scheme with
**   the lock as its last resort.
**   What the lock is held for is therefore what limits a farm: every round
**   trip inside it serialises all servers. So a write transaction costs O(1)
**   round trips per batch, not O(operations) ("the writer's batch" below):
**   one takes the lock, bumps the write counter, takes the batch's entry
**   ids from the entries' sequence and reads what the batch will look up
**   (its keys: `op_key = ANY(...)`, holds, accounts; commit.c asks the jobs
**   before beginning); the other sends the batch's rows, buffered as one
**   multi-row statement per table (unnest of arrays), in the pipeline with
**   the COMMIT. Entry ids are known before the rows are sent, so no INSERT
**   has to answer before the next operation runs. Every statement, the
**   begin's included, is prepared once per connection (again on a new
**   connection after a break) and runs with a generic plan (plan_cache_mode
**   on the writer connection): nothing is parsed or planned per commit. A batch of 256 settles + 256 holds takes 2 round
**   trips, 3 when another server wrote unexpectedly (test_store_pg.c
**   batch_round_trips checks <= 3); it took ~514, ~1,030 after another
**   server wrote (holds and their entries re-read one by one).
**
** Shared write transactions (begin_write_shared), while other servers write:
**   Under the single writer lock, one server's commits queue behind
**   another's even when they touch different accounts, and the lock is held
**   across a client round trip (the ledger computes between the begin and
**   the commit): a farm of servers making one operation per commit was
**   slower than the same servers with row locks (psycopg baseline). So once
**   a server sees other servers writing (others_write), commit.c runs each
**   money batch first as a shared transaction:
**   - BEGIN ISOLATION LEVEL REPEATABLE READ, pg_advisory_xact_lock_shared
**     on the same lock (shared holders overlap; the exclusive begin_write
**     waits for all of them and they for it), and everything the batch
**     reads comes from that one snapshot (prefetch in the same round trip;
**     data_changed = 1, so the ledger's caches are never trusted in or after
**     one): a hold and its account can never be seen at two moments.
**   - Every row it changes is checked by PostgreSQL against that snapshot:
**     an account or hold changed by another server since the snapshot makes
**     the UPDATE fail (40001, "could not serialize access"), a key another
**     server took meanwhile makes the INSERT fail (23505, the UNIQUE op_key),
**     a deadlock between two batches is 40P01. Any of these rolls the whole
**     transaction back, conflicted() says so, and commit.c runs the same
**     batch again, once, under the exclusive lock (which always succeeds
**     as before). So "no negative balance" (the available check read the
**     row it then writes; CHECK constraint besides), "a hold resolves once"
**     (WHERE state = 0 on a row no one changed since) and "one key, one
**     operation" hold exactly as under the single lock.
**   - Only entry, hold and account rows are written in one: any other write
**     (credentials, key caps, hold extension, ...) answers need_lock and the
**     batch runs under the exclusive lock. Account and credential jobs
**     (auth.c) never run shared.
**   - Entry ids come from the entries sequence (nextval, a list taken in the
**     begin round trip, more in one round trip if the batch needs them), so
**     shared transactions never collide. Per account they still grow in
**     commit order: a transaction that writes an account read it after the
**     last commit that changed it, and took its ids after that read.
**     Across accounts the order of ids may differ from the order of commits.
**   - The exclusive writer takes its ids from the same sequence, under its
**     lock (no shared transaction is open then), exactly one per key its
**     batch names, so they follow the commit order. A shared transaction counts itself in the
**     sequence cc_shared_writes (a row counter would conflict between
**     them); the exclusive writer reads it with cc_writes.n, so it drops its
**     caches after anyone's write of either kind. It is read as 0 until
**     its first nextval (SHARED_WRITES: last_value alone is 1 both before
**     and after it, and the first shared commit went unseen).
**   - A shared transaction's snapshot is taken as it starts, before it
**     waits for the shared lock: rows an exclusive writer changed meanwhile
**     are conflicts (the batch runs again under the lock), never misread.
**   The lock is thus held exclusively only by batches that need it; the
**   others overlap with each other, hold no lock across a client round trip
**   that another server waits for (row locks are taken by the UPDATEs in the
**   commit pipeline and released at COMMIT), and share WAL flushes.
**
**   A shared transaction commits synchronously (COMMIT returns once its
**   WAL is flushed): it holds no lock another server's shared transaction
**   waits for, so the flush transaction below would only add a statement.
**
** Durability, and the lock not held during the flush: the write transaction
** commits with synchronous_commit = off, so PostgreSQL releases the writer
** lock as soon as the commit record is in its WAL buffers; the same pipeline
** then runs a one-statement transaction that writes a WAL record
** (pg_logical_emit_message, transactional) and commits with the session's
** synchronous_commit (on by default), which returns only once the WAL is
** flushed past it, and so past our commit. Only then is the caller answered:
** acknowledged still means durable (test_store_pg.c
** acknowledged_survives_crash: PostgreSQL stopped with -m immediate right
** after). While one server waits for its flush the next one already works
** under the lock, and concurrent flushes share one fsync (PostgreSQL's WAL
** group flush), which a lock held through the flush would serialise. Other
** servers may see a batch some milliseconds before it is durable: whatever
** they write on top of it comes later in the WAL, so it is durable only
** with it, and nothing is acknowledged before it is durable. The same holds
** with synchronous replication (the flush transaction waits for the standby
** as configured).
**   Cache coherence: cc_writes.n counts write transactions; begin_write
**   increments it under the lock and data_changed() reports whether anyone
**   else committed since this connection's last write (the ledger then drops
**   its caches, exactly as with SQLite's data_version).
**   Defence in depth, enforced by PostgreSQL itself whatever a client does:
**   CHECK (balance >= 0 AND held >= 0 AND held <= balance) on accounts; the
**   UNIQUE op_key (idempotency across servers: a second insert of a key finds
**   the first one's committed row, INSERT ... ON CONFLICT DO NOTHING, so the
**   transaction is never aborted by a duplicate); hold resolution is the
**   conditional UPDATE ... WHERE state = 0; entries cannot be updated,
**   deleted or truncated (triggers).
**
** Faults: every statement runs under statement_timeout (the store's timeout);
** a connection that broke is re-opened (a new connection, statements prepared again)
** at its next use, and the call that saw the break fails with CC_ERR_STORAGE
** (fail closed: the ledger rolls the batch back, nothing is acknowledged);
** outside a transaction the statement is retried once on the new connection.
** A COMMIT whose answer was lost may still have committed: the caller was
** told it failed, and its retry with the same idempotency key returns the
** original result, never a second charge.
** Error messages never contain the password (the URI is described without it).
**
** Schema: versioned migrations (table cc_migrations), applied by the first
** writer connection under a second advisory lock, so servers starting at once
** migrate once. A database with a newer version than this build knows is
** refused untouched; one with foreign tables of our names is refused.
*/
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cc_store_is_pg_uri(const char *s) {
    return s && (strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0);
}

#ifndef CC_HAVE_LIBPQ

cc_rc cc_store_pg_describe(const char *uri, char *out, size_t out_bytes) {
    (void)uri;
    snprintf(out, out_bytes, "postgresql://?");
    return CC_OK;
}

void cc_store_pg_wait_for_server(cc_store *s, int on) {
    (void)s;
    (void)on;
}

int64_t cc_store_pg_writer_round_trips(cc_store *s) {
    (void)s;
    return -1;
}

void cc_store_pg_shared_stats(cc_store *s, int64_t *commits, int64_t *conflicts) {
    (void)s;
    *commits = *conflicts = -1;
}

cc_rc cc_store_pg_open(const char *uri, int statement_timeout_ms, cc_store **out, cc_error *err) {
    (void)uri;
    (void)statement_timeout_ms;
    *out = NULL;
    return cc_fail(err, CC_ERR_INVALID, "database",
                   "this build of comfy-credits has no PostgreSQL support (built without libpq; "
                   "install libpq-dev and rebuild)");
}

#else

#include <libpq-fe.h>
#include <stddef.h>

#include "i64map.h"

#define CC_PG_WRITE_LOCK INT64_C(7236833297138283)   /* advisory lock: one writer at a time */
#define CC_PG_MIGRATE_LOCK INT64_C(7236833297138284) /* advisory lock: one migrator */
#define CC_PG_PARAMS_MAX 32
#define CC_PG_PENDING_MAX 256  /* deferred statements before their results are read */
#define CC_PG_CONNECT_TIMEOUT_S "5"
#define CC_PG_RETRY_MS_MIN 250     /* wait_for_server: first retry after this ... */
#define CC_PG_RETRY_MS_MAX 15000   /* ... doubling up to this */
#define CC_PG_SHARED_LINGER_MS 2000 /* shared write transactions until others have not written for this long */

/* ---------------------------------------------------------------- schema */

typedef struct migration {
    int version;
    const char *what;
    const char *sql;
} migration;

static const migration MIGRATIONS[] = {
    {1, "accounts, entries, holds, credentials, passwords",
     "CREATE TABLE accounts("
     " id BIGSERIAL PRIMARY KEY,"
     " email TEXT NOT NULL,"
     " display_name TEXT NOT NULL DEFAULT '',"
     " active INTEGER NOT NULL, role INTEGER NOT NULL,"
     " created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL,"
     " balance BIGINT NOT NULL, held BIGINT NOT NULL,"
     " paid_total BIGINT NOT NULL, granted_total BIGINT NOT NULL,"
     " spent_total BIGINT NOT NULL, uncollected_total BIGINT NOT NULL,"
     " CHECK (balance >= 0 AND held >= 0 AND held <= balance));"
     "CREATE UNIQUE INDEX accounts_email ON accounts(lower(email));"
     "CREATE TABLE entries("
     " id BIGSERIAL PRIMARY KEY,"
     " op_key TEXT NOT NULL UNIQUE,"
     " kind INTEGER NOT NULL,"
     " account_id BIGINT NOT NULL REFERENCES accounts(id),"
     " amount BIGINT NOT NULL, delta BIGINT NOT NULL, held_delta BIGINT NOT NULL,"
     " uncollected BIGINT NOT NULL, balance_after BIGINT NOT NULL, held_after BIGINT NOT NULL,"
     " hold_id BIGINT NOT NULL, ttl_ms BIGINT NOT NULL, created_ms BIGINT NOT NULL,"
     " prompt_id TEXT NOT NULL, node_id TEXT NOT NULL, node_class TEXT NOT NULL, model TEXT NOT NULL,"
     " tokens_in BIGINT NOT NULL, tokens_out BIGINT NOT NULL, images BIGINT NOT NULL,"
     " seconds_ms BIGINT NOT NULL,"
     " currency TEXT NOT NULL, amount_minor BIGINT NOT NULL, method TEXT NOT NULL,"
     " external_ref TEXT NOT NULL, note TEXT NOT NULL);"
     "CREATE INDEX entries_by_account ON entries(account_id, id);"
     "CREATE TABLE holds("
     " id BIGINT PRIMARY KEY, account_id BIGINT NOT NULL REFERENCES accounts(id), amount BIGINT NOT NULL,"
     " state INTEGER NOT NULL, expires_ms BIGINT NOT NULL, resolved_by BIGINT NOT NULL);"
     "CREATE INDEX holds_open_by_expiry ON holds(expires_ms, id) WHERE state = 0;"
     "CREATE FUNCTION cc_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$"
     " BEGIN RAISE EXCEPTION '%', TG_ARGV[0]; END $$;"
     "CREATE TRIGGER entries_no_update BEFORE UPDATE OR DELETE ON entries FOR EACH ROW"
     " EXECUTE FUNCTION cc_refuse_change('ledger entries are immutable');"
     "CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries FOR EACH STATEMENT"
     " EXECUTE FUNCTION cc_refuse_change('ledger entries are immutable');"
     "CREATE TRIGGER accounts_no_delete BEFORE DELETE ON accounts FOR EACH ROW"
     " EXECUTE FUNCTION cc_refuse_change('accounts are never deleted; disable them');"
     "CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts FOR EACH STATEMENT"
     " EXECUTE FUNCTION cc_refuse_change('accounts are never deleted; disable them');"
     "CREATE TABLE credentials("
     " id BIGSERIAL PRIMARY KEY, kind INTEGER NOT NULL, account_id BIGINT NOT NULL REFERENCES accounts(id),"
     " hash BYTEA NOT NULL UNIQUE, label TEXT NOT NULL, hint TEXT NOT NULL,"
     " created_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL, revoked_ms BIGINT NOT NULL);"
     "CREATE INDEX credentials_by_account ON credentials(account_id, kind, id);"
     "CREATE TABLE passwords(account_id BIGINT PRIMARY KEY REFERENCES accounts(id),"
     " hash TEXT NOT NULL, updated_ms BIGINT NOT NULL);"
     "CREATE TABLE cc_writes(id INTEGER PRIMARY KEY CHECK (id = 1), n BIGINT NOT NULL);"
     "INSERT INTO cc_writes VALUES (1, 0);"},
    {2, "TEST credits (accounts.test_balance, entries.test_after)",
     "ALTER TABLE accounts ADD COLUMN test_balance BIGINT NOT NULL DEFAULT 0;"
     "ALTER TABLE entries ADD COLUMN test_after BIGINT NOT NULL DEFAULT 0;"},
    /* Caps: -1 = no cap (caps.h), so every account that existed before is uncapped. */
    {3, "spending caps (accounts.cap_* and their windows' counters)",
     "ALTER TABLE accounts ADD COLUMN cap_daily BIGINT NOT NULL DEFAULT -1,"
     " ADD COLUMN cap_monthly BIGINT NOT NULL DEFAULT -1,"
     " ADD COLUMN own_cap_daily BIGINT NOT NULL DEFAULT -1,"
     " ADD COLUMN own_cap_monthly BIGINT NOT NULL DEFAULT -1,"
     " ADD COLUMN cap_day BIGINT NOT NULL DEFAULT 0, ADD COLUMN cap_day_used BIGINT NOT NULL DEFAULT 0,"
     " ADD COLUMN cap_month BIGINT NOT NULL DEFAULT 0, ADD COLUMN cap_month_used BIGINT NOT NULL DEFAULT 0;"},
    /* API key caps: -1 = none; holds placed before remember no key (0). */
    {4, "API key spending caps (credentials.cap_micro, cap_used; holds.credential_id)",
     "ALTER TABLE credentials ADD COLUMN cap_micro BIGINT NOT NULL DEFAULT -1,"
     " ADD COLUMN cap_used BIGINT NOT NULL DEFAULT 0;"
     "ALTER TABLE holds ADD COLUMN credential_id BIGINT NOT NULL DEFAULT 0;"},
    {5, "needs-attention purchases (purchase_attention), shared by every server",
     "CREATE TABLE purchase_attention("
     " session_id TEXT PRIMARY KEY, account_id BIGINT NOT NULL, currency TEXT NOT NULL,"
     " amount_minor BIGINT NOT NULL, credits_micro BIGINT NOT NULL, method TEXT NOT NULL,"
     " reason TEXT NOT NULL, first_ms BIGINT NOT NULL, last_ms BIGINT NOT NULL, reports BIGINT NOT NULL,"
     " resolved_ms BIGINT NOT NULL DEFAULT 0, resolution TEXT NOT NULL DEFAULT '');"},
    {6, "prompt reservations shared by the servers (cc_reservations)",
     "CREATE TABLE cc_reservations("
     " server TEXT NOT NULL, prompt_id TEXT NOT NULL, account_id BIGINT NOT NULL, left_micro BIGINT NOT NULL,"
     " expires_ms BIGINT NOT NULL, PRIMARY KEY (server, prompt_id));"
     "CREATE INDEX cc_reservations_by_account ON cc_reservations(account_id);"},
    /* A sequence, not a row: shared write transactions (see "Shared write
    ** transactions" above) count themselves without conflicting with each other. */
    {7, "shared write transactions' counter (cc_shared_writes)", "CREATE SEQUENCE cc_shared_writes;"},
};
#define MIGRATIONS_N ((int)(sizeof MIGRATIONS / sizeof MIGRATIONS[0]))
/* The newest version this build knows. PostgreSQL numbers its own migrations
** (SQLite adds tables in place); a database with a larger one is refused. */
#define PG_SCHEMA_VERSION (MIGRATIONS[MIGRATIONS_N - 1].version)

#define ACCOUNT_COLS                                                           \
    "id, email, display_name, active, role, created_ms, updated_ms, balance, " \
    "held, paid_total, granted_total, spent_total, uncollected_total, test_balance, cap_daily, cap_monthly, " \
    "own_cap_daily, own_cap_monthly, cap_day, cap_day_used, cap_month, cap_month_used"
#define ENTRY_COLS                                                             \
    "id, op_key, kind, account_id, amount, delta, held_delta, uncollected, "   \
    "balance_after, held_after, hold_id, ttl_ms, created_ms, prompt_id, "      \
    "node_id, node_class, model, tokens_in, tokens_out, images, seconds_ms, "  \
    "currency, amount_minor, method, external_ref, note, test_after"
/* n entry ids from the entries' sequence (looked up once: pg_get_serial_sequence reads the catalog) */
#define NEXT_IDS(n)                                                                                      \
    "SELECT nextval(q.s) FROM (SELECT pg_get_serial_sequence('entries', 'id')::regclass AS s OFFSET 0) q," \
    " generate_series(1, " n ")"
/* The shared write transactions counted so far (cc_shared_writes: each one's
** nextval). Not last_value alone: a sequence never called has last_value 1
** (is_called false), and its first nextval returns 1 and leaves it at 1, so
** the first shared commit of a database did not move last_value and the
** exclusive writer, finding the counters as it left them, trusted caches
** that commit had made stale (test_store_pg.c first_shared_commit_seen). */
#define SHARED_WRITES "(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM cc_shared_writes)"
#define HOLD_COLS "id, account_id, amount, state, expires_ms, resolved_by, credential_id"
#define CRED_COLS "id, kind, account_id, hash, label, hint, created_ms, expires_ms, revoked_ms, cap_micro, cap_used"
#define ATT_COLS                                                                                       \
    "session_id, account_id, currency, amount_minor, credits_micro, method, reason, first_ms, last_ms, " \
    "reports, resolved_ms, resolution"

enum {
    ST_ACC_INSERT, ST_ACC_GET, ST_ACC_BY_EMAIL, ST_ACC_UPDATE, ST_ACC_LIST,
    ST_ENT_BY_KEY, ST_ENT_GET, ST_ENT_INSERT,
    ST_HOLD_GET, ST_HOLD_INSERT, ST_HOLD_RESOLVE, ST_HOLD_EXTEND, ST_HOLDS_DUE,
    ST_SCAN_ACC, ST_SCAN_ENT, ST_SCAN_HOLD,
    ST_CRED_INSERT, ST_CRED_BY_HASH, ST_CRED_GET, ST_CRED_UPDATE, ST_CRED_REVOKE_ONE, ST_CRED_REVOKE_ALL, ST_CRED_LIST,
    ST_PW_SET, ST_PW_GET, ST_USAGE,
    ST_ATT_RECORD, ST_ATT_GET, ST_ATT_LIST, ST_ATT_RESOLVE,
    ST_RESV_PUT, ST_RESV_DROP, ST_RESV_OTHERS, ST_RESV_RENEW, ST_RESV_SWEEP,
    ST_WB_ENTRIES, ST_WB_HOLDS, ST_WB_RESOLVES, ST_WB_ACCOUNTS, ST_WB_ENTRY1, ST_WB_RESOLVE1, ST_WB_ACCOUNT1,
    ST_PF_KEYS, ST_PF_HOLDS, ST_PF_ACCOUNTS, ST_FLUSH, ST_MORE_IDS, ST_SHARED_MARK,
    ST_LOCK_X, ST_HEAD_X, ST_HEAD_S,
    ST_COUNT
};

static const char *const STMT_SQL[ST_COUNT] = {
    [ST_ACC_INSERT] =
        "INSERT INTO accounts(email, display_name, active, role, created_ms, updated_ms,"
        " balance, held, paid_total, granted_total, spent_total, uncollected_total, test_balance, cap_daily,"
        " cap_monthly, own_cap_daily, own_cap_monthly, cap_day, cap_day_used, cap_month, cap_month_used)"
        " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21)"
        " ON CONFLICT ((lower(email))) DO NOTHING RETURNING id",
    [ST_ACC_GET] = "SELECT " ACCOUNT_COLS " FROM accounts WHERE id = $1",
    [ST_ACC_BY_EMAIL] = "SELECT " ACCOUNT_COLS " FROM accounts WHERE lower(email) = lower($1)",
    [ST_ACC_UPDATE] =
        "UPDATE accounts SET display_name=$1, active=$2, role=$3, updated_ms=$4, balance=$5, held=$6,"
        " paid_total=$7, granted_total=$8, spent_total=$9, uncollected_total=$10, test_balance=$11, cap_daily=$12,"
        " cap_monthly=$13, own_cap_daily=$14, own_cap_monthly=$15, cap_day=$16, cap_day_used=$17, cap_month=$18,"
        " cap_month_used=$19 WHERE id=$20",
    [ST_ACC_LIST] = "SELECT " ACCOUNT_COLS " FROM accounts WHERE id > $1 ORDER BY id LIMIT $2",
    [ST_ENT_BY_KEY] = "SELECT " ENTRY_COLS " FROM entries WHERE op_key = $1",
    [ST_ENT_GET] = "SELECT " ENTRY_COLS " FROM entries WHERE id = $1",
    [ST_ENT_INSERT] =
        "INSERT INTO entries(op_key, kind, account_id, amount, delta, held_delta, uncollected,"
        " balance_after, held_after, hold_id, ttl_ms, created_ms, prompt_id, node_id, node_class,"
        " model, tokens_in, tokens_out, images, seconds_ms, currency, amount_minor, method,"
        " external_ref, note, test_after) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,"
        "$17,$18,$19,$20,$21,$22,$23,$24,$25,$26) ON CONFLICT (op_key) DO NOTHING RETURNING id",
    [ST_HOLD_GET] = "SELECT " HOLD_COLS " FROM holds WHERE id = $1",
    [ST_HOLD_INSERT] = "INSERT INTO holds(" HOLD_COLS ") VALUES ($1,$2,$3,$4,$5,$6,$7)",
    /* A hold by id: `state + 0 = 0` (not `state = 0`) so that the partial
    ** index holds_open_by_expiry cannot serve it. With `state = 0` the
    ** planner, whose statistics often say almost no hold is open, scans that
    ** whole index (every open hold, and the dead entries of resolved ones)
    ** for the id, instead of one look-up in holds_pkey. */
    [ST_HOLD_RESOLVE] = "UPDATE holds SET state = $1, resolved_by = $2 WHERE id = $3 AND state + 0 = 0",
    [ST_HOLD_EXTEND] = "UPDATE holds SET expires_ms = $1 WHERE id = $2 AND state + 0 = 0 AND expires_ms < $1",
    [ST_HOLDS_DUE] =
        "SELECT id FROM holds WHERE state = 0 AND expires_ms <= $1 ORDER BY expires_ms, id LIMIT $2",
    [ST_SCAN_ACC] = "SELECT " ACCOUNT_COLS " FROM accounts ORDER BY id",
    [ST_SCAN_ENT] = "SELECT " ENTRY_COLS " FROM entries ORDER BY account_id, id",
    [ST_SCAN_HOLD] = "SELECT " HOLD_COLS " FROM holds ORDER BY id",
    [ST_CRED_INSERT] = "INSERT INTO credentials(kind, account_id, hash, label, hint, created_ms, expires_ms,"
                       " revoked_ms) VALUES ($1,$2,$3,$4,$5,$6,$7,0) RETURNING id",
    [ST_CRED_BY_HASH] = "SELECT " CRED_COLS " FROM credentials WHERE hash = $1",
    [ST_CRED_GET] = "SELECT " CRED_COLS " FROM credentials WHERE id = $1",
    [ST_CRED_UPDATE] = "UPDATE credentials SET expires_ms = $1, cap_micro = $2, cap_used = $3 WHERE id = $4",
    [ST_CRED_REVOKE_ONE] = "UPDATE credentials SET revoked_ms = $1 WHERE id = $2 AND account_id = $3"
                           " AND kind = $4 AND revoked_ms = 0",
    [ST_CRED_REVOKE_ALL] = "UPDATE credentials SET revoked_ms = $1 WHERE account_id = $2 AND kind = $3"
                           " AND revoked_ms = 0",
    [ST_CRED_LIST] = "SELECT " CRED_COLS " FROM credentials WHERE account_id = $1 AND kind = $2 AND revoked_ms = 0"
                     " AND (expires_ms = 0 OR expires_ms > $3) ORDER BY id DESC LIMIT $4",
    [ST_PW_SET] = "INSERT INTO passwords(account_id, hash, updated_ms) VALUES ($1, $2, $3)"
                  " ON CONFLICT (account_id) DO UPDATE SET hash = EXCLUDED.hash, updated_ms = EXCLUDED.updated_ms",
    [ST_PW_GET] = "SELECT hash FROM passwords WHERE account_id = $1",
    [ST_USAGE] = "SELECT created_ms / 86400000 AS day, node_class, -SUM(delta), COUNT(*) FROM entries"
                 " WHERE account_id = $1 AND kind = 4 AND created_ms >= $2 AND created_ms < $3"
                 " GROUP BY day, node_class ORDER BY day, node_class LIMIT $4",
    [ST_ATT_RECORD] = "INSERT INTO purchase_attention(session_id, account_id, currency, amount_minor, credits_micro,"
                      " method, reason, first_ms, last_ms, reports) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$8,1)"
                      " ON CONFLICT (session_id) DO UPDATE SET reason = EXCLUDED.reason, last_ms = EXCLUDED.last_ms,"
                      " reports = purchase_attention.reports + 1",
    [ST_ATT_GET] = "SELECT " ATT_COLS " FROM purchase_attention WHERE session_id = $1",
    [ST_ATT_LIST] = "SELECT " ATT_COLS " FROM purchase_attention WHERE $1 OR resolved_ms = 0"
                    " ORDER BY first_ms, session_id LIMIT $2",
    [ST_ATT_RESOLVE] = "UPDATE purchase_attention SET resolved_ms = $1, resolution = $2 WHERE session_id = $3"
                       " AND resolved_ms = 0",
    [ST_RESV_PUT] = "INSERT INTO cc_reservations(server, prompt_id, account_id, left_micro, expires_ms)"
                    " VALUES ($1,$2,$3,$4,$5) ON CONFLICT (server, prompt_id) DO UPDATE SET"
                    " account_id = EXCLUDED.account_id, left_micro = EXCLUDED.left_micro, expires_ms = EXCLUDED.expires_ms",
    [ST_RESV_DROP] = "DELETE FROM cc_reservations WHERE server = $1 AND prompt_id = $2",
    [ST_RESV_OTHERS] = "SELECT COALESCE(SUM(left_micro), 0) FROM cc_reservations WHERE account_id = $1"
                       " AND server <> $2 AND expires_ms > $3",
    [ST_RESV_RENEW] = "UPDATE cc_reservations SET expires_ms = $2 WHERE server = $1",
    [ST_RESV_SWEEP] = "DELETE FROM cc_reservations WHERE expires_ms < $1",
    /* A write transaction's buffered rows, one statement per kind (see "the writer's batch" below). */
    [ST_WB_ENTRIES] =
        "INSERT INTO entries(" ENTRY_COLS ") SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[],"
        " $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[],"
        " $12::bigint[], $13::bigint[], $14::text[], $15::text[], $16::text[], $17::text[], $18::bigint[],"
        " $19::bigint[], $20::bigint[], $21::bigint[], $22::text[], $23::bigint[], $24::text[], $25::text[],"
        " $26::text[], $27::bigint[])",
    [ST_WB_HOLDS] = "INSERT INTO holds(" HOLD_COLS ") SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[],"
                    " $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])",
    [ST_WB_RESOLVES] = "UPDATE holds h SET state = u.state, resolved_by = u.by_entry"
                       " FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS u(id, state, by_entry)"
                       " WHERE h.id = u.id AND h.state + 0 = 0", /* holds_pkey, see ST_HOLD_RESOLVE */
    [ST_WB_ACCOUNTS] =
        "UPDATE accounts a SET display_name = u.dn, active = u.act, role = u.rl, updated_ms = u.upd, balance = u.bal,"
        " held = u.hd, paid_total = u.pt, granted_total = u.gt, spent_total = u.st, uncollected_total = u.ut,"
        " test_balance = u.tb, cap_daily = u.cd, cap_monthly = u.cm, own_cap_daily = u.ocd, own_cap_monthly = u.ocm,"
        " cap_day = u.cday, cap_day_used = u.cdu, cap_month = u.cmon, cap_month_used = u.cmu"
        " FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[],"
        " $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[],"
        " $15::bigint[], $16::bigint[], $17::bigint[], $18::bigint[], $19::bigint[], $20::bigint[])"
        " AS u(id, dn, act, rl, upd, bal, hd, pt, gt, st, ut, tb, cd, cm, ocd, ocm, cday, cdu, cmon, cmu)"
        " WHERE a.id = u.id",
    /* ... and the same for a table with one buffered row (ST_HOLD_INSERT for holds) */
    [ST_WB_ENTRY1] = "INSERT INTO entries(" ENTRY_COLS ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,"
                     "$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26,$27)",
    [ST_WB_RESOLVE1] = "UPDATE holds SET state = $2, resolved_by = $3 WHERE id = $1 AND state + 0 = 0",
    [ST_WB_ACCOUNT1] =
        "UPDATE accounts SET display_name = $2, active = $3, role = $4, updated_ms = $5, balance = $6, held = $7,"
        " paid_total = $8, granted_total = $9, spent_total = $10, uncollected_total = $11, test_balance = $12,"
        " cap_daily = $13, cap_monthly = $14, own_cap_daily = $15, own_cap_monthly = $16, cap_day = $17,"
        " cap_day_used = $18, cap_month = $19, cap_month_used = $20 WHERE id = $1",
    /* prefetch: what a batch will look up, in one round trip */
    /* the entries of the keys ($1) and of the holds ($2: a hold's id is its entry's) */
    [ST_PF_KEYS] = "SELECT " ENTRY_COLS " FROM entries WHERE op_key = ANY($1::text[]) OR id = ANY($2::bigint[])",
    [ST_PF_HOLDS] = "SELECT " HOLD_COLS " FROM holds WHERE id = ANY($1::bigint[])",
    /* After a write transaction committed without waiting for its flush: a
    ** transaction that writes one WAL record and commits with the session's
    ** synchronous_commit, so it returns once the WAL is flushed past both. */
    [ST_FLUSH] = "SELECT pg_logical_emit_message(true, 'comfy-credits', 'durable')",
    [ST_PF_ACCOUNTS] = "SELECT " ACCOUNT_COLS " FROM accounts WHERE id = ANY($1::bigint[]"
                       " || ARRAY(SELECT account_id FROM holds WHERE id = ANY($2::bigint[])))",
    /* Write transactions: more entry ids from the sequence; a shared one counts its commit. */
    [ST_MORE_IDS] = NEXT_IDS("$1"),
    [ST_SHARED_MARK] = "SELECT nextval('cc_shared_writes')",
    /* begin_write: the lock (the transaction then commits without waiting
    ** for its flush, pg_commit), the write counters, the last entry id. */
    [ST_LOCK_X] = "SELECT set_config('synchronous_commit', 'off', true), pg_advisory_xact_lock($1)",
    [ST_HEAD_X] = "UPDATE cc_writes SET n = n + 1 WHERE id = 1 RETURNING n, " SHARED_WRITES ","
                  " ARRAY(" NEXT_IDS("$1") ")",
    /* begin_write_shared in one statement: the shared lock ($2), then the
    ** counters and $1 entry ids. The transaction's snapshot is taken as the
    ** statement starts, before the lock is waited for (as when the lock was a
    ** statement of its own); the row is projected, and the ids taken, only
    ** once the lock is held (the lock's function scan is part of the join). */
    [ST_HEAD_S] = "SELECT w.n, " SHARED_WRITES ", ARRAY(" NEXT_IDS("$1") ")"
                  " FROM pg_advisory_xact_lock_shared($2) AS l, cc_writes AS w WHERE w.id = 1",
};

/* ---------------------------------------------------------------- types */

typedef struct pg_store {
    cc_store base;
    char *uri;                  /* with the password, if the operator put one there: never printed */
    char where[300];            /* postgresql://user@host:port/db, for messages */
    int timeout_ms;
    int wait_for_server;        /* unreachable at connect: keep retrying (cc_store_pg_wait_for_server) */
    int64_t writer_waits;       /* round trips the writer connections waited for (cc_store_pg_writer_round_trips) */
    int64_t shared_commits;     /* shared write transactions committed (cc_store_pg_shared_stats) */
    int64_t shared_conflicts;   /* ... and rolled back on a conflict */
} pg_store;

typedef struct wtx wtx;

typedef struct pg_conn {
    cc_conn base;
    pg_store *st;
    PGconn *pg;
    int writer;
    int in_tx;                  /* inside begin_write/begin_read: never reconnect silently there */
    int ready;                  /* session settings applied, statements prepared */
    int64_t writes_seen;        /* cc_writes.n after this connection's last write; -1 = never */
    int64_t writes_now;         /* cc_writes.n read by the current begin_write */
    int64_t shared_seen;        /* cc_shared_writes after this connection's last write; -1 = never */
    int64_t shared_now;         /* ... read by the current begin */
    int shared;                 /* the current write transaction is shared (begin_write_shared) */
    int conflict;               /* ... and failed on a conflict: conflicted() */
    int last_shared;            /* the last write transaction was shared: the ledger's caches may be stale */
    int64_t others_ms;          /* when a begin last found other connections' writes (others_write()) */
    /* Opened while PostgreSQL was unreachable (wait_for_server): never connected
    ** yet, so the writer still has to check and migrate the schema; attempts
    ** are spaced by a doubling backoff so requests fail fast meanwhile. */
    int never_connected;
    int64_t retry_at_ms;
    int backoff_ms;
    /* Inside a write transaction the connection is in libpq's pipeline mode:
    ** statements whose answer the ledger does not wait for (hold rows,
    ** resolutions, account rows) are sent without waiting; their results are
    ** read, and checked, before the next statement that answers, and at COMMIT. */
    int pipe;
    int pending;
    wtx *tx;                    /* writer only: the batch's ids, buffered rows and read cache */
    const cc_prefetch *pf_next; /* asked before begin_write: read with the lock (pg_begin_write) */
    struct {
        int64_t expect;         /* rows the statement must change; -1: any */
        int64_t id;
        const char *what;
    } pend[CC_PG_PENDING_MAX];
} pg_conn;

typedef struct prm {
    const char *v[CC_PG_PARAMS_MAX];
    int len[CC_PG_PARAMS_MAX];
    int fmt[CC_PG_PARAMS_MAX];
    char num[CC_PG_PARAMS_MAX][24];
    int n;
} prm;

static void p_i64(prm *p, int64_t x) {
    CC_ASSERT(p->n < CC_PG_PARAMS_MAX);
    snprintf(p->num[p->n], sizeof p->num[p->n], "%lld", (long long)x);
    p->v[p->n] = p->num[p->n];
    p->len[p->n] = 0;
    p->fmt[p->n] = 0;
    p->n++;
}

static void p_txt(prm *p, const char *s) {
    CC_ASSERT(p->n < CC_PG_PARAMS_MAX);
    p->v[p->n] = s ? s : "";
    p->len[p->n] = 0;
    p->fmt[p->n] = 0;
    p->n++;
}

static void p_bin(prm *p, const void *b, int n) {
    CC_ASSERT(p->n < CC_PG_PARAMS_MAX);
    p->v[p->n] = b;
    p->len[p->n] = n;
    p->fmt[p->n] = 1;
    p->n++;
}

/* libpq's message as one line (its messages end in newlines, some have two). */
static void one_line(const char *in, char *out, size_t cap) {
    size_t j = 0;
    for (size_t i = 0; in && in[i] && j + 1 < cap; i++) {
        char ch = in[i];
        if (ch == '\n' || ch == '\r' || ch == '\t') {
            if (in[i + 1] == 0) break;
            if (j >= 2 && out[j - 1] == ' ' && out[j - 2] == ';') continue;
            if (j + 2 >= cap) break;
            out[j++] = ';';
            ch = ' ';
        }
        out[j++] = ch;
    }
    while (j && (out[j - 1] == ' ' || out[j - 1] == ';')) j--;
    out[j] = 0;
}

static cc_rc pg_fail(pg_conn *c, cc_error *err, const char *what, const PGresult *res) {
    char msg[300];
    const char *m = res ? PQresultErrorMessage(res) : NULL;
    if (!m || !*m) m = c->pg ? PQerrorMessage(c->pg) : "no connection";
    one_line(m, msg, sizeof msg);
    if (c->pg && PQstatus(c->pg) != CONNECTION_OK)
        return cc_fail(err, CC_ERR_STORAGE, "database", "PostgreSQL %s is unreachable (%s): %s", c->st->where, what,
                       msg);
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    /* In a shared write transaction: a row changed since the snapshot
    ** (serialization failure), a deadlock, or a key another server just
    ** took. Nothing was written; the batch runs again under the lock. */
    if (c->shared && state &&
        (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 || strcmp(state, "23505") == 0))
        c->conflict = 1;
    if (state && strcmp(state, "57014") == 0)
        return cc_fail(err, CC_ERR_STORAGE, "database", "postgresql: %s: statement timeout (%d ms) reached",
                       what, c->st->timeout_ms);
    return cc_fail(err, CC_ERR_STORAGE, "database", "postgresql: %s: %s", what, msg);
}

/* ---------------------------------------------------------------- connections */

static cc_rc prepare_all(pg_conn *c, cc_error *err);

static cc_rc session_setup(pg_conn *c, cc_error *err) {
    char sql[300];
    /* A session that stops talking inside a transaction (a frozen or lost
    ** server) would keep the writer lock: PostgreSQL ends it. */
    /* Reader connections write only shared prompt reservations: soft state
    ** with an expiry, visible to the other servers at commit, which need no
    ** fsync to be waited for (synchronous_commit = off; money is written by
    ** the writer connection only, always durably). */
    /* The writer's statements are prepared once per connection and look rows
    ** up by key (or by arrays of keys): a generic plan fits every call, and
    ** PostgreSQL's default (auto) plans some of them afresh on every call
    ** (custom plans for array parameters). PostgreSQL 12 and later. */
    int generic = c->writer && PQserverVersion(c->pg) >= 120000;
    snprintf(sql, sizeof sql,
             "SET statement_timeout = %d; SET idle_in_transaction_session_timeout = %d;"
             " SET client_min_messages = warning%s%s",
             c->st->timeout_ms, c->st->timeout_ms > 0 ? c->st->timeout_ms : 60000,
             c->writer ? "" : "; SET synchronous_commit = off", generic ? "; SET plan_cache_mode = force_generic_plan" : "");
    PGresult *r = PQexec(c->pg, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    cc_rc rc = ok ? CC_OK : pg_fail(c, err, "session settings", r);
    PQclear(r);
    return rc;
}

/* PostgreSQL is down or not reachable (as opposed to a wrong password, a
** missing database or user: mistakes that waiting does not fix). */
static int unreachable(const char *msg) {
    static const char *const down[] = {"Connection refused", "timeout expired", "could not translate",
                                       "No such file or directory", "the database system is starting up",
                                       "the database system is shutting down", "the database system is in recovery",
                                       "Network is unreachable", "No route to host", "server closed the connection",
                                       NULL};
    for (int i = 0; msg && down[i]; i++)
        if (strstr(msg, down[i])) return 1;
    return 0;
}

static cc_rc conn_fail(pg_conn *c, cc_error *err) {
    char msg[300];
    one_line(PQerrorMessage(c->pg), msg, sizeof msg);
    const char *hint = "";
    if (strstr(msg, "password authentication failed") || strstr(msg, "no password supplied"))
        hint = " (check the password: PGPASSWORD, ~/.pgpass or the URI)";
    else if (strstr(msg, "does not exist"))
        hint = " (create it first, e.g. createdb, or fix the name in the URI)";
    else if (strstr(msg, "Connection refused") || strstr(msg, "timeout expired") || strstr(msg, "could not translate"))
        hint = " (is PostgreSQL running and reachable at that host and port?)";
    return cc_fail(err, CC_ERR_STORAGE, "database", "cannot connect to PostgreSQL %s: %s%s", c->st->where, msg,
                   hint);
}

static PGconn *open_pg(const pg_store *st) {
    /* Defaults first: the URI's own settings override them (expand_dbname);
    ** client_encoding comes last, so it is always UTF8. */
    const char *keys[] = {"connect_timeout", "application_name", "keepalives_idle", "keepalives_interval",
                          "keepalives_count", "dbname", "client_encoding", NULL};
    const char *vals[] = {CC_PG_CONNECT_TIMEOUT_S, "comfy-credits", "30", "10", "3", st->uri, "UTF8", NULL};
    return PQconnectdbParams(keys, vals, 1);
}

/* A new connection in place of a broken one (its pipeline state included). */
static int reopen(pg_conn *c) {
    PGconn *fresh = open_pg(c->st);
    if (!fresh) return 0;
    PQfinish(c->pg);
    c->pg = fresh;
    c->pipe = 0;
    c->pending = 0;
    c->ready = 0;
    return PQstatus(c->pg) == CONNECTION_OK;
}

static cc_rc migrate(pg_conn *c, cc_error *err);
static cc_rc wb_send(pg_conn *c, cc_error *err);
static cc_rc exec_sql(pg_conn *c, const char *sql, const char *what, cc_error *err);

/* A broken connection is re-opened here, at its next use. */
static cc_rc ensure(pg_conn *c, cc_error *err) {
    if (c->pg && PQstatus(c->pg) == CONNECTION_OK && c->ready) return CC_OK;
    /* Inside a transaction a new connection would run the rest outside it
    ** (and outside the writer lock): the transaction fails instead. */
    if (c->in_tx) return pg_fail(c, err, "transaction interrupted", NULL);
    if (c->never_connected && cc_now_ms() < c->retry_at_ms)
        return cc_fail(err, CC_ERR_STORAGE, "database",
                       "PostgreSQL %s is unreachable (not reached since start-up; next attempt in %lld ms)",
                       c->st->where, (long long)(c->retry_at_ms - cc_now_ms()));
    if (c->pg && PQstatus(c->pg) != CONNECTION_OK && !reopen(c)) {
        if (c->never_connected) {
            c->backoff_ms = c->backoff_ms * 2 > CC_PG_RETRY_MS_MAX ? CC_PG_RETRY_MS_MAX : c->backoff_ms * 2;
            c->retry_at_ms = cc_now_ms() + c->backoff_ms;
        }
        return conn_fail(c, err);
    }
    /* A connection that failed half-way through preparing keeps what it prepared. */
    cc_rc rc = exec_sql(c, "DEALLOCATE ALL", "session reset", err);
    if (rc == CC_OK) rc = session_setup(c, err);
    if (rc == CC_OK && c->never_connected && c->writer) rc = migrate(c, err);
    if (rc == CC_OK) rc = prepare_all(c, err);
    if (rc != CC_OK) return rc;
    c->never_connected = 0;
    c->ready = 1;
    c->writes_seen = c->shared_seen = -1; /* someone may have written meanwhile */
    return CC_OK;
}

static cc_rc prepare_all(pg_conn *c, cc_error *err) {
    for (int i = 0; i < ST_COUNT; i++) {
        char name[16];
        snprintf(name, sizeof name, "cc%d", i);
        PGresult *r = PQprepare(c->pg, name, STMT_SQL[i], 0, NULL);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok) {
            cc_rc rc;
            if (PQstatus(c->pg) != CONNECTION_OK) {
                rc = pg_fail(c, err, "prepare", r);
            } else {
                char msg[300];
                one_line(PQresultErrorMessage(r), msg, sizeof msg);
                rc = cc_fail(err, CC_ERR_STORAGE, "database", "PostgreSQL database %s is not a comfy-credits ledger (%s)",
                             c->st->where, msg);
            }
            PQclear(r);
            return rc;
        }
        PQclear(r);
    }
    return CC_OK;
}

/* libpq notices a connection closed by a restarted server only when it
** uses it. Outside a transaction, a statement that failed that way is sent
** once more on a fresh connection: nothing of it ran. */
static int retry_on_new_connection(pg_conn *c, const PGresult *failed) {
    if (c->in_tx || !c->pg) return 0;
    const char *st = failed ? PQresultErrorField(failed, PG_DIAG_SQLSTATE) : NULL;
    /* No SQLSTATE: libpq's own "server closed the connection"; class 08:
    ** connection exception; 57P0x: the server shut down or restarted. */
    int lost = PQstatus(c->pg) != CONNECTION_OK || !st || strncmp(st, "08", 2) == 0 || strncmp(st, "57P0", 4) == 0;
    if (!lost || !reopen(c)) return 0;
    cc_error ignored;
    return ensure(c, &ignored) == CC_OK;
}

/* Reads the results of the deferred statements, in order; the first
** failure or unexpected row count is the answer (the ledger then rolls the
** batch back). */
static cc_rc pipe_drain(pg_conn *c, cc_error *err) {
    cc_rc rc = CC_OK;
    if (c->pending && (!PQsendFlushRequest(c->pg) || PQflush(c->pg) != 0))
        rc = pg_fail(c, err, "send", NULL);
    for (int k = 0; rc == CC_OK && k < c->pending; k++) {
        PGresult *r = PQgetResult(c->pg);
        if (!r) {
            rc = pg_fail(c, err, c->pend[k].what, NULL);
            break;
        }
        if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
            rc = pg_fail(c, err, c->pend[k].what, r);
        else if (c->pend[k].expect >= 0 && strtoll(PQcmdTuples(r), NULL, 10) != c->pend[k].expect)
            rc = cc_fail(err, CC_ERR_STORAGE, "database", "postgresql: %s %lld changed %s rows, not %lld",
                         c->pend[k].what, (long long)c->pend[k].id, PQcmdTuples(r), (long long)c->pend[k].expect);
        PQclear(r);
        PGresult *end = PQgetResult(c->pg); /* NULL: the end of this statement's results */
        if (end) PQclear(end);
    }
    c->pending = 0;
    return rc;
}

/* Leaves pipeline mode: everything up to the sync is read and dropped. */
static void pipe_end(pg_conn *c, int synced) {
    if (!c->pipe) return;
    c->pending = 0;
    if (PQstatus(c->pg) == CONNECTION_OK && (synced || PQpipelineSync(c->pg))) {
        for (int guard = 0; guard < 4 * CC_PG_PENDING_MAX + 16; guard++) {
            PGresult *r = PQgetResult(c->pg);
            if (!r) {
                if (PQstatus(c->pg) != CONNECTION_OK) break;
                continue;
            }
            ExecStatusType s = PQresultStatus(r);
            PQclear(r);
            if (s == PGRES_PIPELINE_SYNC) break;
        }
    }
    PQexitPipelineMode(c->pg);
    c->pipe = 0;
}

static PGresult *run_in_pipe(pg_conn *c, const char *name, const prm *p, const char *what, cc_error *err) {
    if (!PQsendQueryPrepared(c->pg, name, p ? p->n : 0, p ? p->v : NULL, p ? p->len : NULL, p ? p->fmt : NULL, 0) ||
        !PQsendFlushRequest(c->pg) || PQflush(c->pg) != 0) {
        pg_fail(c, err, what, NULL);
        return NULL;
    }
    if (pipe_drain(c, err) != CC_OK) return NULL; /* the rollback reads the rest */
    PGresult *r = PQgetResult(c->pg);
    PGresult *end = PQgetResult(c->pg);
    if (end) PQclear(end);
    ExecStatusType s = PQresultStatus(r);
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) return r;
    pg_fail(c, err, what, r);
    PQclear(r);
    return NULL;
}

/* Runs prepared statement i. Returns the result (caller clears) or NULL
** with err filled. */
/* One more round trip waited for by a writer connection (used by one thread at a time). */
static void waited(pg_conn *c) {
    if (c->writer) c->st->writer_waits++;
}

static PGresult *run(pg_conn *c, int i, const prm *p, const char *what, cc_error *err) {
    if (ensure(c, err) != CC_OK) return NULL;
    waited(c);
    char name[16];
    snprintf(name, sizeof name, "cc%d", i);
    if (c->pipe) {
        if (wb_send(c, err) != CC_OK) return NULL; /* the statement must see the batch's writes */
        return run_in_pipe(c, name, p, what, err);
    }
    for (int attempt = 0;; attempt++) {
        PGresult *r = PQexecPrepared(c->pg, name, p ? p->n : 0, p ? p->v : NULL, p ? p->len : NULL,
                                     p ? p->fmt : NULL, 0);
        ExecStatusType s = PQresultStatus(r);
        if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) return r;
        if (attempt == 0 && retry_on_new_connection(c, r)) {
            PQclear(r);
            continue;
        }
        pg_fail(c, err, what, r);
        PQclear(r);
        return NULL;
    }
}

/* Sends a statement inside a write transaction without waiting for its
** answer (checked by pipe_drain: its status and, unless expect < 0, the rows
** it changed). */
static cc_rc defer_raw(pg_conn *c, int i, const prm *p, int64_t expect, int64_t id, const char *what,
                       cc_error *err) {
    if (c->pending == CC_PG_PENDING_MAX) {
        waited(c);
        cc_rc rc = pipe_drain(c, err);
        if (rc != CC_OK) return rc;
    }
    char name[16];
    snprintf(name, sizeof name, "cc%d", i);
    if (!PQsendQueryPrepared(c->pg, name, p->n, p->v, p->len, p->fmt, 0)) return pg_fail(c, err, what, NULL);
    c->pend[c->pending].expect = expect;
    c->pend[c->pending].id = id;
    c->pend[c->pending].what = what;
    c->pending++;
    return CC_OK;
}

/* A statement whose answer nobody waits for: inside a write transaction it
** is sent now, after what the batch buffered, and checked later (pipe_drain);
** else it runs at once. expect: the rows it must change (-1: any). */
static cc_rc defer(pg_conn *c, int i, const prm *p, int64_t expect, int64_t id, const char *what, cc_error *err) {
    if (!c->pipe) {
        PGresult *r = run(c, i, p, what, err);
        if (!r) return CC_ERR_STORAGE;
        cc_rc rc = (expect < 0 || strtoll(PQcmdTuples(r), NULL, 10) == expect)
                       ? CC_OK
                       : cc_fail(err, CC_ERR_STORAGE, "database", "postgresql: %s %lld changed %s rows, not %lld", what,
                                 (long long)id, PQcmdTuples(r), (long long)expect);
        PQclear(r);
        return rc;
    }
    cc_rc rc = wb_send(c, err);
    return rc == CC_OK ? defer_raw(c, i, p, expect, id, what, err) : rc;
}

static cc_rc exec_sql(pg_conn *c, const char *sql, const char *what, cc_error *err) {
    PGresult *r = PQexec(c->pg, sql);
    ExecStatusType s = PQresultStatus(r);
    cc_rc rc = (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) ? CC_OK : pg_fail(c, err, what, r);
    PQclear(r);
    return rc;
}

/* ---------------------------------------------------------------- reading rows */

static int64_t gi(const PGresult *r, int row, int col) {
    const char *v = PQgetvalue(r, row, col);
    return v ? strtoll(v, NULL, 10) : 0;
}

static void gt(char *dst, size_t cap, const PGresult *r, int row, int col) {
    int n = PQgetlength(r, row, col);
    /* The ledger validated lengths on the way in; a longer value means the
    ** table was edited by hand. Truncating would hide it, so stop. */
    CC_ASSERT(n >= 0 && (size_t)n < cap);
    memcpy(dst, PQgetvalue(r, row, col), (size_t)n);
    dst[n] = 0;
}

static void read_account(const PGresult *r, int i, cc_account *a) {
    a->id = gi(r, i, 0);
    gt(a->email, sizeof a->email, r, i, 1);
    gt(a->display_name, sizeof a->display_name, r, i, 2);
    a->active = (int)gi(r, i, 3);
    a->role = (int)gi(r, i, 4);
    a->created_ms = gi(r, i, 5);
    a->updated_ms = gi(r, i, 6);
    a->balance = gi(r, i, 7);
    a->held = gi(r, i, 8);
    a->paid_total = gi(r, i, 9);
    a->granted_total = gi(r, i, 10);
    a->spent_total = gi(r, i, 11);
    a->uncollected_total = gi(r, i, 12);
    a->test_balance = gi(r, i, 13);
    int64_t *caps[] = {&a->cap_daily, &a->cap_monthly, &a->own_cap_daily, &a->own_cap_monthly,
                       &a->cap_day, &a->cap_day_used, &a->cap_month, &a->cap_month_used};
    for (int k = 0; k < 8; k++) *caps[k] = gi(r, i, 14 + k);
}

/* The spending caps of an account (caps.h) as parameters, in ACCOUNT_COLS order. */
static void p_caps(prm *p, const cc_account *a) {
    const int64_t caps[] = {a->cap_daily, a->cap_monthly, a->own_cap_daily, a->own_cap_monthly,
                            a->cap_day, a->cap_day_used, a->cap_month, a->cap_month_used};
    for (int k = 0; k < 8; k++) p_i64(p, caps[k]);
}

static void read_entry(const PGresult *r, int i, cc_entry *e) {
    e->id = gi(r, i, 0);
    gt(e->key, sizeof e->key, r, i, 1);
    e->kind = (int)gi(r, i, 2);
    e->account_id = gi(r, i, 3);
    e->amount = gi(r, i, 4);
    e->delta = gi(r, i, 5);
    e->held_delta = gi(r, i, 6);
    e->uncollected = gi(r, i, 7);
    e->balance_after = gi(r, i, 8);
    e->held_after = gi(r, i, 9);
    e->hold_id = gi(r, i, 10);
    e->ttl_ms = gi(r, i, 11);
    e->created_ms = gi(r, i, 12);
    gt(e->prompt_id, sizeof e->prompt_id, r, i, 13);
    gt(e->node_id, sizeof e->node_id, r, i, 14);
    gt(e->node_class, sizeof e->node_class, r, i, 15);
    gt(e->model, sizeof e->model, r, i, 16);
    e->tokens_in = gi(r, i, 17);
    e->tokens_out = gi(r, i, 18);
    e->images = gi(r, i, 19);
    e->seconds_ms = gi(r, i, 20);
    gt(e->currency, sizeof e->currency, r, i, 21);
    e->amount_minor = gi(r, i, 22);
    gt(e->method, sizeof e->method, r, i, 23);
    gt(e->external_ref, sizeof e->external_ref, r, i, 24);
    gt(e->note, sizeof e->note, r, i, 25);
    e->test_after = gi(r, i, 26);
}

static void read_hold(const PGresult *r, int i, cc_hold *h) {
    h->id = gi(r, i, 0);
    h->account_id = gi(r, i, 1);
    h->amount = gi(r, i, 2);
    h->state = (int)gi(r, i, 3);
    h->expires_ms = gi(r, i, 4);
    h->resolved_by = gi(r, i, 5);
    h->credential_id = gi(r, i, 6);
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static void read_cred(const PGresult *r, int i, cc_credential *c) {
    c->id = gi(r, i, 0);
    c->kind = (int)gi(r, i, 1);
    c->account_id = gi(r, i, 2);
    const char *h = PQgetvalue(r, i, 3); /* bytea, text output: \x + hex */
    CC_ASSERT(PQgetlength(r, i, 3) == 2 + 2 * CC_CRED_HASH_BYTES && h[0] == '\\' && h[1] == 'x');
    for (int k = 0; k < CC_CRED_HASH_BYTES; k++) {
        int hi = hexval(h[2 + 2 * k]), lo = hexval(h[3 + 2 * k]);
        CC_ASSERT(hi >= 0 && lo >= 0);
        c->hash[k] = (unsigned char)(hi * 16 + lo);
    }
    gt(c->label, sizeof c->label, r, i, 4);
    gt(c->hint, sizeof c->hint, r, i, 5);
    c->created_ms = gi(r, i, 6);
    c->expires_ms = gi(r, i, 7);
    c->revoked_ms = gi(r, i, 8);
    c->cap_micro = gi(r, i, 9);
    c->cap_used = gi(r, i, 10);
}

/* ---------------------------------------------------------------- the writer's batch
**
** Inside a write transaction nobody else writes (the writer lock), so the
** writer connection may keep the transaction's state in memory and talk to
** PostgreSQL once per kind of row rather than once per operation:
**   - Entry ids are known here: taken from the entries' sequence with the
**     lock (begin_write), one per key the batch names, more in one round
**     trip if it needs them; no INSERT has to answer with its id. (An older
**     build numbered max(id) + 1 under the lock and moved the sequence past
**     it: both kinds of writer can share a database.)
**   - Entry rows, hold rows, hold resolutions and account rows are buffered
**     and sent as ONE multi-row statement per kind (unnest of arrays), in the
**     pipeline, right before the next statement that must see them and at
**     COMMIT. Each statement's row count is checked (a resolution must find
**     its hold open: WHERE state = 0). A batch's writes thus ride with its COMMIT.
**   - prefetch() reads what a batch will look up (its keys: taken or free;
**     holds; their entries; accounts) in one round trip; those lookups are
**     then answered from memory, kept current by the transaction's own writes.
**     Anything else is read from the database after the buffered rows were
**     sent (run()), so every read sees every write before it.
** Nothing of it outlives the transaction: commit and rollback drop it all. */

#define CC_PG_WB_ROWS_MAX 4096    /* buffered rows of one kind before they are sent */
#define CC_PG_TX_KEYS_MAX 16384   /* idempotency keys known (taken or free) in one transaction */
#define CC_PG_TX_ROWS_MAX 8192    /* entries, holds and accounts each cached in one transaction */
#define CC_PG_TX_ROWS_MIN 64      /* first allocation of each cache (grows by doubling) */

enum { WB_ENT_COLS = 27, WB_HOLD_COLS = 7, WB_RES_COLS = 3, WB_ACC_COLS = 20, WB_COLS_MAX = 27 };

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

typedef struct wb_table {
    sbuf col[WB_COLS_MAX];      /* one array literal per column: {v1,v2,...} */
    int ncols, rows;
    /* The first row's values as well, each NUL-terminated: a table with one
    ** row (every per-op commit) is sent as one row's parameters, which
    ** PostgreSQL binds without parsing arrays and unnesting them. */
    sbuf one;
    size_t one_at[WB_COLS_MAX];
    char bin[WB_COLS_MAX];      /* the column is binary bigint[] (wb_i64), not an array literal */
} wb_table;

enum { KEY_FREE = 1, KEY_TAKEN = 2 };
typedef struct key_slot {
    uint32_t gen;               /* != wtx.gen: empty */
    uint32_t hash;
    uint32_t off;               /* the key in wtx.arena */
    int32_t ent;                /* KEY_TAKEN: its row in wtx.ents, or -1 (not cached) */
    int state;
} key_slot;

typedef struct row_cache {
    void *rows;                 /* cc_entry[], cc_hold[] or cc_account[] */
    size_t row_bytes;
    int n, cap;
    i64map by_id;               /* id -> index + 1 */
} row_cache;

struct wtx {
    int64_t *ids;               /* entry ids taken from the sequence ... */
    int nids, ids_at, ids_cap;  /* ... how many, the next one to use */
    wb_table ent, hold, res, acc;
    i64map acc_buffered;        /* accounts with a buffered row (one row per account per statement) */
    int oom;
    key_slot *keys;             /* 2 * CC_PG_TX_KEYS_MAX slots */
    uint32_t gen;
    int nkeys;
    sbuf arena;                 /* the keys' text */
    sbuf scratch[2];            /* prefetch parameters */
    row_cache ents, holds, accs;
};

static int sb_reserve(wtx *t, sbuf *b, size_t more) {
    if (b->n + more + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        t->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void sb_put(wtx *t, sbuf *b, const char *s, size_t n) {
    if (sb_reserve(t, b, n) != 0) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

/* An array element: integers as they are, text quoted (array literal syntax). */
static void sb_elem_i64(wtx *t, sbuf *b, int first, int64_t v) {
    char num[24];
    int n = snprintf(num, sizeof num, "%c%lld", first ? '{' : ',', (long long)v);
    sb_put(t, b, num, (size_t)n);
}

static void sb_elem_txt(wtx *t, sbuf *b, int first, const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (sb_reserve(t, b, 2 * n + 3) != 0) return;
    char *o = b->p + b->n;
    *o++ = first ? '{' : ',';
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') *o++ = '\\';
        *o++ = s[i];
    }
    *o++ = '"';
    b->n = (size_t)(o - b->p);
    b->p[b->n] = 0;
}

/* Integer columns are sent as binary bigint[] (PostgreSQL's array_recv
** format, big-endian): a 20-byte header, filled in when the table is sent
** (wb_send_table), then per element its length (8) and value. No number is
** printed here or parsed there. */
#define WB_BIN_HEAD_BYTES 20
#define PG_INT8_OID 20

static void put_be32(unsigned char *o, uint32_t v) {
    for (int i = 3; i >= 0; i--, v >>= 8) o[i] = (unsigned char)(v & 0xff);
}

static void put_be64(unsigned char *o, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8) o[i] = (unsigned char)(v & 0xff);
}

static void wb_i64(wtx *t, wb_table *w, int col, int64_t v) {
    sbuf *b = &w->col[col];
    if (w->rows == 0) b->n = 0;
    if (sb_reserve(t, b, WB_BIN_HEAD_BYTES + 12) == 0) {
        if (w->rows == 0) {
            memset(b->p, 0, WB_BIN_HEAD_BYTES);
            b->n = WB_BIN_HEAD_BYTES;
        }
        unsigned char *o = (unsigned char *)b->p + b->n;
        put_be32(o, 8);
        put_be64(o + 4, (uint64_t)v);
        b->n += 12;
    }
    w->bin[col] = 1;
    if (w->rows == 0) {
        char num[24];
        int n = snprintf(num, sizeof num, "%lld", (long long)v);
        w->one_at[col] = w->one.n;
        sb_put(t, &w->one, num, (size_t)n + 1);
    }
}

static void wb_txt(wtx *t, wb_table *w, int col, const char *s) {
    sb_elem_txt(t, &w->col[col], w->rows == 0, s);
    if (w->rows == 0) {
        w->one_at[col] = w->one.n;
        sb_put(t, &w->one, s ? s : "", (s ? strlen(s) : 0) + 1);
    }
}

static void wb_clear(wb_table *w) {
    for (int k = 0; k < w->ncols; k++) w->col[k].n = 0;
    w->one.n = 0;
    w->rows = 0;
}

static void rc_clear(row_cache *rc) {
    if (rc->by_id.count) i64map_clear(&rc->by_id, NULL);
    rc->n = 0;
}

static void *rc_get(const row_cache *rc, int64_t id) {
    if (id <= 0 || !rc->rows) return NULL;
    intptr_t k = (intptr_t)i64map_get(&rc->by_id, id);
    return k ? (char *)rc->rows + (size_t)(k - 1) * rc->row_bytes : NULL;
}

/* A slot for row `id` (the cached one if any); NULL when the cache is full. */
static void *rc_slot(row_cache *rc, int64_t id) {
    void *have = rc_get(rc, id);
    if (have) return have;
    if (id <= 0 || rc->n >= CC_PG_TX_ROWS_MAX) return NULL;
    if (rc->n == rc->cap) {
        int cap = rc->cap ? rc->cap * 2 : CC_PG_TX_ROWS_MIN;
        void *rows = realloc(rc->rows, (size_t)cap * rc->row_bytes);
        if (!rows) return NULL;
        rc->rows = rows;
        rc->cap = cap;
    }
    if (i64map_put(&rc->by_id, id, (void *)(intptr_t)(rc->n + 1)) != 0) return NULL;
    return (char *)rc->rows + (size_t)rc->n++ * rc->row_bytes;
}

static void rc_free(row_cache *rc) {
    i64map_destroy(&rc->by_id, NULL);
    free(rc->rows);
}

static void wtx_free(wtx *t) {
    if (!t) return;
    wb_table *ws[] = {&t->ent, &t->hold, &t->res, &t->acc};
    for (int i = 0; i < 4; i++) {
        for (int k = 0; k < WB_COLS_MAX; k++) free(ws[i]->col[k].p);
        free(ws[i]->one.p);
    }
    i64map_destroy(&t->acc_buffered, NULL);
    free(t->keys);
    free(t->arena.p);
    free(t->scratch[0].p);
    free(t->scratch[1].p);
    rc_free(&t->ents);
    rc_free(&t->holds);
    rc_free(&t->accs);
    free(t->ids);
    free(t);
}

static wtx *wtx_new(void) {
    wtx *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ent.ncols = WB_ENT_COLS;
    t->hold.ncols = WB_HOLD_COLS;
    t->res.ncols = WB_RES_COLS;
    t->acc.ncols = WB_ACC_COLS;
    t->ents.row_bytes = sizeof(cc_entry);
    t->holds.row_bytes = sizeof(cc_hold);
    t->accs.row_bytes = sizeof(cc_account);
    t->keys = calloc(2 * CC_PG_TX_KEYS_MAX, sizeof *t->keys);
    if (!t->keys || i64map_init(&t->acc_buffered, CC_PG_WB_ROWS_MAX) != 0 ||
        i64map_init(&t->ents.by_id, CC_PG_TX_ROWS_MAX) != 0 || i64map_init(&t->holds.by_id, CC_PG_TX_ROWS_MAX) != 0 ||
        i64map_init(&t->accs.by_id, CC_PG_TX_ROWS_MAX) != 0) {
        wtx_free(t);
        return NULL;
    }
    t->gen = 1;
    return t;
}

/* Forgets the cache (the buffered rows must have been sent or dropped). */
static void wtx_forget(wtx *t) {
    t->gen++;
    if (t->gen == 0) { /* wrapped: really empty every slot */
        memset(t->keys, 0, 2 * CC_PG_TX_KEYS_MAX * sizeof *t->keys);
        t->gen = 1;
    }
    t->nkeys = 0;
    t->arena.n = 0;
    rc_clear(&t->ents);
    rc_clear(&t->holds);
    rc_clear(&t->accs);
}

/* Drops everything of the transaction: buffered rows and cache. */
static void wtx_reset(wtx *t) {
    if (!t) return;
    wb_clear(&t->ent);
    wb_clear(&t->hold);
    wb_clear(&t->res);
    wb_clear(&t->acc);
    if (t->acc_buffered.count) i64map_clear(&t->acc_buffered, NULL);
    t->oom = 0;
    t->nids = t->ids_at = 0;
    wtx_forget(t);
}

static uint32_t key_hash(const char *k) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *k; k++) h = (h ^ (unsigned char)*k) * 16777619u;
    return h;
}

/* The key's slot: the known one, or (add = 1) a new empty one; NULL if absent / full. */
static key_slot *key_find(wtx *t, const char *k, int add) {
    uint32_t h = key_hash(k);
    size_t mask = 2 * CC_PG_TX_KEYS_MAX - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        key_slot *s = &t->keys[i];
        if (s->gen != t->gen) {
            if (!add || t->nkeys >= CC_PG_TX_KEYS_MAX) return NULL;
            size_t n = strlen(k);
            uint32_t off = (uint32_t)t->arena.n;
            sb_put(t, &t->arena, k, n + 1); /* with its NUL */
            if (t->oom) return NULL;
            s->gen = t->gen;
            s->hash = h;
            s->off = off;
            s->ent = -1;
            s->state = 0;
            t->nkeys++;
            return s;
        }
        if (s->hash == h && strcmp(t->arena.p + s->off, k) == 0) return s;
    }
}

/* Records what the database said about a key: its row (e NULL: free). */
static void key_learn(wtx *t, const char *k, const cc_entry *e) {
    key_slot *s = key_find(t, k, 1);
    if (!s) return;
    s->state = e ? KEY_TAKEN : KEY_FREE;
    s->ent = -1;
    if (e) {
        cc_entry *slot = rc_slot(&t->ents, e->id);
        if (slot) {
            *slot = *e;
            s->ent = (int32_t)(((char *)slot - (char *)t->ents.rows) / (ptrdiff_t)sizeof(cc_entry));
        }
    }
}

static int wb_any(const wtx *t) { return t && (t->ent.rows || t->hold.rows || t->res.rows || t->acc.rows); }

/* st: the statement for many rows (arrays), st1: for one (the same columns in the same order). */
static cc_rc wb_send_table(pg_conn *c, int st, int st1, wb_table *w, const char *what, cc_error *err) {
    wtx *t = c->tx;
    if (!w->rows) return CC_OK;
    prm p = {.n = 0};
    for (int k = 0; k < w->ncols; k++) {
        sbuf *b = &w->col[k];
        if (w->rows == 1) {
            p_txt(&p, w->one.p + w->one_at[k]);
        } else if (w->bin[k]) {
            if (t->oom) break;
            unsigned char *h = (unsigned char *)b->p; /* ndim, flags (no NULLs), element type, size, lower bound */
            put_be32(h, 1);
            put_be32(h + 4, 0);
            put_be32(h + 8, PG_INT8_OID);
            put_be32(h + 12, (uint32_t)w->rows);
            put_be32(h + 16, 1);
            p_bin(&p, b->p, (int)b->n);
        } else {
            sb_put(t, b, "}", 1);
            p_txt(&p, b->p);
        }
    }
    if (t->oom) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    if (w->rows == 1) st = st1;
    cc_rc rc = defer_raw(c, st, &p, w->rows, 0, what, err); /* libpq copied the parameters */
    wb_clear(w);
    return rc;
}

/* Sends the buffered rows (entries first: nothing refers to a later kind). */
static cc_rc wb_send(pg_conn *c, cc_error *err) {
    wtx *t = c->tx;
    if (!c->pipe || !wb_any(t)) return CC_OK;
    if (t->oom) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    cc_rc rc = wb_send_table(c, ST_WB_ENTRIES, ST_WB_ENTRY1, &t->ent, "insert entries", err);
    if (rc == CC_OK) rc = wb_send_table(c, ST_WB_HOLDS, ST_HOLD_INSERT, &t->hold, "insert holds", err);
    if (rc == CC_OK) rc = wb_send_table(c, ST_WB_RESOLVES, ST_WB_RESOLVE1, &t->res, "resolve holds", err);
    if (rc == CC_OK) rc = wb_send_table(c, ST_WB_ACCOUNTS, ST_WB_ACCOUNT1, &t->acc, "update accounts", err);
    if (t->acc_buffered.count) i64map_clear(&t->acc_buffered, NULL);
    return rc;
}

static cc_rc wb_full(pg_conn *c, const wb_table *w, cc_error *err) {
    if (c->tx->oom) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    return w->rows >= CC_PG_WB_ROWS_MAX ? wb_send(c, err) : CC_OK;
}

static cc_rc wb_entry(pg_conn *c, const cc_entry *e, cc_error *err) {
    wtx *t = c->tx;
    wb_table *w = &t->ent;
    const int64_t ints[] = {e->kind, e->account_id, e->amount, e->delta, e->held_delta, e->uncollected,
                            e->balance_after, e->held_after, e->hold_id, e->ttl_ms, e->created_ms};
    wb_i64(t, w, 0, e->id);
    wb_txt(t, w, 1, e->key);
    for (int k = 0; k < 11; k++) wb_i64(t, w, 2 + k, ints[k]);
    wb_txt(t, w, 13, e->prompt_id);
    wb_txt(t, w, 14, e->node_id);
    wb_txt(t, w, 15, e->node_class);
    wb_txt(t, w, 16, e->model);
    wb_i64(t, w, 17, e->tokens_in);
    wb_i64(t, w, 18, e->tokens_out);
    wb_i64(t, w, 19, e->images);
    wb_i64(t, w, 20, e->seconds_ms);
    wb_txt(t, w, 21, e->currency);
    wb_i64(t, w, 22, e->amount_minor);
    wb_txt(t, w, 23, e->method);
    wb_txt(t, w, 24, e->external_ref);
    wb_txt(t, w, 25, e->note);
    wb_i64(t, w, 26, e->test_after);
    w->rows++;
    return wb_full(c, w, err);
}

static cc_rc wb_hold(pg_conn *c, const cc_hold *h, cc_error *err) {
    wtx *t = c->tx;
    const int64_t v[WB_HOLD_COLS] = {h->id, h->account_id, h->amount, h->state, h->expires_ms, h->resolved_by,
                                     h->credential_id};
    for (int k = 0; k < WB_HOLD_COLS; k++) wb_i64(t, &t->hold, k, v[k]);
    t->hold.rows++;
    cc_hold *slot = rc_slot(&t->holds, h->id);
    if (slot) *slot = *h;
    return wb_full(c, &t->hold, err);
}

static cc_rc wb_resolve(pg_conn *c, int64_t id, int state, int64_t by_entry, cc_error *err) {
    wtx *t = c->tx;
    wb_i64(t, &t->res, 0, id);
    wb_i64(t, &t->res, 1, state);
    wb_i64(t, &t->res, 2, by_entry);
    t->res.rows++;
    cc_hold *h = rc_get(&t->holds, id);
    if (h) {
        h->state = state;
        h->resolved_by = by_entry;
    }
    return wb_full(c, &t->res, err);
}

static cc_rc wb_account(pg_conn *c, const cc_account *a, cc_error *err) {
    wtx *t = c->tx;
    if (i64map_get(&t->acc_buffered, a->id)) { /* one row per account in one statement */
        cc_rc rc = wb_send(c, err);
        if (rc != CC_OK) return rc;
    }
    wb_table *w = &t->acc;
    const int64_t v[] = {a->updated_ms, a->balance, a->held, a->paid_total, a->granted_total, a->spent_total,
                         a->uncollected_total, a->test_balance, a->cap_daily, a->cap_monthly, a->own_cap_daily,
                         a->own_cap_monthly, a->cap_day, a->cap_day_used, a->cap_month, a->cap_month_used};
    wb_i64(t, w, 0, a->id);
    wb_txt(t, w, 1, a->display_name);
    wb_i64(t, w, 2, a->active);
    wb_i64(t, w, 3, a->role);
    for (int k = 0; k < 16; k++) wb_i64(t, w, 4 + k, v[k]);
    w->rows++;
    if (i64map_put(&t->acc_buffered, a->id, (void *)1) != 0) t->oom = 1; /* cannot happen: sent at WB_ROWS_MAX */
    cc_account *slot = rc_get(&t->accs, a->id);
    if (slot) *slot = *a;
    return wb_full(c, w, err);
}

/* Reads the results of `n` statements sent after the pending ones. */
static cc_rc pf_results(pg_conn *c, PGresult **res, int n, cc_error *err) {
    cc_rc rc = pipe_drain(c, err);
    for (int i = 0; i < n; i++) {
        PGresult *r = rc == CC_OK ? PQgetResult(c->pg) : NULL;
        if (rc == CC_OK && PQresultStatus(r) != PGRES_TUPLES_OK) rc = pg_fail(c, err, "prefetch", r);
        if (r) {
            PGresult *end = PQgetResult(c->pg);
            if (end) PQclear(end);
        }
        if (rc == CC_OK) res[i] = r;
        else if (r) PQclear(r);
    }
    return rc;
}

/* What one prefetch asks: up to 4 statements and their parameters. */
typedef struct pf_plan {
    int sts[4], n;
    prm ps[4];
    sbuf acc;                   /* account ids (the key and hold lists live in wtx.scratch) */
} pf_plan;

/* Marks the keys asked for free (until a row read says taken) and builds
** the statements: keys not known yet, holds (and their entries) and
** accounts (and those of the holds) not cached yet. */
static cc_rc pf_plan_build(wtx *t, const cc_prefetch *pf, pf_plan *pl, cc_error *err) {
    memset(pl, 0, sizeof *pl);
    sbuf *keys = &t->scratch[0], *ids = &t->scratch[1];
    keys->n = ids->n = 0;
    int nk = 0;
    for (int i = 0; i < pf->nkeys; i++) {
        key_slot *s = key_find(t, pf->keys[i], 1);
        if (!s || s->state) continue;
        s->state = KEY_FREE;
        sb_elem_txt(t, keys, nk++ == 0, pf->keys[i]);
    }
    int nh = 0;
    for (int i = 0; i < pf->nholds; i++)
        if (!rc_get(&t->holds, pf->hold_ids[i])) sb_elem_i64(t, ids, nh++ == 0, pf->hold_ids[i]);
    int na = 0;
    for (int i = 0; i < pf->naccounts; i++)
        if (!rc_get(&t->accs, pf->account_ids[i])) sb_elem_i64(t, &pl->acc, na++ == 0, pf->account_ids[i]);
    sb_put(t, keys, nk ? "}" : "{}", nk ? 1 : 2);
    sb_put(t, ids, nh ? "}" : "{}", nh ? 1 : 2);
    sb_put(t, &pl->acc, na ? "}" : "{}", na ? 1 : 2);
    if (t->oom) {
        free(pl->acc.p);
        pl->acc.p = NULL;
        wtx_forget(t); /* keys marked free were never checked */
        return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    if (nk || nh) { /* the keys' entries and the holds' in one statement */
        pl->sts[pl->n] = ST_PF_KEYS;
        p_txt(&pl->ps[pl->n], keys->p);
        p_txt(&pl->ps[pl->n++], ids->p);
    }
    if (nh) {
        pl->sts[pl->n] = ST_PF_HOLDS;
        p_txt(&pl->ps[pl->n++], ids->p);
    }
    if (na || nh) {
        pl->sts[pl->n] = ST_PF_ACCOUNTS;
        p_txt(&pl->ps[pl->n], pl->acc.p);
        p_txt(&pl->ps[pl->n++], ids->p);
    }
    return CC_OK;
}

/* Keeps the rows the plan's statements returned. */
static cc_rc pf_absorb(wtx *t, const pf_plan *pl, PGresult *const *res, cc_error *err) {
    cc_entry *e = malloc(sizeof *e);
    if (!e) {
        wtx_forget(t);
        return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    for (int i = 0; i < pl->n; i++) {
        const PGresult *r = res[i];
        for (int row = 0; row < PQntuples(r); row++) {
            if (pl->sts[i] == ST_PF_KEYS) { /* an asked key's entry or a hold's: its key is taken either way */
                read_entry(r, row, e);
                key_learn(t, e->key, e);
            } else if (pl->sts[i] == ST_PF_HOLDS) {
                cc_hold *slot = rc_slot(&t->holds, gi(r, row, 0));
                if (slot) read_hold(r, row, slot);
            } else {
                cc_account *slot = rc_slot(&t->accs, gi(r, row, 0));
                if (slot) read_account(r, row, slot);
            }
        }
    }
    free(e);
    return CC_OK;
}

/* Before begin_write: kept, and read with the writer lock in its round trip
** (pg_begin_write). Inside a write transaction: read now, one round trip. */
static cc_rc pg_prefetch(cc_conn *b, const cc_prefetch *pf, cc_error *err) {
    pg_conn *c = (pg_conn *)b;
    if (!c->writer) return CC_OK;
    if (!c->pipe) {
        c->pf_next = pf;
        return CC_OK;
    }
    wtx *t = c->tx;
    cc_rc rc = wb_send(c, err);
    if (rc != CC_OK) return rc;
    pf_plan pl;
    if ((rc = pf_plan_build(t, pf, &pl, err)) != CC_OK) return rc;
    for (int i = 0; rc == CC_OK && i < pl.n; i++) {
        char name[16];
        snprintf(name, sizeof name, "cc%d", pl.sts[i]);
        if (!PQsendQueryPrepared(c->pg, name, pl.ps[i].n, pl.ps[i].v, pl.ps[i].len, pl.ps[i].fmt, 0))
            rc = pg_fail(c, err, "prefetch", NULL);
    }
    if (rc == CC_OK && (!PQsendFlushRequest(c->pg) || PQflush(c->pg) != 0)) rc = pg_fail(c, err, "prefetch", NULL);
    PGresult *res[4] = {NULL, NULL, NULL, NULL};
    waited(c);
    if (rc == CC_OK) rc = pf_results(c, res, pl.n, err);
    if (rc == CC_OK) rc = pf_absorb(t, &pl, res, err);
    else wtx_forget(t); /* the rollback reads what is left */
    for (int i = 0; i < pl.n; i++) PQclear(res[i]);
    free(pl.acc.p);
    return rc;
}

/* ---------------------------------------------------------------- transactions */

static void pg_close(cc_conn *b) {
    pg_conn *c = (pg_conn *)b;
    if (!c) return;
    if (c->pg) PQfinish(c->pg);
    wtx_free(c->tx);
    free(c);
}

/* Appends the entry ids a statement returned (one per row) to the shared
** transaction's list. */
static int ids_take(wtx *t, const PGresult *r) {
    int n = PQntuples(r);
    if (t->nids + n > t->ids_cap) {
        int cap = t->ids_cap ? t->ids_cap : 64;
        while (cap < t->nids + n) cap *= 2;
        int64_t *ids = realloc(t->ids, sizeof(int64_t) * (size_t)cap);
        if (!ids) return -1;
        t->ids = ids;
        t->ids_cap = cap;
    }
    for (int i = 0; i < n; i++) t->ids[t->nids++] = gi(r, i, 0);
    return 0;
}

/* Appends the ids of an array literal {1,2,...} to the shared transaction's list. */
static int ids_parse(wtx *t, const char *arr) {
    for (const char *q = arr; *q;) {
        if (*q < '0' || *q > '9') {
            q++;
            continue;
        }
        char *end;
        int64_t id = strtoll(q, &end, 10);
        if (t->nids == t->ids_cap) {
            int cap = t->ids_cap ? 2 * t->ids_cap : 64;
            int64_t *ids = realloc(t->ids, sizeof(int64_t) * (size_t)cap);
            if (!ids) return -1;
            t->ids = ids;
            t->ids_cap = cap;
        }
        t->ids[t->nids++] = id;
        q = end;
    }
    return 0;
}

/* Sends the begin's statements in the pipeline (BEGIN, the lock, the
** counters, the plan's prefetch) and reads their results; head[] keeps the
** counters' (the caller clears it). *lost = 1 when the connection turned
** out to be gone before anything ran (then it is a new one, ready). */
static cc_rc begin_send(pg_conn *c, int shared, int want_ids, const pf_plan *pl, PGresult **head, int *lost,
                        cc_error *err) {
    *lost = 0;
    waited(c);
    prm lk = {.n = 0}, hd = {.n = 0};
    p_i64(&lk, CC_PG_WRITE_LOCK);
    p_i64(&hd, want_ids);
    if (shared) p_i64(&hd, CC_PG_WRITE_LOCK);
    int sts[3 + 4], n = 0;
    const prm *ps[3 + 4];
    if (!shared) { /* READ COMMITTED: the counters' statement must start after the lock is held */
        sts[n] = ST_LOCK_X;
        ps[n++] = &lk;
    }
    sts[n] = shared ? ST_HEAD_S : ST_HEAD_X;
    ps[n++] = &hd;
    int at_head = n; /* its result's index (after BEGIN's) */
    for (int i = 0; i < pl->n; i++) {
        sts[n] = pl->sts[i];
        ps[n++] = &pl->ps[i];
    }
    int sent = PQenterPipelineMode(c->pg);
    if (sent) c->pipe = 1;
    sent = sent && PQsendQueryParams(c->pg, shared ? "BEGIN ISOLATION LEVEL REPEATABLE READ" : "BEGIN", 0, NULL, NULL,
                                     NULL, NULL, 0);
    for (int i = 0; sent && i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "cc%d", sts[i]);
        sent = PQsendQueryPrepared(c->pg, name, ps[i]->n, ps[i]->v, ps[i]->len, ps[i]->fmt, 0);
    }
    sent = sent && PQsendFlushRequest(c->pg) && PQflush(c->pg) == 0;
    if (!sent) {
        if (retry_on_new_connection(c, NULL)) { /* a new connection, not in pipeline mode */
            *lost = 1;
            return CC_ERR_STORAGE;
        }
        return pg_fail(c, err, "begin write", NULL);
    }
    cc_rc rc = CC_OK;
    PGresult *res[1 + 3 + 4] = {NULL};
    int got = 0;
    for (int k = 0; k < 1 + n && rc == CC_OK; k++) {
        PGresult *r = PQgetResult(c->pg);
        ExecStatusType s = PQresultStatus(r);
        if (!r || (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)) {
            if (k == 0 && retry_on_new_connection(c, r)) *lost = 1; /* the BEGIN found the connection gone */
            rc = *lost ? CC_ERR_STORAGE : pg_fail(c, err, "begin write (waiting for the writer lock)", r);
            PQclear(r);
            break;
        }
        res[got++] = r;
        PGresult *end = PQgetResult(c->pg); /* NULL: the end of this statement's results */
        if (end) PQclear(end);
    }
    if (rc == CC_OK && PQntuples(res[at_head]) != 1) rc = pg_fail(c, err, "begin write", NULL);
    if (rc == CC_OK) rc = pf_absorb(c->tx, pl, res + at_head + 1, err);
    for (int i = 0; i < got; i++) {
        if (rc == CC_OK && i == at_head) *head = res[i];
        else PQclear(res[i]);
    }
    return rc;
}

/* Begins a write transaction in one round trip: the lock (exclusive, or
** shared: see "Shared write transactions"), the write counters, the entry
** ids (taken from the sequence) and what the batch will look up (prefetch,
** kept by pg_prefetch). All prepared statements, in the pipeline the
** transaction then stays in. */
static cc_rc begin_tx(pg_conn *c, int shared, cc_error *err) {
    const cc_prefetch *pf = c->pf_next;
    c->pf_next = NULL;
    c->conflict = 0;
    c->shared = 0;
    cc_rc rc = ensure(c, err);
    if (rc != CC_OK) return rc;
    if (!c->tx && !(c->tx = wtx_new())) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    wtx *t = c->tx;
    wtx_reset(t);
    pf_plan pl = {.n = 0};
    if (pf && (rc = pf_plan_build(t, pf, &pl, err)) != CC_OK) return rc;
    /* Entry ids for every key the batch names (each operation writes at
    ** most one entry); an expire that needs more asks again. A shared
    ** transaction takes a few more (expires are common in them); under the
    ** exclusive lock exactly these, so ids stay dense as with SQLite when
    ** every operation writes (test_ledger.c batch_one_commit names the holds
    ** a batch places by id). */
    int want_ids = (pf ? pf->nkeys : 0) + (shared ? 4 : 0);
    int lost = 0;
    PGresult *w = NULL;
    rc = begin_send(c, shared, want_ids, &pl, &w, &lost, err);
    if (lost) rc = begin_send(c, shared, want_ids, &pl, &w, &lost, err); /* once, on the new connection */
    if (lost) rc = pg_fail(c, err, "begin write", NULL);
    free(pl.acc.p);
    if (rc == CC_OK) {
        c->writes_now = gi(w, 0, 0);
        c->shared_now = gi(w, 0, 1);
        if (shared) {
            /* Caches are dropped anyway (data_changed); others: anyone but us since our last write. */
            if (c->writes_now != c->writes_seen || c->shared_now != c->shared_seen) c->others_ms = cc_now_ms();
        } else if (c->writes_seen >= 0 && (c->writes_now != c->writes_seen + 1 || c->shared_now != c->shared_seen)) {
            c->others_ms = cc_now_ms();
        }
        if (ids_parse(t, PQgetvalue(w, 0, 2)) != 0) rc = cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    PQclear(w);
    if (rc != CC_OK) {
        wtx_reset(t);
        if (c->pg) pipe_end(c, 0);
        if (c->pg && PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
            PQclear(PQexec(c->pg, "ROLLBACK"));
        return rc;
    }
    c->in_tx = 1;
    c->shared = shared;
    c->pending = 0;
    return CC_OK;
}

static cc_rc pg_begin_write(cc_conn *b, cc_error *err) { return begin_tx((pg_conn *)b, 0, err); }

static cc_rc pg_begin_write_shared(cc_conn *b, cc_error *err) { return begin_tx((pg_conn *)b, 1, err); }

static int pg_conflicted(cc_conn *b) {
    pg_conn *c = (pg_conn *)b;
    if (c->conflict) c->st->shared_conflicts++; /* asked once per failed shared transaction (commit.c) */
    return c->conflict;
}

/* Others wrote lately: between two of our commits another server's often
** does not fall, so one begin that finds none is no reason to go back to
** the exclusive lock (whose waits for the shared transactions in flight,
** and theirs for it, cost more than a shared transaction alone). */
static int pg_others_write(cc_conn *b) {
    pg_conn *c = (pg_conn *)b;
    return c->others_ms > 0 && cc_now_ms() - c->others_ms < CC_PG_SHARED_LINGER_MS;
}

/* A write a shared transaction does not take (store.h begin_write_shared):
** the batch runs again under the writer lock. */
static cc_rc need_lock(pg_conn *c, const char *what, cc_error *err) {
    c->conflict = 1;
    return cc_fail(err, CC_ERR_STORAGE, "database", "postgresql: %s needs the writer lock", what);
}

static cc_rc pg_commit(cc_conn *b, cc_error *err) {
    pg_conn *c = (pg_conn *)b;
    c->in_tx = 0;
    cc_rc rc = CC_OK;
    PGresult *r = NULL;
    waited(c);
    if (c->pipe) {
        int shared = c->shared;
        rc = wb_send(c, err);
        char flush[16], mark[16];
        snprintf(flush, sizeof flush, "cc%d", ST_FLUSH);
        snprintf(mark, sizeof mark, "cc%d", ST_SHARED_MARK);
        int sent = rc == CC_OK && (!shared || PQsendQueryPrepared(c->pg, mark, 0, NULL, NULL, NULL, 0)) &&
                   PQsendQueryParams(c->pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) &&
                   (shared || PQsendQueryPrepared(c->pg, flush, 0, NULL, NULL, NULL, 0)) && PQpipelineSync(c->pg);
        if (!sent && rc == CC_OK) rc = pg_fail(c, err, "commit", NULL);
        if (rc == CC_OK) rc = pipe_drain(c, err);
        int64_t marked = -1;
        if (rc == CC_OK && shared) { /* this transaction's number among the shared ones */
            r = PQgetResult(c->pg);
            PGresult *end = PQgetResult(c->pg);
            if (end) PQclear(end);
            if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) rc = pg_fail(c, err, "commit", r);
            else marked = gi(r, 0, 0);
            PQclear(r);
            r = NULL;
        }
        if (rc == CC_OK) {
            r = PQgetResult(c->pg);
            PGresult *end = PQgetResult(c->pg);
            if (end) PQclear(end);
            if (PQresultStatus(r) != PGRES_COMMAND_OK || strcmp(PQcmdStatus(r), "COMMIT") != 0)
                rc = pg_fail(c, err, "commit", r);
            PQclear(r);
            r = NULL;
        }
        if (rc == CC_OK && !shared) { /* committed and visible, the writer lock released: now durable */
            PGresult *f = PQgetResult(c->pg);
            if (PQresultStatus(f) != PGRES_TUPLES_OK) rc = pg_fail(c, err, "commit (waiting for the WAL flush)", f);
            PQclear(f);
            PGresult *end = PQgetResult(c->pg);
            if (end) PQclear(end);
        }
        pipe_end(c, sent);
        wtx_reset(c->tx);
        c->shared = 0;
        if (rc == CC_OK) {
            c->writes_seen = c->writes_now;
            c->shared_seen = shared ? marked : c->shared_now;
            c->last_shared = shared;
            if (shared) c->st->shared_commits++;
        }
        if (rc != CC_OK && PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
            PQclear(PQexec(c->pg, "ROLLBACK"));
        return rc;
    } else {
        r = PQexec(c->pg, "COMMIT");
    }
    /* COMMIT of a transaction that had failed answers ROLLBACK: not durable. */
    if (rc == CC_OK && (PQresultStatus(r) != PGRES_COMMAND_OK || strcmp(PQcmdStatus(r), "COMMIT") != 0))
        rc = pg_fail(c, err, "commit", r);
    if (rc == CC_OK) c->writes_seen = c->writes_now;
    PQclear(r);
    if (rc != CC_OK && PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        PGresult *rb = PQexec(c->pg, "ROLLBACK");
        PQclear(rb);
    }
    return rc;
}

static void pg_rollback(cc_conn *b) {
    pg_conn *c = (pg_conn *)b;
    c->in_tx = 0;
    c->shared = 0;
    if (c->pg) pipe_end(c, 0);
    wtx_reset(c->tx);
    if (!c->pg || PQstatus(c->pg) != CONNECTION_OK || PQtransactionStatus(c->pg) == PQTRANS_IDLE) return;
    PGresult *r = PQexec(c->pg, "ROLLBACK");
    PQclear(r);
}

static cc_rc pg_data_changed(cc_conn *b, int *changed, cc_error *err) {
    (void)err;
    pg_conn *c = (pg_conn *)b;
    /* Our own increment is the +1: anything else means another writer. A
    ** shared transaction does not increment cc_writes (it counts itself in
    ** cc_shared_writes) and sees no one else's writes after its snapshot,
    ** so after one (or during one) the ledger's caches are never trusted. */
    *changed = c->shared || c->last_shared || c->writes_seen < 0 || c->writes_now != c->writes_seen + 1 ||
               c->shared_now != c->shared_seen;
    return CC_OK;
}

static cc_rc pg_begin_read(cc_conn *b, cc_error *err) {
    pg_conn *c = (pg_conn *)b;
    cc_rc rc = ensure(c, err);
    if (rc != CC_OK) return rc;
    for (int attempt = 0;; attempt++) {
        PGresult *r = PQexec(c->pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
        if (PQresultStatus(r) == PGRES_COMMAND_OK) {
            PQclear(r);
            c->in_tx = 1;
            return CC_OK;
        }
        if (attempt == 0 && retry_on_new_connection(c, r)) {
            PQclear(r);
            continue;
        }
        rc = pg_fail(c, err, "begin read", r);
        PQclear(r);
        return rc;
    }
    return rc;
}

static void pg_end_read(cc_conn *b) { pg_rollback(b); }

/* ---------------------------------------------------------------- accounts */

static cc_rc pg_account_insert(cc_conn *b, cc_account *a, cc_error *err) {
    pg_conn *c = (pg_conn *)b;
    if (c->shared) return need_lock(c, "insert account", err);
    prm p = {.n = 0};
    p_txt(&p, a->email);
    p_txt(&p, a->display_name);
    p_i64(&p, a->active);
    p_i64(&p, a->role);
    p_i64(&p, a->created_ms);
    p_i64(&p, a->updated_ms);
    p_i64(&p, a->balance);
    p_i64(&p, a->held);
    p_i64(&p, a->paid_total);
    p_i64(&p, a->granted_total);
    p_i64(&p, a->spent_total);
    p_i64(&p, a->uncollected_total);
    p_i64(&p, a->test_balance);
    p_caps(&p, a);
    PGresult *r = run(c, ST_ACC_INSERT, &p, "insert account", err);
    if (!r) return CC_ERR_STORAGE;
    cc_rc rc = CC_OK;
    if (PQntuples(r) == 0)
        rc = cc_fail(err, CC_ERR_EXISTS, "email", "an account with email '%s' already exists", a->email);
    else
        a->id = gi(r, 0, 0);
    PQclear(r);
    return rc;
}

static cc_rc account_one(pg_conn *c, int st, prm *p, cc_account *out, const char *what, cc_error *err) {
    PGresult *r = run(c, st, p, what, err);
    if (!r) return CC_ERR_STORAGE;
    cc_rc rc = CC_OK;
    if (PQntuples(r) == 1) read_account(r, 0, out);
    else rc = cc_fail(err, CC_ERR_NOT_FOUND, "account", "no such account");
    PQclear(r);
    return rc;
}

/* Inside a write transaction: the batch's own rows and what prefetch read. */
static int in_batch(const pg_conn *c) { return c->pipe && c->tx; }

static cc_rc pg_account_get(cc_conn *b, int64_t id, cc_account *out, cc_error *err) {
    pg_conn *c = (pg_conn *)b;
    const cc_account *have = in_batch(c) ? rc_get(&c->tx->accs, id) : NULL;
    if (have) {
        *out = *have;
        return CC_OK;
    }
    prm p = {.n = 0};
    p_i64(&p, id);
    return account_one((pg_conn *)b, ST_ACC_GET, &p, out, "get account", err);
}

static cc_rc pg_account_by_email(cc_conn *b, const char *email, cc_account *out, cc_error *err) {
    prm p = {.n = 0};
    p_txt(&p, email);
    return account_one((pg_conn *)b, ST_ACC_BY_EMAIL, &p, out, "find account", err);
}

static cc_rc pg_account_update(cc_conn *b, const cc_account *a, cc_error *err) {
    pg_conn *c = (pg_conn *)b;
    prm p = {.n = 0};
    p_txt(&p, a->display_name);
    p_i64(&p, a->active);
    p_i64(&p, a->role);
    p_i64(&p, a->updated_ms);
    p_i64(&p, a->balance);
    p_i64(&p, a->held);
    p_i64(&p, a->paid_total);
    p_i64(&p, a->granted_total);
    p_i64(&p, a->spent_total);
    p_i64(&p, a->uncollected_total);
    p_i64(&p, a->test_balance);
    p_caps(&p, a);
    p_i64(&p, a->id);
    /* The ledger updates only accounts it read in this transaction (under
    ** the writer lock): a missing row is a storage fault, found at the latest at COMMIT. */
    if (in_batch(c)) return wb_account(c, a, err);
    return defer(c, ST_ACC_UPDATE, &p, 1, a->id, "update account", err);
}

static cc_rc pg_account_list(cc_conn *b, int64_t after_id, int limit, cc_account *out, int *n_out, cc_error *err) {
    prm p = {.n = 0};
    p_i64(&p, after_id);
    p_i64(&p, limit);
    PGresult *r = run((pg_conn *)b, ST_ACC_LIST, &p, "list accounts", err);
    if (!r) return CC_ERR_STORAGE;
    int n = PQntuples(r);
    if (n > limit) n = limit;
    for (int i = 0; i < n; i++) read_account(r, i, &out[i]);
    *n_out = n;
    PQclear(r);
    return CC_OK;
}

/* ---------------------------------------------------------------- entries */

static cc_rc entry_one(pg_conn *c, int st, prm *p, cc_entry *out, const char *what, cc_error *err,
                       cc_rc missing_rc, const char *field, const char *missing) {
    PGresult *r = run(c, st, p, what, err);
    if (!r) return CC_ERR_STORAGE;
    cc_rc rc = CC_OK;
    if (PQntuples(r) == 1) read_entry(r, 0, out);
    else rc = cc_fail(err, missing_rc, field, "%s", missing);
    PQclear(r);
    return rc;
}

static cc_rc pg_entry_by_key(cc_conn *b, const char *key, cc_entry *out, cc_error *err) {
    pg_conn *c = (pg_conn *)b;
    key_slot *s = in_batch(c) ? key_find(c->tx, key, 0) : NULL;
    if (s && s->state == KEY_FREE) return cc_fail(err, CC_ERR_NOT_FOUND, "key", "no entry with that key");
    if (s && s->state == KEY_TAKEN && s->ent >= 0) {
        *out = ((const cc_entry *)c->tx->ents.rows)[s->ent];
        return CC_OK;
    }
    prm p = {.n = 0};
    p_txt(&p, key);
    cc_rc rc = entry_one(c, ST_ENT_BY_KEY, &p, out, "find entry", err, CC_ERR_NOT_FOUND, "key",
                         "no entry with that key");
    if (in_batch(c) && (rc == CC_OK || rc == CC_ERR_NOT_FOUND)) key_learn(c->tx, key, rc == CC_OK ? out : NULL);
    return rc;
}

static cc_rc pg_entry_get(cc_conn *b, int64_t id, cc_entry *out, cc_error *err) {
    pg_conn *c = (pg_conn *)b;
    const cc_entry *have = in_batch(c) ? rc_get(&c->tx->ents, id) : NULL;
    if (have) {
        *out = *have;
        return CC_OK;
    }
    prm p = {.n = 0};
    p_i64(&p, id);
    return entry_one((pg_conn *)b, ST_ENT_GET, &p, out, "get entry", err, CC_ERR_NOT_FOUND, "entry_id",
                     "no such entry");
}

/* In a batch: a key known taken is refused at once; a free one gets the
** next id and its row is buffered (a key not known yet is looked up first). */
static cc_rc entry_insert_batch(pg_conn *c, cc_entry *e, cc_error *err) {
    wtx *t = c->tx;
    key_slot *s = key_find(t, e->key, 0);
    if (!s || !s->state) {
        cc_entry *seen = malloc(sizeof *seen);
        if (!seen) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
        cc_rc rc = pg_entry_by_key(&c->base, e->key, seen, err);
        free(seen);
        if (rc == CC_OK) return cc_fail(err, CC_ERR_EXISTS, "key", "idempotency key '%.64s' is taken", e->key);
        if (rc != CC_ERR_NOT_FOUND) return rc;
        cc_error_clear(err);
        s = key_find(t, e->key, 0); /* NULL when the cache is full: the key is free all the same */
    } else if (s->state == KEY_TAKEN) {
        return cc_fail(err, CC_ERR_EXISTS, "key", "idempotency key '%.64s' is taken", e->key);
    }
    if (t->ids_at == t->nids) { /* more entries than the batch named keys: one round trip for more */
        int more = t->nids < 64 ? 64 : t->nids; /* doubling: a large batch without a prefetch asks log(n) times */
        prm p = {.n = 0};
        p_i64(&p, more);
        PGresult *r = run(c, ST_MORE_IDS, &p, "entry ids", err);
        if (!r) return CC_ERR_STORAGE;
        int bad = PQntuples(r) != more || ids_take(t, r) != 0;
        PQclear(r);
        if (bad) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    e->id = t->ids[t->ids_at++];
    if (s) {
        s->state = KEY_TAKEN;
        s->ent = -1; /* its row is read back from the database if asked for */
    }
    return wb_entry(c, e, err);
}

static cc_rc pg_entry_insert(cc_conn *b, cc_entry *e, cc_error *err) {
    pg_conn *c = (pg_conn *)b;
    if (in_batch(c)) return entry_insert_batch(c, e, err);
    prm p = {.n = 0};
    p_txt(&p, e->key);
    p_i64(&p, e->kind);
    p_i64(&p, e->account_id);
    p_i64(&p, e->amount);
    p_i64(&p, e->delta);
    p_i64(&p, e->held_delta);
    p_i64(&p, e->uncollected);
    p_i64(&p, e->balance_after);
    p_i64(&p, e->held_after);
    p_i64(&p, e->hold_id);
    p_i64(&p, e->ttl_ms);
    p_i64(&p, e->created_ms);
    p_txt(&p, e->prompt_id);
    p_txt(&p, e->node_id);
    p_txt(&p, e->node_class);
    p_txt(&p, e->model);
    p_i64(&p, e->tokens_in);
    p_i64(&p, e->tokens_out);
    p_i64(&p, e->images);
    p_i64(&p, e->seconds_ms);
    p_txt(&p, e->currency);
    p_i64(&p, e->amount_minor);
    p_txt(&p, e->method);
    p_txt(&p, e->external_ref);
    p_txt(&p, e->note);
    p_i64(&p, e->test_after);
    PGresult *r = run(c, ST_ENT_INSERT, &p, "insert entry", err);
    if (!r) return CC_ERR_STORAGE;
    cc_rc rc = CC_OK;
    if (PQntuples(r) == 0)
        rc = cc_fail(err, CC_ERR_EXISTS, "key", "idempotency key '%.64s' is taken", e->key);
    else
        e->id = gi(r, 0, 0);
    PQclear(r);
    return rc;
}

static cc_rc pg_history(cc_conn *b, const cc_history_query *q, cc_entry *out, int *n_out, cc_error *err) {
    pg_conn *c = (pg_conn *)b;
    CC_ASSERT(q->limit >= 1 && q->limit <= CC_HISTORY_PAGE_MAX);
    CC_ASSERT(!c->pipe); /* read connections only */
    cc_rc rc = ensure(c, err);
    if (rc != CC_OK) return rc;
    char sql[600];
    prm p = {.n = 0};
    char cond[200];
    int off = 0;
    cond[0] = 0;
    p_i64(&p, q->account_id);
#define COND(fmt, val)                                                                                   \
    do {                                                                                                 \
        p_i64(&p, (val));                                                                                \
        off += snprintf(cond + off, sizeof cond - (size_t)off, fmt, p.n);                                \
    } while (0)
    if (q->before_id > 0) COND(" AND id < $%d", q->before_id);
    if (q->kinds_mask) COND(" AND ((1::bigint << kind) & $%d) <> 0", (int64_t)q->kinds_mask);
    if (q->since_ms) COND(" AND created_ms >= $%d", q->since_ms);
    if (q->until_ms) COND(" AND created_ms < $%d", q->until_ms);
#undef COND
    p_i64(&p, q->limit);
    int n = snprintf(sql, sizeof sql, "SELECT " ENTRY_COLS " FROM entries WHERE account_id = $1%s ORDER BY id DESC LIMIT $%d",
                     cond, p.n);
    CC_ASSERT(n > 0 && (size_t)n < sizeof sql && off < (int)sizeof cond);
    PGresult *r = PQexecParams(c->pg, sql, p.n, NULL, p.v, p.len, p.fmt, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK && retry_on_new_connection(c, r)) {
        PQclear(r);
        r = PQexecParams(c->pg, sql, p.n, NULL, p.v, p.len, p.fmt, 0);
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = pg_fail(c, err, "history", r);
        PQclear(r);
        return rc;
    }
    int rows = PQntuples(r);
    if (rows > q->limit) rows = q->limit;
    for (int i = 0; i < rows; i++) read_entry(r, i, &out[i]);
    *n_out = rows;
    PQclear(r);
    return CC_OK;
}

/* ---------------------------------------------------------------- holds */

static cc_rc pg_hold_get(cc_conn *b, int64_t id, cc_hold *out, cc_error *err) {
    pg_conn *c = (pg_conn *)b;
    const cc_hold *have = in_batch(c) ? rc_get(&c->tx->holds, id) : NULL;
    if (have) {
        *out = *have;
        return CC_OK;
    }
    prm p = {.n = 0};
    p_i64(&p, id);
    PGresult *r = run((pg_conn *)b, ST_HOLD_GET, &p, "get hold", err);
    if (!r) return CC_ERR_STORAGE;
    cc_rc rc = CC_OK;
    if (PQntuples(r) == 1) read_hold(r, 0, out);
    else rc = cc_fail(err, CC_ERR_NOT_FOUND, "hold_id", "no hold with id %lld", (long long)id);
    PQclear(r);
    return rc;
}

static cc_rc pg_hold_insert(cc_conn *b, const cc_hold *h, cc_error *err) {
    if (in_batch((pg_conn *)b)) return wb_hold((pg_conn *)b, h, err);
    prm p = {.n = 0};
    p_i64(&p, h->id);
    p_i64(&p, h->account_id);
    p_i64(&p, h->amount);
    p_i64(&p, h->state);
    p_i64(&p, h->expires_ms);
    p_i64(&p, h->resolved_by);
    p_i64(&p, h->credential_id);
    return defer((pg_conn *)b, ST_HOLD_INSERT, &p, -1, h->id, "insert hold", err);
}

static cc_rc pg_hold_resolve(cc_conn *b, int64_t id, int state, int64_t by_entry, cc_error *err) {
    prm p = {.n = 0};
    p_i64(&p, state);
    p_i64(&p, by_entry);
    p_i64(&p, id);
    /* The WHERE state = 0 makes "resolves at most once" hold in storage too:
    ** the ledger read the hold open in this transaction, so another outcome
    ** is a storage fault that fails the whole commit (found at the latest at COMMIT). */
    pg_conn *c = (pg_conn *)b;
    if (!c->pipe) {
        PGresult *r = run(c, ST_HOLD_RESOLVE, &p, "resolve hold", err);
        if (!r) return CC_ERR_STORAGE;
        cc_rc rc = strcmp(PQcmdTuples(r), "1") == 0
                       ? CC_OK
                       : cc_fail(err, CC_ERR_STATE, "hold_id", "hold %lld is not open", (long long)id);
        PQclear(r);
        return rc;
    }
    return wb_resolve(c, id, state, by_entry, err);
}

static cc_rc pg_hold_extend(cc_conn *b, int64_t id, int64_t expires_ms, cc_error *err) {
    pg_conn *c = (pg_conn *)b;
    if (c->shared) return need_lock(c, "extend hold", err);
    cc_hold *have = in_batch(c) ? rc_get(&c->tx->holds, id) : NULL;
    if (have && have->state == CC_HOLD_OPEN && have->expires_ms < expires_ms) have->expires_ms = expires_ms;
    prm p = {.n = 0};
    p_i64(&p, expires_ms);
    p_i64(&p, id);
    return defer((pg_conn *)b, ST_HOLD_EXTEND, &p, -1, id, "extend hold", err);
}

static cc_rc pg_holds_due(cc_conn *b, int64_t now_ms, int limit, int64_t *ids, int *n_out, cc_error *err) {
    prm p = {.n = 0};
    p_i64(&p, now_ms);
    p_i64(&p, limit);
    PGresult *r = run((pg_conn *)b, ST_HOLDS_DUE, &p, "due holds", err);
    if (!r) return CC_ERR_STORAGE;
    int n = PQntuples(r);
    if (n > limit) n = limit;
    for (int i = 0; i < n; i++) ids[i] = gi(r, i, 0);
    *n_out = n;
    PQclear(r);
    return CC_OK;
}

/* ---------------------------------------------------------------- scans (verify) */

/* Streams rows one at a time (bounded memory on large ledgers). */
typedef void (*row_reader)(const PGresult *r, void *row);
typedef int (*row_cb)(void *ctx, const void *row);

static cc_rc scan(pg_conn *c, int st, void *row, row_reader rd, row_cb cb, void *ctx, const char *what,
                  cc_error *err) {
    CC_ASSERT(!c->pipe); /* read connections only */
    cc_rc rc = ensure(c, err);
    if (rc != CC_OK) return rc;
    char name[16];
    snprintf(name, sizeof name, "cc%d", st);
    if (!PQsendQueryPrepared(c->pg, name, 0, NULL, NULL, NULL, 0) || !PQsetSingleRowMode(c->pg))
        return pg_fail(c, err, what, NULL);
    int stop = 0;
    PGresult *r;
    while ((r = PQgetResult(c->pg)) != NULL) {
        ExecStatusType s = PQresultStatus(r);
        if (s == PGRES_SINGLE_TUPLE) {
            if (!stop) {
                rd(r, row);
                stop = cb(ctx, row);
            }
        } else if (s != PGRES_TUPLES_OK && rc == CC_OK) {
            rc = pg_fail(c, err, what, r);
        }
        PQclear(r);
    }
    return rc;
}

static void rd_account(const PGresult *r, void *row) { read_account(r, 0, row); }
static void rd_entry(const PGresult *r, void *row) { read_entry(r, 0, row); }
static void rd_hold(const PGresult *r, void *row) { read_hold(r, 0, row); }

static cc_rc pg_scan_accounts(cc_conn *b, cc_account_cb cb, void *ctx, cc_error *err) {
    cc_account a;
    return scan((pg_conn *)b, ST_SCAN_ACC, &a, rd_account, (row_cb)cb, ctx, "scan accounts", err);
}

static cc_rc pg_scan_entries(cc_conn *b, cc_entry_cb cb, void *ctx, cc_error *err) {
    cc_entry *e = malloc(sizeof *e);
    if (!e) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    cc_rc rc = scan((pg_conn *)b, ST_SCAN_ENT, e, rd_entry, (row_cb)cb, ctx, "scan entries", err);
    free(e);
    return rc;
}

static cc_rc pg_scan_holds(cc_conn *b, cc_hold_cb cb, void *ctx, cc_error *err) {
    cc_hold h;
    return scan((pg_conn *)b, ST_SCAN_HOLD, &h, rd_hold, (row_cb)cb, ctx, "scan holds", err);
}

/* ---------------------------------------------------------------- credentials, passwords, usage */

static cc_rc pg_cred_insert(cc_conn *b, cc_credential *cr, cc_error *err) {
    if (((pg_conn *)b)->shared) return need_lock((pg_conn *)b, "insert credential", err);
    prm p = {.n = 0};
    p_i64(&p, cr->kind);
    p_i64(&p, cr->account_id);
    p_bin(&p, cr->hash, CC_CRED_HASH_BYTES);
    p_txt(&p, cr->label);
    p_txt(&p, cr->hint);
    p_i64(&p, cr->created_ms);
    p_i64(&p, cr->expires_ms);
    PGresult *r = run((pg_conn *)b, ST_CRED_INSERT, &p, "insert credential", err);
    if (!r) return CC_ERR_STORAGE;
    cr->id = gi(r, 0, 0);
    PQclear(r);
    return CC_OK;
}

static cc_rc pg_cred_by_hash(cc_conn *b, const unsigned char *hash, cc_credential *out, cc_error *err) {
    prm p = {.n = 0};
    p_bin(&p, hash, CC_CRED_HASH_BYTES);
    PGresult *r = run((pg_conn *)b, ST_CRED_BY_HASH, &p, "find credential", err);
    if (!r) return CC_ERR_STORAGE;
    cc_rc rc = CC_OK;
    if (PQntuples(r) == 1) read_cred(r, 0, out);
    else rc = cc_fail(err, CC_ERR_NOT_FOUND, "token", "unknown credential");
    PQclear(r);
    return rc;
}

static cc_rc pg_cred_get(cc_conn *b, int64_t id, cc_credential *out, cc_error *err) {
    prm p = {.n = 0};
    p_i64(&p, id);
    PGresult *r = run((pg_conn *)b, ST_CRED_GET, &p, "get credential", err);
    if (!r) return CC_ERR_STORAGE;
    cc_rc rc = CC_OK;
    if (PQntuples(r) == 1) read_cred(r, 0, out);
    else rc = cc_fail(err, CC_ERR_NOT_FOUND, "id", "no credential with id %lld", (long long)id);
    PQclear(r);
    return rc;
}

static cc_rc pg_cred_update(cc_conn *b, const cc_credential *cr, cc_error *err) {
    if (((pg_conn *)b)->shared) return need_lock((pg_conn *)b, "update credential", err);
    prm p = {.n = 0};
    p_i64(&p, cr->expires_ms);
    p_i64(&p, cr->cap_micro);
    p_i64(&p, cr->cap_used);
    p_i64(&p, cr->id);
    /* Only credentials read in this transaction are updated: a missing row is a storage fault. */
    return defer((pg_conn *)b, ST_CRED_UPDATE, &p, 1, cr->id, "update credential", err);
}

static cc_rc pg_cred_revoke(cc_conn *b, int64_t id, int64_t account_id, int kind, int64_t now_ms, int *count,
                            cc_error *err) {
    if (((pg_conn *)b)->shared) return need_lock((pg_conn *)b, "revoke credential", err);
    prm p = {.n = 0};
    p_i64(&p, now_ms);
    if (id > 0) p_i64(&p, id);
    p_i64(&p, account_id);
    p_i64(&p, kind);
    PGresult *r = run((pg_conn *)b, id > 0 ? ST_CRED_REVOKE_ONE : ST_CRED_REVOKE_ALL, &p, "revoke credential", err);
    if (!r) return CC_ERR_STORAGE;
    *count = atoi(PQcmdTuples(r));
    PQclear(r);
    return CC_OK;
}

static cc_rc pg_cred_list(cc_conn *b, int64_t account_id, int kind, int64_t now_ms, cc_credential *out, int cap,
                          int *n_out, cc_error *err) {
    prm p = {.n = 0};
    p_i64(&p, account_id);
    p_i64(&p, kind);
    p_i64(&p, now_ms);
    p_i64(&p, cap);
    PGresult *r = run((pg_conn *)b, ST_CRED_LIST, &p, "list credentials", err);
    if (!r) return CC_ERR_STORAGE;
    int n = PQntuples(r);
    if (n > cap) n = cap;
    for (int i = 0; i < n; i++) read_cred(r, i, &out[i]);
    *n_out = n;
    PQclear(r);
    return CC_OK;
}

static cc_rc pg_password_set(cc_conn *b, int64_t account_id, const char *encoded, int64_t now_ms, cc_error *err) {
    if (((pg_conn *)b)->shared) return need_lock((pg_conn *)b, "set password", err);
    prm p = {.n = 0};
    p_i64(&p, account_id);
    p_txt(&p, encoded);
    p_i64(&p, now_ms);
    PGresult *r = run((pg_conn *)b, ST_PW_SET, &p, "set password", err);
    if (!r) return CC_ERR_STORAGE;
    PQclear(r);
    return CC_OK;
}

static cc_rc pg_password_get(cc_conn *b, int64_t account_id, char *out, size_t out_bytes, cc_error *err) {
    prm p = {.n = 0};
    p_i64(&p, account_id);
    PGresult *r = run((pg_conn *)b, ST_PW_GET, &p, "get password", err);
    if (!r) return CC_ERR_STORAGE;
    cc_rc rc = CC_OK;
    if (PQntuples(r) == 1) {
        int n = PQgetlength(r, 0, 0);
        if ((size_t)n >= out_bytes) rc = cc_fail(err, CC_ERR_STORAGE, "", "stored password hash is malformed");
        else {
            memcpy(out, PQgetvalue(r, 0, 0), (size_t)n);
            out[n] = 0;
        }
    } else {
        rc = cc_fail(err, CC_ERR_NOT_FOUND, "password", "no password is set");
    }
    PQclear(r);
    return rc;
}

static cc_rc pg_usage_summary(cc_conn *b, int64_t account_id, int64_t since_ms, int64_t until_ms, cc_usage_row *out,
                              int cap, int *n_out, cc_error *err) {
    prm p = {.n = 0};
    p_i64(&p, account_id);
    p_i64(&p, since_ms);
    p_i64(&p, until_ms);
    p_i64(&p, cap);
    PGresult *r = run((pg_conn *)b, ST_USAGE, &p, "usage summary", err);
    if (!r) return CC_ERR_STORAGE;
    int n = PQntuples(r);
    if (n > cap) n = cap;
    for (int i = 0; i < n; i++) {
        out[i].day = gi(r, i, 0);
        gt(out[i].node_class, sizeof out[i].node_class, r, i, 1);
        out[i].charged = gi(r, i, 2);
        out[i].runs = gi(r, i, 3);
    }
    *n_out = n;
    PQclear(r);
    return CC_OK;
}

/* ---------------------------------------------------------------- needs-attention purchases */

static void read_attention(const PGresult *r, int i, cc_attention *a) {
    gt(a->session_id, sizeof a->session_id, r, i, 0);
    a->account_id = gi(r, i, 1);
    gt(a->currency, sizeof a->currency, r, i, 2);
    a->amount_minor = gi(r, i, 3);
    a->credits_micro = gi(r, i, 4);
    gt(a->method, sizeof a->method, r, i, 5);
    gt(a->reason, sizeof a->reason, r, i, 6);
    a->first_ms = gi(r, i, 7);
    a->last_ms = gi(r, i, 8);
    a->reports = gi(r, i, 9);
    a->resolved_ms = gi(r, i, 10);
    gt(a->resolution, sizeof a->resolution, r, i, 11);
}

static cc_rc pg_attention_record(cc_conn *b, const cc_attention *a, cc_error *err) {
    if (((pg_conn *)b)->shared) return need_lock((pg_conn *)b, "record attention", err);
    prm p = {.n = 0};
    p_txt(&p, a->session_id);
    p_i64(&p, a->account_id);
    p_txt(&p, a->currency);
    p_i64(&p, a->amount_minor);
    p_i64(&p, a->credits_micro);
    p_txt(&p, a->method);
    p_txt(&p, a->reason);
    p_i64(&p, a->last_ms);
    return defer((pg_conn *)b, ST_ATT_RECORD, &p, 1, 0, "record needs-attention purchase", err);
}

static cc_rc pg_attention_get(cc_conn *b, const char *session_id, cc_attention *out, cc_error *err) {
    prm p = {.n = 0};
    p_txt(&p, session_id);
    PGresult *r = run((pg_conn *)b, ST_ATT_GET, &p, "get needs-attention purchase", err);
    if (!r) return CC_ERR_STORAGE;
    cc_rc rc = CC_OK;
    if (PQntuples(r) == 1) read_attention(r, 0, out);
    else rc = cc_fail(err, CC_ERR_NOT_FOUND, "session_id", "no needs-attention purchase %.80s", session_id);
    PQclear(r);
    return rc;
}

static cc_rc pg_attention_list(cc_conn *b, int include_resolved, cc_attention *out, int cap, int *n_out,
                               cc_error *err) {
    prm p = {.n = 0};
    p_txt(&p, include_resolved ? "true" : "false");
    p_i64(&p, cap);
    PGresult *r = run((pg_conn *)b, ST_ATT_LIST, &p, "list needs-attention purchases", err);
    if (!r) return CC_ERR_STORAGE;
    int n = PQntuples(r);
    if (n > cap) n = cap;
    for (int i = 0; i < n; i++) read_attention(r, i, &out[i]);
    *n_out = n;
    PQclear(r);
    return CC_OK;
}

static cc_rc pg_attention_resolve(cc_conn *b, const char *session_id, const char *note, int64_t now_ms, int *changed,
                                  cc_error *err) {
    if (((pg_conn *)b)->shared) return need_lock((pg_conn *)b, "resolve attention", err);
    prm p = {.n = 0};
    p_i64(&p, now_ms);
    p_txt(&p, note);
    p_txt(&p, session_id);
    PGresult *r = run((pg_conn *)b, ST_ATT_RESOLVE, &p, "resolve needs-attention purchase", err);
    if (!r) return CC_ERR_STORAGE;
    *changed = atoi(PQcmdTuples(r));
    PQclear(r);
    return CC_OK;
}

/* ---------------------------------------------------------------- shared prompt reservations */

/* A statement run for its effect only, outside the ledger's transactions. */
static cc_rc run_effect(pg_conn *c, int st, const prm *p, const char *what, cc_error *err) {
    PGresult *r = run(c, st, p, what, err);
    if (!r) return CC_ERR_STORAGE;
    PQclear(r);
    return CC_OK;
}

static cc_rc pg_resv_put(cc_conn *b, const char *server, const char *prompt_id, int64_t account_id, int64_t left,
                         int64_t expires_ms, cc_error *err) {
    if (((pg_conn *)b)->shared) return need_lock((pg_conn *)b, "put reservation", err);
    prm p = {.n = 0};
    p_txt(&p, server);
    p_txt(&p, prompt_id);
    p_i64(&p, account_id);
    p_i64(&p, left);
    p_i64(&p, expires_ms);
    return run_effect((pg_conn *)b, ST_RESV_PUT, &p, "keep a prompt's reservation", err);
}

static cc_rc pg_resv_drop(cc_conn *b, const char *server, const char *prompt_id, cc_error *err) {
    if (((pg_conn *)b)->shared) return need_lock((pg_conn *)b, "drop reservation", err);
    prm p = {.n = 0};
    p_txt(&p, server);
    p_txt(&p, prompt_id);
    return run_effect((pg_conn *)b, ST_RESV_DROP, &p, "drop a prompt's reservation", err);
}

static cc_rc pg_resv_others(cc_conn *b, const char *server, int64_t account_id, int64_t now_ms, int64_t *sum,
                            cc_error *err) {
    prm p = {.n = 0};
    p_i64(&p, account_id);
    p_txt(&p, server);
    p_i64(&p, now_ms);
    PGresult *r = run((pg_conn *)b, ST_RESV_OTHERS, &p, "reservations of other servers", err);
    if (!r) return CC_ERR_STORAGE;
    *sum = gi(r, 0, 0);
    PQclear(r);
    return CC_OK;
}

static cc_rc pg_resv_renew(cc_conn *b, const char *server, int64_t now_ms, int64_t expires_ms, cc_error *err) {
    if (((pg_conn *)b)->shared) return need_lock((pg_conn *)b, "renew reservations", err);
    pg_conn *c = (pg_conn *)b;
    prm p = {.n = 0};
    p_txt(&p, server);
    p_i64(&p, expires_ms);
    cc_rc rc = run_effect(c, ST_RESV_RENEW, &p, "renew reservations", err);
    prm q = {.n = 0};
    p_i64(&q, now_ms);
    return rc == CC_OK ? run_effect(c, ST_RESV_SWEEP, &q, "drop expired reservations", err) : rc;
}

static const cc_conn_vtab PG_CONN_VTAB = {
    .close = pg_close,
    .begin_write = pg_begin_write,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .data_changed = pg_data_changed,
    .prefetch = pg_prefetch,
    .begin_write_shared = pg_begin_write_shared,
    .conflicted = pg_conflicted,
    .others_write = pg_others_write,
    .begin_read = pg_begin_read,
    .end_read = pg_end_read,
    .account_insert = pg_account_insert,
    .account_get = pg_account_get,
    .account_by_email = pg_account_by_email,
    .account_update = pg_account_update,
    .account_list = pg_account_list,
    .entry_by_key = pg_entry_by_key,
    .entry_get = pg_entry_get,
    .entry_insert = pg_entry_insert,
    .history = pg_history,
    .hold_get = pg_hold_get,
    .hold_insert = pg_hold_insert,
    .hold_resolve = pg_hold_resolve,
    .hold_extend = pg_hold_extend,
    .holds_due = pg_holds_due,
    .cred_insert = pg_cred_insert,
    .cred_by_hash = pg_cred_by_hash,
    .cred_get = pg_cred_get,
    .cred_update = pg_cred_update,
    .cred_revoke = pg_cred_revoke,
    .cred_list = pg_cred_list,
    .usage_summary = pg_usage_summary,
    .password_set = pg_password_set,
    .password_get = pg_password_get,
    .attention_record = pg_attention_record,
    .attention_get = pg_attention_get,
    .attention_list = pg_attention_list,
    .attention_resolve = pg_attention_resolve,
    .resv_put = pg_resv_put,
    .resv_drop = pg_resv_drop,
    .resv_others = pg_resv_others,
    .resv_renew = pg_resv_renew,
    .scan_accounts = pg_scan_accounts,
    .scan_entries = pg_scan_entries,
    .scan_holds = pg_scan_holds,
};

/* ---------------------------------------------------------------- schema version and migrations */

static cc_rc schema_fail(pg_conn *c, cc_error *err, const char *what, PGresult *r) {
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (state && strcmp(state, "42501") == 0) {
        char msg[200];
        one_line(PQresultErrorMessage(r), msg, sizeof msg);
        return cc_fail(err, CC_ERR_STORAGE, "database",
                       "PostgreSQL user may not %s in %s (%s): grant it (e.g. GRANT CREATE ON SCHEMA public) "
                       "or let the database owner start comfy-credits once",
                       what, c->st->where, msg);
    }
    return pg_fail(c, err, what, r);
}

static cc_rc migrate(pg_conn *c, cc_error *err) {
    char sql[200];
    snprintf(sql, sizeof sql, "BEGIN; SELECT pg_advisory_xact_lock(%lld)", (long long)CC_PG_MIGRATE_LOCK);
    cc_rc rc = exec_sql(c, sql, "begin schema check", err);
    if (rc != CC_OK) return rc;
    PGresult *r = PQexec(c->pg, "SELECT to_regclass('cc_migrations') IS NOT NULL, to_regclass('accounts') IS NOT NULL,"
                                " (SELECT count(*) FROM pg_proc WHERE proname = 'cc_refuse_change')");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = pg_fail(c, err, "schema check", r);
        goto out;
    }
    int have_mig = PQgetvalue(r, 0, 0)[0] == 't', have_acc = PQgetvalue(r, 0, 1)[0] == 't';
    PQclear(r);
    r = NULL;
    int version = 0, applied[MIGRATIONS_N];
    memset(applied, 0, sizeof applied);
    if (!have_mig && have_acc) {
        rc = cc_fail(err, CC_ERR_STORAGE, "database",
                     "PostgreSQL database %s already has an 'accounts' table that comfy-credits did not create; "
                     "give comfy-credits its own (empty) database",
                     c->st->where);
        goto out;
    }
    if (!have_mig) {
        r = PQexec(c->pg, "CREATE TABLE cc_migrations(version INTEGER PRIMARY KEY, applied_ms BIGINT NOT NULL,"
                          " what TEXT NOT NULL)");
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            rc = schema_fail(c, err, "create tables", r);
            goto out;
        }
        PQclear(r);
        r = NULL;
    } else {
        r = PQexec(c->pg, "SELECT version FROM cc_migrations ORDER BY version");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            rc = schema_fail(c, err, "read the schema version", r);
            goto out;
        }
        for (int i = 0; i < PQntuples(r); i++) {
            int v = (int)gi(r, i, 0);
            if (v > version) version = v;
            for (int k = 0; k < MIGRATIONS_N; k++)
                if (MIGRATIONS[k].version == v) applied[k] = 1;
        }
        PQclear(r);
        r = NULL;
    }
    if (version > PG_SCHEMA_VERSION) {
        rc = cc_fail(err, CC_ERR_STORAGE, "database",
                     "PostgreSQL ledger %s was written by a newer comfy-credits (schema version %d; this version "
                     "understands up to %d). Upgrade comfy-credits; the ledger was not changed.",
                     c->st->where, version, PG_SCHEMA_VERSION);
        goto out;
    }
    for (int i = 0; i < MIGRATIONS_N; i++) {
        const migration *m = &MIGRATIONS[i];
        if (applied[i]) continue; /* each one by its number: they may land out of order */
        r = PQexec(c->pg, m->sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            char what[80];
            snprintf(what, sizeof what, "apply schema migration %d", m->version);
            rc = schema_fail(c, err, what, r);
            goto out;
        }
        PQclear(r);
        prm p = {.n = 0};
        p_i64(&p, m->version);
        p_i64(&p, cc_now_ms());
        p_txt(&p, m->what);
        r = PQexecParams(c->pg, "INSERT INTO cc_migrations(version, applied_ms, what) VALUES ($1, $2, $3)", p.n, NULL,
                         p.v, p.len, p.fmt, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            rc = schema_fail(c, err, "record the schema version", r);
            goto out;
        }
        PQclear(r);
        r = NULL;
    }
    rc = exec_sql(c, "COMMIT", "commit schema", err);
out:
    if (r) PQclear(r);
    if (rc != CC_OK) pg_rollback(&c->base);
    return rc;
}

static cc_rc pg_connect(cc_store *base, int writer, cc_conn **out, cc_error *err) {
    pg_store *st = (pg_store *)base;
    pg_conn *c = calloc(1, sizeof *c);
    if (!c) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    c->base.v = &PG_CONN_VTAB;
    c->st = st;
    c->writer = writer;
    c->writes_seen = c->shared_seen = -1;
    c->pg = open_pg(st);
    if (!c->pg) {
        free(c);
        return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    if (PQstatus(c->pg) != CONNECTION_OK) {
        if (st->wait_for_server && unreachable(PQerrorMessage(c->pg))) {
            /* Fail closed but keep trying: every use fails with CC_ERR_STORAGE
            ** until PostgreSQL answers; ensure() then migrates and prepares. */
            c->never_connected = 1;
            c->backoff_ms = CC_PG_RETRY_MS_MIN;
            c->retry_at_ms = cc_now_ms() + c->backoff_ms;
            *out = &c->base;
            return CC_OK;
        }
        cc_rc rc = conn_fail(c, err);
        pg_close(&c->base);
        return rc;
    }
    cc_rc rc = session_setup(c, err);
    if (rc == CC_OK && writer) rc = migrate(c, err);
    if (rc == CC_OK) rc = prepare_all(c, err);
    if (rc != CC_OK) {
        pg_close(&c->base);
        return rc;
    }
    c->ready = 1;
    *out = &c->base;
    return CC_OK;
}

static void pg_store_close(cc_store *base) {
    pg_store *st = (pg_store *)base;
    if (!st) return;
    if (st->uri) {
        memset(st->uri, 0, strlen(st->uri)); /* it may carry a password */
        free(st->uri);
    }
    free(st);
}

static const cc_store_vtab PG_STORE_VTAB = {.connect = pg_connect, .close = pg_store_close};

void cc_store_pg_wait_for_server(cc_store *s, int on) { ((pg_store *)s)->wait_for_server = on != 0; }

int64_t cc_store_pg_writer_round_trips(cc_store *s) { return ((pg_store *)s)->writer_waits; }

void cc_store_pg_shared_stats(cc_store *s, int64_t *commits, int64_t *conflicts) {
    *commits = ((pg_store *)s)->shared_commits;
    *conflicts = ((pg_store *)s)->shared_conflicts;
}

cc_rc cc_store_pg_describe(const char *uri, char *out, size_t out_bytes) {
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(uri, &msg);
    if (!opts) {
        if (msg) PQfreemem(msg);
        snprintf(out, out_bytes, "postgresql://(malformed)");
        return CC_ERR_INVALID;
    }
    const char *user = "", *host = "", *port = "", *db = "";
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val) continue;
        if (!strcmp(o->keyword, "user")) user = o->val;
        else if (!strcmp(o->keyword, "host")) host = o->val;
        else if (!strcmp(o->keyword, "hostaddr") && !*host) host = o->val;
        else if (!strcmp(o->keyword, "port")) port = o->val;
        else if (!strcmp(o->keyword, "dbname")) db = o->val;
    }
    snprintf(out, out_bytes, "postgresql://%s%s%.100s%s%.20s/%.60s", user, *user ? "@" : "", host, *port ? ":" : "",
             port, db);
    PQconninfoFree(opts);
    return CC_OK;
}

cc_rc cc_store_pg_open(const char *uri, int statement_timeout_ms, cc_store **out, cc_error *err) {
    *out = NULL;
    if (!cc_store_is_pg_uri(uri))
        return cc_fail(err, CC_ERR_INVALID, "database", "not a PostgreSQL URI (expected postgresql://...)");
    if (strlen(uri) > 4096) return cc_fail(err, CC_ERR_INVALID, "database", "the PostgreSQL URI is too long");
    if (statement_timeout_ms < 100 || statement_timeout_ms > 600000)
        return cc_fail(err, CC_ERR_INVALID, "busy_timeout_ms", "statement timeout must be 100..600000 ms");
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(uri, &msg);
    if (!opts) {
        /* libpq's message names the bad part; it never repeats a password
        ** (it reports the offending parameter name or port). */
        char line[200];
        one_line(msg ? msg : "out of memory", line, sizeof line);
        if (msg) PQfreemem(msg);
        return cc_fail(err, CC_ERR_INVALID, "database", "malformed PostgreSQL URI: %s", line);
    }
    const char *bad_port = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (o->val && strcmp(o->keyword, "port") == 0 && (!*o->val || strspn(o->val, "0123456789,") != strlen(o->val)))
            bad_port = o->keyword;
    PQconninfoFree(opts);
    if (bad_port) return cc_fail(err, CC_ERR_INVALID, "database", "malformed PostgreSQL URI: the port is not a number");
    pg_store *st = calloc(1, sizeof *st);
    if (!st) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    st->uri = strdup(uri);
    if (!st->uri) {
        free(st);
        return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    cc_store_pg_describe(uri, st->where, sizeof st->where);
    st->timeout_ms = statement_timeout_ms;
    st->base.v = &PG_STORE_VTAB;
    *out = &st->base;
    return CC_OK;
}

#endif /* CC_HAVE_LIBPQ */
