/*
** store.h — the storage interface under the ledger.
**
** Contract:
**   - The ledger (rules.c) owns every rule about money; a store only keeps
**     rows and answers queries. A second backend (PostgreSQL) implements this
**     same table of functions without touching the ledger.
**   - A cc_store opens connections. One connection is used by one thread at a
**     time (the ledger serialises access); different connections may be used
**     from different threads at once.
**   - Writes happen only between begin_write() and commit()/rollback(). When
**     commit() returns CC_OK the transaction is durable (for SQLite: WAL with
**     synchronous=FULL, so the WAL is fsynced before COMMIT returns).
**   - Rows of `entries` are immutable once committed: no function here
**     updates or deletes one (the SQLite schema also forbids it by trigger).
**   - Text fields are NUL-terminated and bounded by the sizes below; a store
**     never truncates: the ledger validates lengths before calling it.
*/
#ifndef CC_STORE_H
#define CC_STORE_H

#include "cc_common.h"

#define CC_NAME_BYTES_MAX 128
#define CC_REF_BYTES_MAX 255
#define CC_CTX_ID_BYTES_MAX 64      /* prompt id, node id */
#define CC_CLASS_BYTES_MAX 128      /* node class, model */
#define CC_METHOD_BYTES_MAX 32      /* payment method */
#define CC_NOTE_BYTES_MAX 255

typedef enum cc_kind {
    CC_KIND_GRANT = 1,
    CC_KIND_PURCHASE = 2,
    CC_KIND_HOLD = 3,
    CC_KIND_SETTLE = 4,
    CC_KIND_VOID = 5,
    CC_KIND_EXPIRE = 6,
    CC_KIND_TEST = 7,           /* TEST credits from a sandbox/test-mode checkout: never paid money */
} cc_kind;
#define CC_KIND_MAX 7

typedef enum cc_hold_state {
    CC_HOLD_OPEN = 0,
    CC_HOLD_SETTLED = 1,
    CC_HOLD_VOIDED = 2,
    CC_HOLD_EXPIRED = 3,
} cc_hold_state;

typedef enum cc_role { CC_ROLE_USER = 0, CC_ROLE_ADMIN = 1 } cc_role;

typedef struct cc_account {
    int64_t id;
    char email[CC_EMAIL_BYTES_MAX + 1];
    char display_name[CC_NAME_BYTES_MAX + 1];
    int active;                 /* 1 active, 0 disabled */
    int role;                   /* cc_role */
    int64_t created_ms;
    int64_t updated_ms;         /* last change of balance, held or status */
    int64_t balance;            /* posted micro-credits, >= 0 */
    int64_t held;               /* sum of open holds, 0 <= held <= balance */
    int64_t paid_total;         /* all purchased credits ever */
    int64_t granted_total;      /* all promo credits ever */
    int64_t spent_total;        /* all charged (settled) credits ever */
    int64_t uncollected_total;  /* settle costs that exceeded what was there */
    int64_t test_balance;       /* TEST credits still in balance, 0 <= test_balance <= balance */
    /* Spending caps (caps.h): micro-credits, -1 = none; and the windows' counters. */
    int64_t cap_daily, cap_monthly;         /* set by an admin */
    int64_t own_cap_daily, own_cap_monthly; /* set by the person, never above the admin's */
    int64_t cap_day, cap_day_used;          /* UTC day of the counter; holds + charges placed that day */
    int64_t cap_month, cap_month_used;      /* year*12+month-1 of the counter; same for the month */
} cc_account;

typedef struct cc_entry {
    int64_t id;                 /* assigned by the store, strictly increasing */
    char key[CC_KEY_BYTES_MAX + 1];
    int kind;                   /* cc_kind */
    int64_t account_id;
    int64_t amount;             /* as requested: credits, hold size, cost */
    int64_t delta;              /* change of balance (signed) */
    int64_t held_delta;         /* change of held (signed) */
    int64_t uncollected;        /* settle: cost - charged */
    int64_t balance_after;
    int64_t held_after;
    int64_t hold_id;            /* hold: own id; settle/void/expire: the hold */
    int64_t ttl_ms;             /* hold: lifetime; else 0 */
    int64_t created_ms;
    char prompt_id[CC_CTX_ID_BYTES_MAX + 1];
    char node_id[CC_CTX_ID_BYTES_MAX + 1];
    char node_class[CC_CLASS_BYTES_MAX + 1];
    char model[CC_CLASS_BYTES_MAX + 1];
    int64_t tokens_in, tokens_out, images, seconds_ms; /* -1 = not reported */
    char currency[CC_CURRENCY_BYTES_MAX + 1];
    int64_t amount_minor;       /* purchase: paid, in the currency's minor unit */
    char method[CC_METHOD_BYTES_MAX + 1];
    char external_ref[CC_REF_BYTES_MAX + 1];
    char note[CC_NOTE_BYTES_MAX + 1];
    int64_t test_after;         /* the account's test_balance after this entry */
} cc_entry;

