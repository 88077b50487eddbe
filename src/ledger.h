/*
** ledger.h — the credits ledger: accounts, grants, purchases, holds.
**
** Contract (the rules of ../shared/seed/credits-docs.txt, modelled on
** TigerBeetle's two-phase transfers, see anchors.md §1.1):
**   - Money is int64 micro-credits. An account's balance never goes below 0
**     and open holds never exceed it (available = balance - held >= 0).
**   - Every state change is one immutable entry that carries the balance and
**     held amount after it. There is no refund and no transfer between
**     accounts: no operation moves credits from one account to another.
**   - Each operation is keyed by a caller-supplied idempotency key (1..255
**     bytes, unique across the ledger). Repeating an operation with the same
**     key and the same fields returns the original result with `replayed` set;
**     the same key with a different field fails with CC_ERR_CONFLICT and
**     cc_error.field naming the first differing field. A failed operation
**     records nothing, so it may be retried with the same key.
**   - hold: reserves `amount` for one API-node run, for `ttl_ms`. Refused
**     (CC_ERR_INSUFFICIENT) when balance <= 0 or available < amount, and
**     (CC_ERR_STATE) when the account is disabled.
**   - settle: posts what a run cost (`amount`, what the upstream billed) on
**     an open hold. The charge is at most the hold ("up to" means up to) and
**     at most `charge_max` when that is >= 0; the rest of `amount` is
**     recorded as `uncollected` (for the operator), never as debt. Cost below
**     the hold returns the rest of the hold. `note` says why (history).
**   - hold_extend: moves an open hold's expiry to now + ttl_ms when that is
**     later (a run still making calls keeps its hold). No entry: no money
**     moves. CC_ERR_STATE when the hold is not open.
**   - void: releases an open hold entirely (failed or cancelled runs).
**   - expire: voids holds whose ttl has passed, with entries keyed
**     "expire:<hold id>". A hold resolves at most once (settle, void or
**     expire); resolving a resolved hold is CC_ERR_STATE.
**   - Keys starting with a system prefix (settle:, void:, stripe:, run:,
**     expire:, reserve:) are refused for grants: an operator's grant can
**     never take the key of a system operation.
**   - cc_ledger_open refuses a ledger whose schema_version is newer than
**     CC_SCHEMA_VERSION (written by a newer comfy-credits).
**   - An operation is acknowledged only after its transaction committed
**     durably. Concurrent callers are grouped into one commit (leader/
**     follower group commit): the first waiting caller commits for all.
**   - All functions are thread-safe; any of them may block on I/O, so callers
**     from Python release the GIL around them.
*/
#ifndef CC_LEDGER_H
#define CC_LEDGER_H

#include "store.h"

#define CC_BATCH_OPS_MAX 8190        /* ops in one commit, TigerBeetle's batch size */
#define CC_READERS_MAX 16            /* read connections in the pool */
#define CC_HOLD_TTL_MS_MAX (7LL * 24 * 3600 * 1000) /* a hold lives a week at most */
#define CC_EXPIRE_PER_CALL_MAX 10000 /* holds one expire operation resolves */
#define CC_ACCOUNTS_LIST_MAX 10000   /* accounts returned by one list call */
#define CC_VERIFY_PROBLEMS_MAX 100   /* problems reported by one verify */
#define CC_ACCOUNT_CACHE_MAX 16384   /* accounts cached by the writer (~10 MB at most) */
#define CC_HOLD_CACHE_MAX 16384      /* open holds cached by the writer (~7 MB at most) */

typedef enum cc_op_kind {
    CC_OP_GRANT = 1,
    CC_OP_PURCHASE,
    CC_OP_HOLD,
    CC_OP_SETTLE,
    CC_OP_VOID,
    CC_OP_EXPIRE,           /* void every due hold (up to `limit`) at now_ms */
    CC_OP_ACCOUNT_CREATE,
    CC_OP_ACCOUNT_UPDATE,   /* status / role / display name */
    CC_OP_CRED_CREATE,      /* a session or API key (see cc_ledger_credential_create) */
    CC_OP_CRED_REVOKE,
    CC_OP_PASSWORD_SET,     /* note = the encoded hash (see password.h) */
    CC_OP_TEST_PURCHASE,    /* a purchase through a sandbox/test-mode checkout: TEST credits (same fields) */
    CC_OP_HOLD_EXTEND,      /* hold_id, ttl_ms: expiry = max(expiry, now + ttl_ms) */
} cc_op_kind;

