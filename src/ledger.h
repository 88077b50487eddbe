/*
** ledger.h — the credits ledger: the money operations (grants, purchases,
** holds and their resolution) and the reads of what they recorded.
**
** The ledger is four concepts, one file each (ledger_int.h ties them):
**   ledger.c  the ledger object: open/close, the reader pool, the reads.
**   rules.c   the money rules: what each operation below may do (this header).
**   commit.c  group commit: the single writer and its batching (commit.h).
**   verify.c  every invariant recomputed from the entries (verify.h).
** Accounts, passwords, sessions and API keys are auth.c (auth.h); they go
** through the same group commit but have their own types.
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
**     moves; result.expires_ms is the expiry after it. CC_ERR_STATE when
**     the hold is not open.
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
#define CC_ACCOUNT_CACHE_MAX 16384   /* accounts cached by the writer (~10 MB at most) */
#define CC_HOLD_CACHE_MAX 16384      /* open holds cached by the writer (~7 MB at most) */

typedef enum cc_op_kind {
    CC_OP_GRANT = 1,
    CC_OP_PURCHASE,
    CC_OP_HOLD,
    CC_OP_SETTLE,
    CC_OP_VOID,
    CC_OP_EXPIRE,           /* void every due hold (up to `limit`) at now_ms */
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
    int64_t now_ms;           /* expire: the clock to compare with (0 = now) */
    int limit;                /* expire: at most this many (0 = max) */
    int64_t charge_max;       /* settle: charge at most this (-1 = the hold) */
    int64_t credential_id;    /* hold: the personal API key the run came with (its cap and expiry), 0 = none */
} cc_op;

void cc_op_init(cc_op *op, cc_op_kind kind); /* zero, usage -1, charge_max -1 */

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
    int64_t expires_ms;       /* hold_extend: the hold's expiry after it */
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

cc_rc cc_ledger_hold(cc_ledger *l, int64_t hold_id, cc_hold *out, cc_error *err);
cc_rc cc_ledger_entry(cc_ledger *l, const char *key, cc_entry *out, cc_error *err);

/* A page of history, newest first. *next_before is the cursor for the next
** page (0 when this was the last). */
cc_rc cc_ledger_history(cc_ledger *l, const cc_history_query *q, cc_entry *out, int *n_out,
                        int64_t *next_before, cc_error *err);

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

/* Settled runs per UTC day and node class (for the Credits panel's chart).
** The range is at most CC_USAGE_RANGE_MS_MAX. */
#define CC_USAGE_RANGE_MS_MAX (366LL * 24 * 3600 * 1000)
cc_rc cc_ledger_usage(cc_ledger *l, int64_t account_id, int64_t since_ms, int64_t until_ms, cc_usage_row *out,
                      int cap, int *n_out, cc_error *err);

const char *cc_kind_name(int kind);
int cc_kind_from_name(const char *name); /* 0 if unknown */

/* The rest of the ledger's public surface, one header per concept; included
** here so that code which includes ledger.h keeps compiling unchanged. */
#include "auth.h"
#include "verify.h"

#endif