typedef struct cc_hold {
    int64_t id;                 /* == id of the hold entry */
    int64_t account_id;
    int64_t amount;
    int state;                  /* cc_hold_state */
    int64_t expires_ms;
    int64_t resolved_by;        /* entry id that resolved it, 0 while open */
    int64_t credential_id;      /* the personal API key it was placed with (its spending cap), 0 = none */
} cc_hold;

typedef enum cc_cred_kind { CC_CRED_SESSION = 1, CC_CRED_API_KEY = 2 } cc_cred_kind;
#define CC_CRED_HASH_BYTES 32
#define CC_CRED_HINT_BYTES_MAX 15

/* A session or personal API key. Only the SHA-256 of the secret is stored. */
typedef struct cc_credential {
    int64_t id;
    int kind;                   /* cc_cred_kind */
    int64_t account_id;
    unsigned char hash[CC_CRED_HASH_BYTES];
    char label[CC_NAME_BYTES_MAX + 1];       /* key name, or the session's client */
    char hint[CC_CRED_HINT_BYTES_MAX + 1];   /* first characters, for display */
    int64_t created_ms;
    int64_t expires_ms;         /* 0 = never */
    int64_t revoked_ms;         /* 0 = active */
    /* API keys: a spending cap over the key's life (micro-credits, -1 = none) and what runs placed
    ** with it were charged or still hold (auth.h cc_ledger_key_limits, checked with each hold). */
    int64_t cap_micro;
    int64_t cap_used;
} cc_credential;
#define CC_CRED_LIST_MAX 200

typedef struct cc_history_query {
    int64_t account_id;
    int64_t before_id;          /* cursor: only entries with id < before_id; 0 = newest */
    unsigned kinds_mask;        /* bit (1<<kind); 0 = all kinds */
    int64_t since_ms;           /* created_ms >= since_ms; 0 = no bound */
    int64_t until_ms;           /* created_ms <  until_ms; 0 = no bound */
    int limit;                  /* 1..CC_HISTORY_PAGE_MAX */
} cc_history_query;
#define CC_HISTORY_PAGE_MAX 1000

/* One row of a usage summary: charged credits per day and node class. */
typedef struct cc_usage_row {
    int64_t day;                /* created_ms / 86,400,000 (UTC days) */
    char node_class[CC_CLASS_BYTES_MAX + 1];
    int64_t charged;            /* micro-credits (positive) */
    int64_t runs;
} cc_usage_row;
#define CC_USAGE_ROWS_MAX 5000

/* A paid checkout that could not be credited ("needs attention", attention.h):
** kept for the operator in the ledger's own store, so every server of a farm
** and the operator see one list. Nothing here moves credits. */
#define CC_ATTENTION_TEXT_BYTES_MAX 2000 /* reason, resolution (500 characters of UTF-8) */
#define CC_ATTENTION_WORD_BYTES_MAX 32   /* currency, method as the checkout named them */
#define CC_ATTENTION_LIST_MAX 10000
typedef struct cc_attention {
    char session_id[CC_REF_BYTES_MAX + 1];
    int64_t account_id;         /* 0 when the checkout named none */
    char currency[CC_ATTENTION_WORD_BYTES_MAX + 1];
    int64_t amount_minor, credits_micro;
    char method[CC_ATTENTION_WORD_BYTES_MAX + 1];
    char reason[CC_ATTENTION_TEXT_BYTES_MAX + 1];
    int64_t first_ms, last_ms, reports;
    int64_t resolved_ms;        /* 0 while open */
    char resolution[CC_ATTENTION_TEXT_BYTES_MAX + 1];
} cc_attention;