typedef struct cc_context {
    const char *prompt_id, *node_id, *node_class, *model; /* NULL = "" */
} cc_context;

typedef struct cc_usage_counts {
    int64_t tokens_in, tokens_out, images, seconds_ms; /* -1 = not reported */
} cc_usage_counts;

typedef struct cc_op {
    cc_op_kind kind;
    const char *key;          /* idempotency key (money operations) */
    int64_t account_id;
    int64_t amount;           /* grant/purchase credits, hold size, settle cost */
    int64_t hold_id;          /* settle, void */
    int64_t ttl_ms;           /* hold */
    const char *note;         /* grant reason, void reason */
    cc_context ctx;           /* hold: the run it is for */
    cc_usage_counts usage;    /* settle: what the upstream reported */
    const char *currency;     /* purchase */
    int64_t amount_minor;     /* purchase */
    const char *method;       /* purchase: "card", "wechat_pay", "alipay", ... */
    const char *external_ref; /* purchase: e.g. the Stripe Checkout Session id */
    const char *email;        /* account_create */
    const char *display_name; /* account_create / update (NULL = keep) */
    int role;                 /* account_create / update (-1 = keep) */
    int active;               /* account_update (-1 = keep) */
    int64_t now_ms;           /* expire: the clock to compare with (0 = now) */
    int limit;                /* expire: at most this many (0 = max) */
    int cred_kind;            /* cred ops: cc_cred_kind */
    const unsigned char *cred_hash; /* cred_create: SHA-256 of the secret */
    const char *cred_hint;    /* cred_create: first characters of the secret */
    int64_t cred_id;          /* cred_revoke: one credential, or 0 for all of the kind */
    int64_t charge_max;       /* settle: charge at most this (-1 = the hold) */
} cc_op;

void cc_op_init(cc_op *op, cc_op_kind kind); /* zero, usage -1, role/active -1 */

typedef struct cc_result {
    cc_rc rc;
    cc_error err;
    int replayed;             /* 1: the key was seen before, original result */
    int64_t entry_id;
    int64_t account_id;
    int64_t hold_id;
    int64_t amount;           /* requested */
    int64_t delta;            /* balance change */
    int64_t uncollected;
    int64_t balance_after;
    int64_t held_after;
    int64_t count;            /* expire: holds expired */
} cc_result;

typedef struct cc_ledger cc_ledger;

/* Opens (creating if needed) the ledger on a store it takes ownership of. */
cc_rc cc_ledger_open(cc_store *store, int readers, cc_ledger **out, cc_error *err);
void cc_ledger_close(cc_ledger *l);

/* Runs n operations (1..CC_BATCH_OPS_MAX) in order and waits until they are
** durable. results[i] tells how op i went; an op's failure does not affect
** the others, except a storage failure, which fails every op of the commit.
** Returns CC_OK unless the arguments themselves are unusable. */
cc_rc cc_ledger_execute(cc_ledger *l, const cc_op *ops, int n, cc_result *results,
                        cc_error *err);

/* Convenience: one operation; returns results->rc. */
cc_rc cc_ledger_execute1(cc_ledger *l, const cc_op *op, cc_result *result);

cc_rc cc_ledger_account(cc_ledger *l, int64_t id, cc_account *out, cc_error *err);
cc_rc cc_ledger_account_by_email(cc_ledger *l, const char *email, cc_account *out,
                                 cc_error *err);
cc_rc cc_ledger_accounts(cc_ledger *l, int64_t after_id, int limit, cc_account *out,
                         int *n_out, cc_error *err);
cc_rc cc_ledger_hold(cc_ledger *l, int64_t hold_id, cc_hold *out, cc_error *err);
cc_rc cc_ledger_entry(cc_ledger *l, const char *key, cc_entry *out, cc_error *err);

/* A page of history, newest first. *next_before is the cursor for the next
** page (0 when this was the last). */
cc_rc cc_ledger_history(cc_ledger *l, const cc_history_query *q, cc_entry *out, int *n_out,
                        int64_t *next_before, cc_error *err);

/* Recomputes every invariant from the entries. Writes up to `cap` problem
** descriptions (each a malloc'd string the caller frees) and their count.
** CC_OK means the check ran (problems may still be > 0). Stats out: */
typedef struct cc_verify_stats {
    int64_t accounts, entries, holds, open_holds;
    int64_t balance_total, held_total;
    int64_t problems_total;     /* may exceed the problems returned */
} cc_verify_stats;
cc_rc cc_ledger_verify(cc_ledger *l, char **problems, int cap, int *n_problems,
                       cc_verify_stats *stats, cc_error *err);

/* TEST credits (CC_KIND_TEST, from a sandbox or test-mode checkout) are kept
** apart as account.test_balance and are never counted as paid. While they are
** not spendable (the default: the upstream is real), a hold may use only
** balance - held - test_balance, and a settle takes nothing from them. While
** spendable (the upstream is the simulated one), settles spend TEST credits
** first. Thread-safe; takes effect for operations that start afterwards. */
void cc_ledger_set_test_spendable(cc_ledger *l, int spendable);
int cc_ledger_test_spendable(cc_ledger *l);

/* Group-commit counters since open: operations and commits. */
void cc_ledger_counters(cc_ledger *l, int64_t *ops, int64_t *commits);

/* Sessions and personal API keys. The secret ("ccs_..." / "cck_...") is
** written to token_out once and stored only as its SHA-256. ttl_ms 0 means
** no expiry (API keys); sessions need 1..CC_SESSION_TTL_MS_MAX. */
#define CC_CRED_TOKEN_BYTES 68       /* "ccX_" + 64 hex */
#define CC_SESSION_TTL_MS_MAX (90LL * 24 * 3600 * 1000)
#define CC_API_KEYS_PER_ACCOUNT_MAX 50
cc_rc cc_ledger_credential_create(cc_ledger *l, int64_t account_id, int kind, const char *label, int64_t ttl_ms,
                                  char *token_out, size_t token_cap, cc_credential *out, cc_error *err);
/* id > 0 revokes that credential of the account; id == 0 all of the kind. */
cc_rc cc_ledger_credential_revoke(cc_ledger *l, int64_t account_id, int kind, int64_t id, int *count,
                                  cc_error *err);
/* Who presents this secret: CC_ERR_NOT_FOUND for unknown/revoked/expired
** secrets (one answer for all, so probing learns nothing), CC_ERR_STATE for
** a disabled account. */
cc_rc cc_ledger_credential_check(cc_ledger *l, const char *token, cc_credential *cred, cc_account *acct,
                                 cc_error *err);
cc_rc cc_ledger_credential_list(cc_ledger *l, int64_t account_id, int kind, cc_credential *out, int cap,
                                int *n_out, cc_error *err);

/* Passwords: hashed with scrypt before the write (the KDF never runs inside
** a commit). sign_in answers CC_ERR_NOT_FOUND "wrong email or password" for
** an unknown email and a wrong password alike, after the same KDF work, and
** CC_ERR_STATE for a disabled account. */
cc_rc cc_ledger_set_password(cc_ledger *l, int64_t account_id, const char *password, cc_error *err);
cc_rc cc_ledger_sign_in(cc_ledger *l, const char *email, const char *password, cc_account *out, cc_error *err);

/* Settled runs per UTC day and node class (for the Credits panel's chart).
** The range is at most CC_USAGE_RANGE_MS_MAX. */
#define CC_USAGE_RANGE_MS_MAX (366LL * 24 * 3600 * 1000)
cc_rc cc_ledger_usage(cc_ledger *l, int64_t account_id, int64_t since_ms, int64_t until_ms, cc_usage_row *out,
                      int cap, int *n_out, cc_error *err);

const char *cc_kind_name(int kind);
int cc_kind_from_name(const char *name); /* 0 if unknown */
int cc_email_valid(const char *email);

#endif