/* What the operations of one commit will look up (commit.c gathers it from
** the jobs before applying them; a store may read it all at once). A hint,
** not a promise: an operation may look up more, and a full list is simply
** not extended. The keys are read until the prefetch is done (store.h prefetch). */
#define CC_PREFETCH_ITEMS_MAX 8192
typedef struct cc_prefetch {
    const char *keys[CC_PREFETCH_ITEMS_MAX];   /* idempotency keys the operations will insert */
    int64_t hold_ids[CC_PREFETCH_ITEMS_MAX];   /* holds they will resolve or extend (not cached, unless all) */
    int64_t account_ids[CC_PREFETCH_ITEMS_MAX]; /* accounts they will read (not cached, unless all) */
    int nkeys, nholds, naccounts;
    int all;                                   /* 1: name cached holds and accounts too */
} cc_prefetch;

typedef struct cc_store cc_store;
typedef struct cc_conn cc_conn;

/* Callbacks for verify scans: return 0 to continue, non-zero to stop. */
typedef int (*cc_account_cb)(void *ctx, const cc_account *a);
typedef int (*cc_entry_cb)(void *ctx, const cc_entry *e);
typedef int (*cc_hold_cb)(void *ctx, const cc_hold *h);

typedef struct cc_conn_vtab {
    void (*close)(cc_conn *c);
    cc_rc (*begin_write)(cc_conn *c, cc_error *err);
    cc_rc (*commit)(cc_conn *c, cc_error *err);
    void (*rollback)(cc_conn *c);
    /* Inside a write transaction: *changed = 1 if another connection (another
    ** process) committed since this connection last asked. The ledger drops
    ** its caches then. */
    cc_rc (*data_changed)(cc_conn *c, int *changed, cc_error *err);
    /* Optional (NULL: every call answers from the database as it comes, as
    ** SQLite's in-process reads do). Reads what `pf` names at once, so that
    ** entry_by_key, entry_insert's duplicate check, entry_get, hold_get and
    ** account_get of those rows answer from memory until commit/rollback.
    ** Called inside a write transaction, it reads them now; called just
    ** before begin_write, it keeps `pf` (which must stay as it is until then)
    ** and begin_write reads them under the writer lock, in its round trip.
    ** It changes no answer, only how many round trips they take. */
    cc_rc (*prefetch)(cc_conn *c, const cc_prefetch *pf, cc_error *err);
    /* Optional (NULL: every write transaction is begin_write's). A write
    ** transaction that other connections' shared ones may overlap: it takes
    ** no exclusive writer lock; every row it changes is checked at commit
    ** to be as it was read (an account not changed by anyone since, a hold
    ** still open, a key still free), or the whole transaction rolls back
    ** and conflicted() says so. Only entry_insert, hold_insert, hold_resolve
    ** and account_update may write in it; any other write fails with
    ** CC_ERR_STORAGE and conflicted() = 1 (the ledger then runs the batch
    ** again under begin_write). begin_write transactions exclude shared
    ** ones, and shared ones exclude them. */
    cc_rc (*begin_write_shared)(cc_conn *c, cc_error *err);
    /* Optional: 1 when the last failure in a shared write transaction was a
    ** conflict (or a write it does not take): nothing was written, running
    ** the same batch again under begin_write is safe. */
    int (*conflicted)(cc_conn *c);
    /* Optional: 1 while other connections write (a recent write transaction
    ** found their writes since this connection's one before): shared
    ** transactions are then worth trying. */
    int (*others_write)(cc_conn *c);
    /* Consistent snapshot for multi-query reads (verify). */
    cc_rc (*begin_read)(cc_conn *c, cc_error *err);
    void (*end_read)(cc_conn *c);

    cc_rc (*account_insert)(cc_conn *c, cc_account *a, cc_error *err);   /* sets a->id; CC_ERR_EXISTS on email */
    cc_rc (*account_get)(cc_conn *c, int64_t id, cc_account *out, cc_error *err);
    cc_rc (*account_by_email)(cc_conn *c, const char *email, cc_account *out, cc_error *err);
    cc_rc (*account_update)(cc_conn *c, const cc_account *a, cc_error *err);
    /* Accounts with id > after_id in id order, at most `limit`. */
    cc_rc (*account_list)(cc_conn *c, int64_t after_id, int limit, cc_account *out,
                          int *n_out, cc_error *err);

    cc_rc (*entry_by_key)(cc_conn *c, const char *key, cc_entry *out, cc_error *err);
    cc_rc (*entry_get)(cc_conn *c, int64_t id, cc_entry *out, cc_error *err);
    /* Sets e->id. CC_ERR_EXISTS (and nothing written) if e->key is taken. */
    cc_rc (*entry_insert)(cc_conn *c, cc_entry *e, cc_error *err);
    cc_rc (*history)(cc_conn *c, const cc_history_query *q, cc_entry *out, int *n_out,
                     cc_error *err);

    cc_rc (*hold_get)(cc_conn *c, int64_t id, cc_hold *out, cc_error *err);
    cc_rc (*hold_insert)(cc_conn *c, const cc_hold *h, cc_error *err);
    cc_rc (*hold_resolve)(cc_conn *c, int64_t id, int state, int64_t by_entry, cc_error *err);
    /* Sets an open hold's expiry to expires_ms if that is later. */
    cc_rc (*hold_extend)(cc_conn *c, int64_t id, int64_t expires_ms, cc_error *err);
    /* Open holds with expires_ms <= now_ms, oldest first, at most `limit`. */
    cc_rc (*holds_due)(cc_conn *c, int64_t now_ms, int limit, int64_t *ids, int *n_out,
                       cc_error *err);

    cc_rc (*cred_insert)(cc_conn *c, cc_credential *cr, cc_error *err);  /* sets cr->id */
    cc_rc (*cred_by_hash)(cc_conn *c, const unsigned char *hash, cc_credential *out, cc_error *err);
    cc_rc (*cred_get)(cc_conn *c, int64_t id, cc_credential *out, cc_error *err);   /* CC_ERR_NOT_FOUND */
    /* Writes a credential's expires_ms, cap_micro and cap_used (the row must exist). */
    cc_rc (*cred_update)(cc_conn *c, const cc_credential *cr, cc_error *err);
    /* Revokes active credentials: one by id (id > 0, of account_id), or all
    ** of account_id of `kind` (id == 0). *count = how many. */
    cc_rc (*cred_revoke)(cc_conn *c, int64_t id, int64_t account_id, int kind, int64_t now_ms, int *count,
                         cc_error *err);
    /* Unrevoked credentials of an account and kind not expired at now_ms (0: expired ones too), newest first. */
    cc_rc (*cred_list)(cc_conn *c, int64_t account_id, int kind, int64_t now_ms, cc_credential *out, int cap,
                       int *n_out, cc_error *err);

    /* Settled runs grouped by UTC day and node class, since <= t < until. */
    cc_rc (*usage_summary)(cc_conn *c, int64_t account_id, int64_t since_ms, int64_t until_ms, cc_usage_row *out,
                           int cap, int *n_out, cc_error *err);
    /* Password hashes (encoded strings) live beside the accounts. */
    cc_rc (*password_set)(cc_conn *c, int64_t account_id, const char *encoded, int64_t now_ms, cc_error *err);
    cc_rc (*password_get)(cc_conn *c, int64_t account_id, char *out, size_t out_bytes, cc_error *err);

    /* Needs-attention purchases. record: inserts (reports 1, first_ms = last_ms
    ** = a->last_ms) or, for a known session, refreshes reason and last_ms and
    ** counts the report. resolve: *changed = 0 unless the session was open. */
    cc_rc (*attention_record)(cc_conn *c, const cc_attention *a, cc_error *err);
    cc_rc (*attention_get)(cc_conn *c, const char *session_id, cc_attention *out, cc_error *err);
    /* Oldest first (first_ms, session_id); open ones only unless include_resolved. */
    cc_rc (*attention_list)(cc_conn *c, int include_resolved, cc_attention *out, int cap, int *n_out,
                            cc_error *err);
    cc_rc (*attention_resolve)(cc_conn *c, const char *session_id, const char *note, int64_t now_ms, int *changed,
                               cc_error *err);

    /* Prompt reservations shared by the servers of a farm (run.c), each row
    ** (server, prompt) with what is left and an expiry; a server that stops
    ** renewing its rows (crashed) stops counting at their expiry. NULL in a
    ** store only one server uses (SQLite): reservations then stay in memory.
    ** put: insert or replace; others: Σ left of live rows of the account
    ** kept by any other server; renew: sets the expiry of every row of the
    ** server and deletes every row expired before now_ms. */
    cc_rc (*resv_put)(cc_conn *c, const char *server, const char *prompt_id, int64_t account_id, int64_t left,
                      int64_t expires_ms, cc_error *err);
    cc_rc (*resv_drop)(cc_conn *c, const char *server, const char *prompt_id, cc_error *err);
    cc_rc (*resv_others)(cc_conn *c, const char *server, int64_t account_id, int64_t now_ms, int64_t *sum,
                         cc_error *err);
    cc_rc (*resv_renew)(cc_conn *c, const char *server, int64_t now_ms, int64_t expires_ms, cc_error *err);

    cc_rc (*scan_accounts)(cc_conn *c, cc_account_cb cb, void *ctx, cc_error *err);
    /* Ordered by (account_id, id). */
    cc_rc (*scan_entries)(cc_conn *c, cc_entry_cb cb, void *ctx, cc_error *err);
    /* Ordered by id. */
    cc_rc (*scan_holds)(cc_conn *c, cc_hold_cb cb, void *ctx, cc_error *err);
} cc_conn_vtab;

struct cc_conn {
    const cc_conn_vtab *v;
};

typedef struct cc_store_vtab {
    cc_rc (*connect)(cc_store *s, int writer, cc_conn **out, cc_error *err);
    void (*close)(cc_store *s);
} cc_store_vtab;

struct cc_store {
    const cc_store_vtab *v;
};

/* SQLite backend. `path` is a file path (":memory:" is refused: readers and
** the writer must share one database). Creates the schema if missing. */
#define CC_BUSY_TIMEOUT_MS_DEFAULT 10000
/* The schema this build writes. Opening a ledger whose meta.schema_version is
** larger (written by a newer comfy-credits) is refused with a clear message,
** before anything is written to it. */
#define CC_SCHEMA_VERSION 4          /* 1: first; 2: TEST credits columns; 3: spending caps; 4: API key caps
                                        (holds.credential_id, credentials.cap_micro/cap_used); migrated in place */
#define CC_SCHEMA_VERSION_TEXT "4"
cc_rc cc_store_sqlite_open(const char *path, int busy_timeout_ms, cc_store **out,
                           cc_error *err);

/* PostgreSQL backend (store_pg.c, farm mode). `uri` is a libpq URI
** ("postgresql://user@host:port/db?..."); the password may come from the URI,
** PGPASSWORD or ~/.pgpass and never appears in a message. Every statement is
** bounded by statement_timeout_ms. Creates and migrates the schema (table
** cc_migrations) on the first writer connection. */
int cc_store_is_pg_uri(const char *s);  /* "postgresql://..." or "postgres://..." */
cc_rc cc_store_pg_open(const char *uri, int statement_timeout_ms, cc_store **out, cc_error *err);
/* Start-up while PostgreSQL is down (the servers of a farm may start first):
** with on = 1, a connection that finds PostgreSQL unreachable (refused,
** timed out, starting up; not a wrong password or a missing database) is
** still returned. It fails every call with CC_ERR_STORAGE (fail closed)
** and re-tries connecting on use, at most after a doubling backoff
** (250 ms .. 15 s); the first writer connection to succeed migrates the schema. */
void cc_store_pg_wait_for_server(cc_store *s, int on);
/* Round trips the store's writer connections have waited for so far (a
** write transaction costs O(1) of them per batch, not O(operations);
** tests check it). Read it while the ledger is idle. -1 without libpq. */
int64_t cc_store_pg_writer_round_trips(cc_store *s);
/* Shared write transactions committed, and rolled back on a conflict
** (store.h begin_write_shared), by every connection of the store (tests). */
void cc_store_pg_shared_stats(cc_store *s, int64_t *commits, int64_t *conflicts);
/* The URI without its password or options, for messages: postgresql://user@host:port/db. */
cc_rc cc_store_pg_describe(const char *uri, char *out, size_t out_bytes);

/* Copies a SQLite ledger (path) into an empty PostgreSQL ledger (uri) with
** every id, in one transaction that commits only if every account's balance,
** held, totals, entry count and Σ deltas match the source (store_copy.c). */
typedef struct cc_copy_stats {
    int64_t accounts, entries, holds, credentials, passwords; /* rows copied */
    int64_t attention;                                        /* needs-attention purchases copied */
    int64_t accounts_checked;                                 /* accounts compared, source vs target */
    int64_t balance_total, held_total, delta_total;           /* Σ over the source's accounts (= the target's) */
} cc_copy_stats;
cc_rc cc_store_copy_sqlite_to_pg(const char *sqlite_path, const char *uri, cc_copy_stats *stats, cc_error *err);

#endif
