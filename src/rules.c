/*
** rules.c — the money rules: grant, purchase (paid and TEST), hold, settle,
** void, expire and hold_extend. The contract is ledger.h's.
**
** Layout of this file:
**   1. validation of operations (in the caller's thread, before queueing)
**   2. idempotency: a repeated key returns the original result
**   3. applying one operation inside the write transaction (the rules)
**   4. cc_ledger_execute: operations as one job of the group commit
**
** Business refusals (insufficient, state, conflict, not found, limit) are
** decided before the first write of an operation, so they leave the
** transaction untouched; only storage and memory failures roll the commit
** back (commit.h).
*/
#include "caps.h"
#include "commit.h"

#include <stdio.h>
#include <stdlib.h>

/* ---------------------------------------------------------------- 1. validation */

static cc_rc check_key(const char *key, cc_error *err) {
    size_t n = key ? strnlen(key, CC_KEY_BYTES_MAX + 1) : 0;
    if (n == 0) return cc_fail(err, CC_ERR_INVALID, "key", "an idempotency key is required");
    if (n > CC_KEY_BYTES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "key", "idempotency key is longer than %d bytes",
                       CC_KEY_BYTES_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] <= 0x20 || key[i] == 0x7f)
            return cc_fail(err, CC_ERR_INVALID, "key",
                           "idempotency key must not contain spaces or control characters");
    if (strncmp(key, "expire:", 7) == 0)
        return cc_fail(err, CC_ERR_INVALID, "key", "keys starting with 'expire:' are reserved");
    return CC_OK;
}

/* Prefixes of keys the system makes itself (holds and their resolution,
** Stripe fulfilment): an operator's grant may not take one. */
static const char *const SYSTEM_KEY_PREFIXES[] = {"settle:", "void:", "stripe:", "run:", "expire:", "reserve:"};

static cc_rc check_grant_key(const char *key, cc_error *err) {
    for (size_t i = 0; i < sizeof SYSTEM_KEY_PREFIXES / sizeof SYSTEM_KEY_PREFIXES[0]; i++) {
        size_t n = strlen(SYSTEM_KEY_PREFIXES[i]);
        if (strncmp(key, SYSTEM_KEY_PREFIXES[i], n) == 0)
            return cc_fail(err, CC_ERR_INVALID, "key",
                           "keys starting with '%s' are reserved for the system; choose another key",
                           SYSTEM_KEY_PREFIXES[i]);
    }
    return CC_OK;
}

static cc_rc check_amount(int64_t v, int allow_zero, const char *field, cc_error *err) {
    if (v < 0) return cc_fail(err, CC_ERR_INVALID, field, "%s must not be negative", field);
    if (v == 0 && !allow_zero) return cc_fail(err, CC_ERR_INVALID, field, "%s must be positive", field);
    if (v > CC_AMOUNT_MAX)
        return cc_fail(err, CC_ERR_INVALID, field, "%s is larger than the limit of %lld micro-credits",
                       field, (long long)CC_AMOUNT_MAX);
    return CC_OK;
}

static cc_rc check_counter(int64_t v, const char *field, cc_error *err) {
    if (v < -1 || v > CC_AMOUNT_MAX)
        return cc_fail(err, CC_ERR_INVALID, field, "%s must be between 0 and %lld (or absent)", field,
                       (long long)CC_AMOUNT_MAX);
    return CC_OK;
}

static cc_rc validate_op(const cc_op *op, cc_error *err) {
    switch (op->kind) {
    case CC_OP_GRANT:
        TRY(check_key(op->key, err));
        TRY(check_grant_key(op->key, err));
        TRY(ledger_check_id(op->account_id, "account_id", err));
        TRY(check_amount(op->amount, 0, "amount", err));
        TRY(ledger_check_text(op->note, CC_NOTE_BYTES_MAX, "note", err));
        return CC_OK;
    case CC_OP_PURCHASE:
    case CC_OP_TEST_PURCHASE:
        TRY(check_key(op->key, err));
        TRY(ledger_check_id(op->account_id, "account_id", err));
        TRY(check_amount(op->amount, 0, "amount", err));
        if (!op->currency || ledger_slen(op->currency) != 3)
            return cc_fail(err, CC_ERR_INVALID, "currency", "currency must be a 3-letter ISO code");
        for (int i = 0; i < 3; i++)
            if (op->currency[i] < 'a' || op->currency[i] > 'z')
                return cc_fail(err, CC_ERR_INVALID, "currency", "currency must be lower-case ISO letters");
        TRY(check_amount(op->amount_minor, 0, "amount_minor", err));
        if (ledger_slen(op->method) == 0) return cc_fail(err, CC_ERR_INVALID, "method", "payment method is required");
        TRY(ledger_check_text(op->method, CC_METHOD_BYTES_MAX, "method", err));
        if (ledger_slen(op->external_ref) == 0)
            return cc_fail(err, CC_ERR_INVALID, "external_ref", "the payment reference is required");
        TRY(ledger_check_text(op->external_ref, CC_REF_BYTES_MAX, "external_ref", err));
        TRY(ledger_check_text(op->note, CC_NOTE_BYTES_MAX, "note", err));
        return CC_OK;
    case CC_OP_HOLD:
        TRY(check_key(op->key, err));
        TRY(ledger_check_id(op->account_id, "account_id", err));
        TRY(check_amount(op->amount, 0, "amount", err));
        if (op->ttl_ms <= 0 || op->ttl_ms > CC_HOLD_TTL_MS_MAX)
            return cc_fail(err, CC_ERR_INVALID, "ttl_ms", "hold lifetime must be 1..%lld ms",
                           (long long)CC_HOLD_TTL_MS_MAX);
        TRY(ledger_check_text(op->ctx.prompt_id, CC_CTX_ID_BYTES_MAX, "prompt_id", err));
        TRY(ledger_check_text(op->ctx.node_id, CC_CTX_ID_BYTES_MAX, "node_id", err));
        TRY(ledger_check_text(op->ctx.node_class, CC_CLASS_BYTES_MAX, "node_class", err));
        TRY(ledger_check_text(op->ctx.model, CC_CLASS_BYTES_MAX, "model", err));
        return CC_OK;
    case CC_OP_SETTLE:
        TRY(check_key(op->key, err));
        TRY(ledger_check_id(op->hold_id, "hold_id", err));
        TRY(check_amount(op->amount, 1, "amount", err));
        TRY(check_counter(op->usage.tokens_in, "tokens_in", err));
        TRY(check_counter(op->usage.tokens_out, "tokens_out", err));
        TRY(check_counter(op->usage.images, "images", err));
        TRY(check_counter(op->usage.seconds_ms, "seconds_ms", err));
        TRY(ledger_check_text(op->ctx.model, CC_CLASS_BYTES_MAX, "model", err));
        TRY(ledger_check_text(op->note, CC_NOTE_BYTES_MAX, "note", err));
        if (op->charge_max < -1 || op->charge_max > CC_AMOUNT_MAX)
            return cc_fail(err, CC_ERR_INVALID, "charge_max", "charge_max must be 0..%lld (or -1 for the hold)",
                           (long long)CC_AMOUNT_MAX);
        return CC_OK;
    case CC_OP_HOLD_EXTEND:
        TRY(ledger_check_id(op->hold_id, "hold_id", err));
        if (op->ttl_ms <= 0 || op->ttl_ms > CC_HOLD_TTL_MS_MAX)
            return cc_fail(err, CC_ERR_INVALID, "ttl_ms", "hold lifetime must be 1..%lld ms",
                           (long long)CC_HOLD_TTL_MS_MAX);
        return CC_OK;
    case CC_OP_VOID:
        TRY(check_key(op->key, err));
        TRY(ledger_check_id(op->hold_id, "hold_id", err));
        TRY(ledger_check_text(op->note, CC_NOTE_BYTES_MAX, "note", err));
        return CC_OK;
    case CC_OP_EXPIRE:
        if (op->now_ms < 0) return cc_fail(err, CC_ERR_INVALID, "now_ms", "now_ms must not be negative");
        if (op->limit < 0 || op->limit > CC_EXPIRE_PER_CALL_MAX)
            return cc_fail(err, CC_ERR_INVALID, "limit", "limit must be 0..%d", CC_EXPIRE_PER_CALL_MAX);
        return CC_OK;
    }
    return cc_fail(err, CC_ERR_INVALID, "kind", "unknown operation kind %d", (int)op->kind);
}

/* ---------------------------------------------------------------- 2. idempotency */

static void result_from_entry(cc_result *r, const cc_entry *e, int replayed) {
    r->rc = CC_OK;
    r->replayed = replayed;
    r->entry_id = e->id;
    r->account_id = e->account_id;
    r->hold_id = e->kind == CC_KIND_HOLD ? e->id : e->hold_id;
    r->amount = e->amount;
    r->delta = e->delta;
    r->uncollected = e->uncollected;
    r->balance_after = e->balance_after;
    r->held_after = e->held_after;
}

static cc_rc conflict_i64(cc_result *r, const cc_entry *e, const char *field, int64_t was,
                          int64_t now) {
    return cc_fail(&r->err, CC_ERR_CONFLICT, field,
                   "idempotency key '%.64s' was already used for a %s with a different %s "
                   "(was %lld, now %lld)",
                   e->key, cc_kind_name(e->kind), field, (long long)was, (long long)now);
}

static cc_rc conflict_str(cc_result *r, const cc_entry *e, const char *field, const char *was,
                          const char *now) {
    return cc_fail(&r->err, CC_ERR_CONFLICT, field,
                   "idempotency key '%.64s' was already used for a %s with a different %s "
                   "(was '%.60s', now '%.60s')",
                   e->key, cc_kind_name(e->kind), field, was, now ? now : "");
}

#define SAME_I64(field, was, now) \
    do { if ((was) != (now)) return conflict_i64(r, e, field, (was), (now)); } while (0)
#define SAME_STR(field, was, now) \
    do { if (strcmp((was), (now) ? (now) : "") != 0) return conflict_str(r, e, field, (was), (now)); } while (0)

static const cc_op_kind KIND_TO_OP[CC_KIND_MAX + 1] = {
    0, CC_OP_GRANT, CC_OP_PURCHASE, CC_OP_HOLD, CC_OP_SETTLE, CC_OP_VOID, CC_OP_EXPIRE, CC_OP_TEST_PURCHASE};

/* Compares a repeated operation with the entry its key produced. CC_OK means
** "same operation": the caller returns the original result. */
static cc_rc compare_replay(const cc_op *op, const cc_entry *e, cc_result *r) {
    if (KIND_TO_OP[e->kind] != op->kind)
        return cc_fail(&r->err, CC_ERR_CONFLICT, "kind",
                       "idempotency key '%.64s' was already used for a %s", e->key,
                       cc_kind_name(e->kind));
    switch (op->kind) {
    case CC_OP_GRANT:
        SAME_I64("account_id", e->account_id, op->account_id);
        SAME_I64("amount", e->amount, op->amount);
        SAME_STR("note", e->note, op->note);
        break;
    case CC_OP_PURCHASE:
    case CC_OP_TEST_PURCHASE:
        SAME_I64("account_id", e->account_id, op->account_id);
        SAME_I64("amount", e->amount, op->amount);
        SAME_STR("currency", e->currency, op->currency);
        SAME_I64("amount_minor", e->amount_minor, op->amount_minor);
        SAME_STR("method", e->method, op->method);
        SAME_STR("external_ref", e->external_ref, op->external_ref);
        SAME_STR("note", e->note, op->note);
        break;
    case CC_OP_HOLD:
        SAME_I64("account_id", e->account_id, op->account_id);
        SAME_I64("amount", e->amount, op->amount);
        SAME_I64("ttl_ms", e->ttl_ms, op->ttl_ms);
        SAME_STR("prompt_id", e->prompt_id, op->ctx.prompt_id);
        SAME_STR("node_id", e->node_id, op->ctx.node_id);
        SAME_STR("node_class", e->node_class, op->ctx.node_class);
        SAME_STR("model", e->model, op->ctx.model);
        break;
    case CC_OP_SETTLE:
        SAME_I64("hold_id", e->hold_id, op->hold_id);
        SAME_I64("amount", e->amount, op->amount);
        SAME_I64("tokens_in", e->tokens_in, op->usage.tokens_in);
        SAME_I64("tokens_out", e->tokens_out, op->usage.tokens_out);
        SAME_I64("images", e->images, op->usage.images);
        SAME_I64("seconds_ms", e->seconds_ms, op->usage.seconds_ms);
        break;
    case CC_OP_VOID:
        SAME_I64("hold_id", e->hold_id, op->hold_id);
        SAME_STR("note", e->note, op->note);
        break;
    default:
        CC_ASSERT(0 && "no keyed replay for this kind");
    }
    return CC_OK;
}

/* The fast path inserts the entry and lets the store's unique index on the
** key detect a repeat (CC_ERR_EXISTS): no read per operation. When the rules
** refuse an operation, the key is looked up first, because a repeat of an
** operation that succeeded earlier must return its original result even if
** it could not succeed now. */

/* Looks the key up. CC_OK with *seen=1: a replay, result filled. CC_OK with
** *seen=0: a new key. Else an error (conflict, storage). */
static cc_rc lookup_key(cc_conn *c, const cc_op *op, cc_result *r, int *seen) {
    cc_entry e;
    *seen = 0;
    cc_rc rc = c->v->entry_by_key(c, op->key, &e, &r->err);
    if (rc == CC_ERR_NOT_FOUND) { cc_error_clear(&r->err); return CC_OK; }
    if (rc != CC_OK) return rc;
    rc = compare_replay(op, &e, r);
    if (rc != CC_OK) return rc;
    result_from_entry(r, &e, 1);
    *seen = 1;
    return CC_OK;
}

/* The rules refused op with r->err: unless its key was used before, that is
** the answer. */
static cc_rc refuse(cc_conn *c, const cc_op *op, cc_result *r) {
    cc_error why = r->err;
    int seen;
    cc_rc rc = lookup_key(c, op, r, &seen);
    if (rc != CC_OK || seen) return rc;
    r->err = why;
    return why.rc;
}

/* Inserts e. *replayed=1 when the key already existed and matched (r filled
** with the original result); a mismatch returns the conflict. */
static cc_rc insert_entry(cc_conn *c, const cc_op *op, cc_entry *e, cc_result *r, int *replayed) {
    *replayed = 0;
    cc_rc rc = c->v->entry_insert(c, e, &r->err);
    if (rc != CC_ERR_EXISTS) return rc;
    cc_error_clear(&r->err);
    int seen;
    rc = lookup_key(c, op, r, &seen);
    if (rc != CC_OK) return rc;
    if (!seen) return cc_fail(&r->err, CC_ERR_STORAGE, "key", "key reported taken but not found");
    *replayed = 1;
    return CC_OK;
}

/* ---------------------------------------------------------------- 3. the rules */

/* ---- the writer's cache of open holds
**
** Open holds are cached (in l->hold_cache, dropped with the account cache by
** commit.c) from creation to resolution, so settling one needs no reads. */

typedef struct hold_slot {
    cc_hold h;
    int64_t placed_ms;         /* when the hold was placed: its spending-cap windows (caps.h) */
    char prompt_id[CC_CTX_ID_BYTES_MAX + 1];
    char node_id[CC_CTX_ID_BYTES_MAX + 1];
    char node_class[CC_CLASS_BYTES_MAX + 1];
    char model[CC_CLASS_BYTES_MAX + 1];
} hold_slot;

/* Finds an open-or-resolved hold with its run context: cache, else the store. */
static cc_rc hold_load(cc_ledger *l, cc_conn *c, int64_t id, hold_slot *out, int *cached, cc_error *err) {
    hold_slot *s = i64map_get(&l->hold_cache, id);
    if (s) { *out = *s; *cached = 1; return CC_OK; }
    *cached = 0;
    cc_rc rc = c->v->hold_get(c, id, &out->h, err);
    if (rc != CC_OK) return rc;
    cc_entry *he = malloc(sizeof *he);
    if (!he) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    rc = c->v->entry_get(c, id, he, err);
    if (rc == CC_OK) {
        CC_ASSERT(he->kind == CC_KIND_HOLD && he->account_id == out->h.account_id && he->amount == out->h.amount);
        memcpy(out->prompt_id, he->prompt_id, sizeof out->prompt_id);
        memcpy(out->node_id, he->node_id, sizeof out->node_id);
        memcpy(out->node_class, he->node_class, sizeof out->node_class);
        memcpy(out->model, he->model, sizeof out->model);
        out->placed_ms = he->created_ms;
    } else if (rc == CC_ERR_NOT_FOUND) {
        rc = cc_fail(err, CC_ERR_STORAGE, "", "hold %lld has no entry", (long long)id);
    }
    free(he);
    return rc;
}

static void entry_base(cc_entry *e, int kind, const cc_op *op, int64_t account_id, int64_t now) {
    memset(e, 0, sizeof *e);
    if (op->key) ledger_set_text(e->key, sizeof e->key, op->key);
    e->kind = kind;
    e->account_id = account_id;
    e->created_ms = now;
    e->tokens_in = e->tokens_out = e->images = e->seconds_ms = -1;
}

static void entry_after(cc_entry *e, const cc_account *after) {
    e->balance_after = after->balance;
    e->held_after = after->held;
    e->test_after = after->test_balance;
    CC_ASSERT(after->test_balance >= 0 && after->test_balance <= after->balance);
}

void cc_ledger_set_test_spendable(cc_ledger *l, int spendable) {
    cc_mutex_lock(&l->mu);
    l->test_spendable = spendable ? 1 : 0;
    cc_mutex_unlock(&l->mu);
}

static int test_spendable(cc_ledger *l) {
    cc_mutex_lock(&l->mu);
    int v = l->test_spendable;
    cc_mutex_unlock(&l->mu);
    return v;
}

int cc_ledger_test_spendable(cc_ledger *l) { return test_spendable(l); }

static cc_rc apply_credit(cc_ledger *l, cc_conn *c, const cc_op *op, int64_t now, cc_result *r) {
    cc_acct_slot *s = NULL;
    cc_rc rc = ledger_acct_load(l, c, op->account_id, &s, &r->err);
    if (rc == CC_ERR_NOT_FOUND) return refuse(c, op, r);
    if (rc != CC_OK) return rc;
    cc_account a = s->a;
    int64_t nb;
    if (cc_add_i64(a.balance, op->amount, &nb) || nb > CC_BALANCE_MAX) {
        cc_fail(&r->err, CC_ERR_LIMIT, "amount", "balance would exceed %lld micro-credits",
                (long long)CC_BALANCE_MAX);
        return refuse(c, op, r);
    }
    cc_entry e;
    int kind = op->kind == CC_OP_GRANT ? CC_KIND_GRANT : op->kind == CC_OP_TEST_PURCHASE ? CC_KIND_TEST
                                                                                     : CC_KIND_PURCHASE;
    entry_base(&e, kind, op, a.id, now);
    e.amount = op->amount;
    e.delta = op->amount;
    /* Running totals only grow: each is checked, never wrapped. */
    int64_t *total = kind == CC_KIND_GRANT ? &a.granted_total : kind == CC_KIND_TEST ? &a.test_balance : &a.paid_total;
    if (cc_add_i64(*total, op->amount, total)) {
        cc_fail(&r->err, CC_ERR_LIMIT, "amount", "the account's running total would overflow");
        return refuse(c, op, r);
    }
    if (kind == CC_KIND_GRANT) {
        ledger_set_text(e.note, sizeof e.note, op->note);
    } else {
        ledger_set_text(e.currency, sizeof e.currency, op->currency);
        e.amount_minor = op->amount_minor;
        ledger_set_text(e.method, sizeof e.method, op->method);
        ledger_set_text(e.external_ref, sizeof e.external_ref, op->external_ref);
        ledger_set_text(e.note, sizeof e.note, op->note); /* e.g. the payment methods offered; TEST never counts as paid */
    }
    a.balance = nb;
    a.updated_ms = now;
    entry_after(&e, &a);
    int replayed;
    if ((rc = insert_entry(c, op, &e, r, &replayed)) != CC_OK || replayed) return rc;
    ledger_acct_store(l, s, &a);
    result_from_entry(r, &e, 0);
    return CC_OK;
}

/* A hold placed with a personal API key: the key belongs to the account, is
** neither revoked nor expired, and its cap (over its life) covers the hold,
** which is then counted in key->cap_used (written with the hold). Refusals
** are CC_ERR_STATE (field "key") or CC_ERR_INSUFFICIENT (field "key_cap"). */
static cc_rc key_admit(cc_conn *c, const cc_op *op, int64_t account_id, int64_t now, cc_credential *key,
                       cc_result *r) {
    cc_rc rc = c->v->cred_get(c, op->credential_id, key, &r->err);
    if (rc == CC_OK && (key->account_id != account_id || key->kind != CC_CRED_API_KEY))
        rc = CC_ERR_NOT_FOUND;
    if (rc == CC_ERR_NOT_FOUND)
        return cc_fail(&r->err, CC_ERR_STATE, "key", "API key %lld is not one of this account's keys",
                       (long long)op->credential_id);
    if (rc != CC_OK) return rc;
    if (key->revoked_ms) return cc_fail(&r->err, CC_ERR_STATE, "key", "this API key was revoked");
    if (key->expires_ms && key->expires_ms <= now)
        return cc_fail(&r->err, CC_ERR_STATE, "key", "this API key has expired");
    int64_t after;
    if (key->cap_micro >= 0 && (cc_add_i64(key->cap_used, op->amount, &after) || after > key->cap_micro)) {
        int64_t left = key->cap_micro > key->cap_used ? key->cap_micro - key->cap_used : 0;
        return cc_fail(&r->err, CC_ERR_INSUFFICIENT, "key_cap",
                       "API key spending cap reached: this key (%s…) may spend %lld.%02lld credits in all; "
                       "%lld.%02lld are left and this run needs up to %lld.%02lld. Raise its cap under Settings → "
                       "Credits → API keys, or use another key.",
                       key->hint, (long long)(key->cap_micro / CC_MICRO), (long long)(key->cap_micro % CC_MICRO / 10000),
                       (long long)(left / CC_MICRO), (long long)(left % CC_MICRO / 10000),
                       (long long)(op->amount / CC_MICRO), (long long)(op->amount % CC_MICRO / 10000));
    }
    key->cap_used = cc_add_i64(key->cap_used, op->amount, &after) ? INT64_MAX : after;
    return CC_OK;
}

static cc_rc apply_hold(cc_ledger *l, cc_conn *c, const cc_op *op, int64_t now, cc_result *r) {
    cc_acct_slot *s = NULL;
    cc_rc rc = ledger_acct_load(l, c, op->account_id, &s, &r->err);
    if (rc == CC_ERR_NOT_FOUND) return refuse(c, op, r);
    if (rc != CC_OK) return rc;
    cc_account a = s->a;
    if (!a.active) {
        cc_fail(&r->err, CC_ERR_STATE, "account_id", "account %lld is disabled", (long long)a.id);
        return refuse(c, op, r);
    }
    int64_t available = a.balance - a.held;
    CC_ASSERT(available >= 0);
    int test_locked = !test_spendable(l) && a.test_balance > 0;
    if (test_locked) available = available > a.test_balance ? available - a.test_balance : 0;
    if (a.balance <= 0 || available < op->amount) {
        if (test_locked) {
            cc_fail(&r->err, CC_ERR_INSUFFICIENT, "amount",
                    "not enough credits: this run needs %lld.%06lld; TEST credits cannot pay for a real "
                    "upstream, and %lld.%06lld other credits are available",
                    (long long)(op->amount / CC_MICRO), (long long)(op->amount % CC_MICRO),
                    (long long)(available / CC_MICRO), (long long)(available % CC_MICRO));
            return refuse(c, op, r);
        }
        /* Whole credits with 6 decimals: say exactly what was missing. */
        cc_fail(&r->err, CC_ERR_INSUFFICIENT, "amount",
                "not enough credits: this run needs %lld.%06lld, available %lld.%06lld",
                (long long)(op->amount / CC_MICRO), (long long)(op->amount % CC_MICRO),
                (long long)(available / CC_MICRO), (long long)(available % CC_MICRO));
        return refuse(c, op, r);
    }
    /* Spending caps, in the same transaction as the balance check (caps.h). */
    if (cc_caps_admit(&a, op->amount, now, &r->err) != CC_OK) return refuse(c, op, r);
    /* The API key the run came with: still valid, and within its own cap (auth.h). */
    cc_credential key;
    if (op->credential_id > 0) {
        rc = key_admit(c, op, a.id, now, &key, r);
        if (rc != CC_OK) return rc == CC_ERR_INSUFFICIENT || rc == CC_ERR_STATE ? refuse(c, op, r) : rc;
    }
    cc_entry e;
    entry_base(&e, CC_KIND_HOLD, op, a.id, now);
    e.amount = op->amount;
    e.held_delta = op->amount;
    e.ttl_ms = op->ttl_ms;
    ledger_set_text(e.prompt_id, sizeof e.prompt_id, op->ctx.prompt_id);
    ledger_set_text(e.node_id, sizeof e.node_id, op->ctx.node_id);
    ledger_set_text(e.node_class, sizeof e.node_class, op->ctx.node_class);
    ledger_set_text(e.model, sizeof e.model, op->ctx.model);
    a.held += op->amount;
    a.updated_ms = now;
    entry_after(&e, &a);
    int replayed;
    if ((rc = insert_entry(c, op, &e, r, &replayed)) != CC_OK || replayed) return rc;
    cc_hold h = {.id = e.id, .account_id = a.id, .amount = op->amount, .state = CC_HOLD_OPEN,
                 .expires_ms = now + op->ttl_ms, .resolved_by = 0, .credential_id = op->credential_id};
    if ((rc = c->v->hold_insert(c, &h, &r->err)) != CC_OK) return rc;
    if (op->credential_id > 0 && (rc = c->v->cred_update(c, &key, &r->err)) != CC_OK) return rc;
    ledger_acct_store(l, s, &a);
    hold_slot *hs = malloc(sizeof *hs);
    if (hs) {
        hs->h = h;
        hs->placed_ms = now;
        memcpy(hs->prompt_id, e.prompt_id, sizeof hs->prompt_id);
        memcpy(hs->node_id, e.node_id, sizeof hs->node_id);
        memcpy(hs->node_class, e.node_class, sizeof hs->node_class);
        memcpy(hs->model, e.model, sizeof hs->model);
        if (i64map_put(&l->hold_cache, h.id, hs) != 0) free(hs); /* full: read it back later */
    }
    result_from_entry(r, &e, 0);
    return CC_OK;
}

/* Resolves an open hold: settle (op->amount = cost), void or expire. */
static cc_rc resolve_hold(cc_ledger *l, cc_conn *c, const cc_op *op, int kind, int64_t hold_id, int64_t now,
                          cc_result *r) {
    hold_slot hs;
    int cached;
    cc_rc rc = hold_load(l, c, hold_id, &hs, &cached, &r->err);
    if (rc == CC_ERR_NOT_FOUND) return refuse(c, op, r);
    if (rc != CC_OK) return rc;
    if (hs.h.state != CC_HOLD_OPEN) {
        cc_fail(&r->err, CC_ERR_STATE, "hold_id", "hold %lld was already %s", (long long)hold_id,
                ledger_hold_state_name(hs.h.state));
        return refuse(c, op, r);
    }
    cc_acct_slot *s = NULL;
    if ((rc = ledger_acct_load(l, c, hs.h.account_id, &s, &r->err)) != CC_OK)
        return rc == CC_ERR_NOT_FOUND ? cc_fail(&r->err, CC_ERR_STORAGE, "", "hold without account") : rc;
    cc_account a = s->a;
    CC_ASSERT(a.held >= hs.h.amount);

    cc_entry e;
    entry_base(&e, kind, op, a.id, now);
    e.hold_id = hs.h.id;
    e.held_delta = -hs.h.amount;
    memcpy(e.prompt_id, hs.prompt_id, sizeof e.prompt_id);
    memcpy(e.node_id, hs.node_id, sizeof e.node_id);
    memcpy(e.node_class, hs.node_class, sizeof e.node_class);
    memcpy(e.model, hs.model, sizeof e.model);
    int state;
    int64_t charged = 0;
    if (kind == CC_KIND_SETTLE) {
        int spend_test = test_spendable(l);
        /* "Up to" means up to: never more than the hold the person was shown. */
        int64_t charge = op->amount < hs.h.amount ? op->amount : hs.h.amount;
        if (op->charge_max >= 0 && charge > op->charge_max) charge = op->charge_max;
        CC_ASSERT(charge >= 0 && charge <= a.balance);
        e.amount = op->amount;
        e.delta = -charge;
        e.uncollected = op->amount - charge;
        e.tokens_in = op->usage.tokens_in;
        e.tokens_out = op->usage.tokens_out;
        e.images = op->usage.images;
        e.seconds_ms = op->usage.seconds_ms;
        if (ledger_slen(op->ctx.model)) ledger_set_text(e.model, sizeof e.model, op->ctx.model);
        ledger_set_text(e.note, sizeof e.note, op->note);
        int64_t unc_total, spent_total;
        if (cc_add_i64(a.uncollected_total, e.uncollected, &unc_total) ||
            cc_add_i64(a.spent_total, charge, &spent_total)) {
            cc_fail(&r->err, CC_ERR_LIMIT, "amount", "the account's spent or uncollected total would overflow");
            return refuse(c, op, r);
        }
        a.balance -= charge;
        a.spent_total = spent_total;
        if (spend_test) a.test_balance = a.test_balance > charge ? a.test_balance - charge : 0;
        if (a.test_balance > a.balance) a.test_balance = a.balance; /* holds placed while TEST was spendable */
        a.uncollected_total = unc_total;
        charged = charge;
        state = CC_HOLD_SETTLED;
    } else {
        e.amount = hs.h.amount;
        ledger_set_text(e.note, sizeof e.note, kind == CC_KIND_VOID ? op->note : "hold expired");
        state = kind == CC_KIND_VOID ? CC_HOLD_VOIDED : CC_HOLD_EXPIRED;
    }
    a.held -= hs.h.amount;
    cc_caps_release(&a, hs.placed_ms, hs.h.amount - charged, now); /* what it did not charge returns to its window */
    a.updated_ms = now;
    entry_after(&e, &a);
    int replayed;
    if ((rc = insert_entry(c, op, &e, r, &replayed)) != CC_OK || replayed) return rc;
    if ((rc = c->v->hold_resolve(c, hs.h.id, state, e.id, &r->err)) != CC_OK)
        return rc == CC_ERR_STATE ? cc_fail(&r->err, CC_ERR_STORAGE, "", "hold changed underneath") : rc;
    if (hs.h.credential_id > 0) { /* what it did not charge returns to the cap of the key it was placed with */
        cc_credential key;
        if ((rc = c->v->cred_get(c, hs.h.credential_id, &key, &r->err)) != CC_OK) return rc;
        int64_t back = hs.h.amount - charged;
        key.cap_used = key.cap_used > back ? key.cap_used - back : 0;
        if ((rc = c->v->cred_update(c, &key, &r->err)) != CC_OK) return rc;
    }
    ledger_acct_store(l, s, &a);
    if (cached) free(i64map_remove(&l->hold_cache, hs.h.id));
    result_from_entry(r, &e, 0);
    return CC_OK;
}

static cc_rc apply_hold_extend(cc_ledger *l, cc_conn *c, const cc_op *op, int64_t now, cc_result *r) {
    hold_slot hs;
    int cached;
    cc_rc rc = hold_load(l, c, op->hold_id, &hs, &cached, &r->err);
    if (rc == CC_ERR_NOT_FOUND) return rc;
    if (rc != CC_OK) return rc;
    if (hs.h.state != CC_HOLD_OPEN)
        return cc_fail(&r->err, CC_ERR_STATE, "hold_id", "hold %lld was already %s", (long long)op->hold_id,
                       ledger_hold_state_name(hs.h.state));
    int64_t until = now + op->ttl_ms;
    r->hold_id = hs.h.id;
    r->account_id = hs.h.account_id;
    if (until <= hs.h.expires_ms) {
        r->expires_ms = hs.h.expires_ms;
        return CC_OK;
    }
    if ((rc = c->v->hold_extend(c, hs.h.id, until, &r->err)) != CC_OK) return rc;
    if (cached) ((hold_slot *)i64map_get(&l->hold_cache, hs.h.id))->h.expires_ms = until;
    r->expires_ms = until;
    return CC_OK;
}

static cc_rc apply_resolve(cc_ledger *l, cc_conn *c, const cc_op *op, int64_t now, cc_result *r) {
    return resolve_hold(l, c, op, op->kind == CC_OP_SETTLE ? CC_KIND_SETTLE : CC_KIND_VOID, op->hold_id, now, r);
}

/* ---- what a batch will look up (commit.h hint, store.h prefetch) */

static void hint_key(cc_prefetch *pf, const char *key) {
    if (key && pf->nkeys < CC_PREFETCH_ITEMS_MAX) pf->keys[pf->nkeys++] = key;
}

static void hint_hold(cc_ledger *l, cc_prefetch *pf, int64_t id) {
    if ((pf->all || !i64map_get(&l->hold_cache, id)) && pf->nholds < CC_PREFETCH_ITEMS_MAX)
        pf->hold_ids[pf->nholds++] = id;
}

static void hint_account(cc_ledger *l, cc_prefetch *pf, int64_t id) {
    if ((pf->all || !i64map_get(&l->acct_cache, id)) && pf->naccounts < CC_PREFETCH_ITEMS_MAX)
        pf->account_ids[pf->naccounts++] = id;
}

/* The holds an expire found due: their keys and rows in one go. */
static cc_rc expire_prefetch(cc_ledger *l, cc_conn *c, const int64_t *ids, int n, cc_error *err) {
    if (!c->v->prefetch || !l->prefetch) return CC_OK;
    enum { KEY_BYTES = 32 };
    if (n > CC_PREFETCH_ITEMS_MAX) n = CC_PREFETCH_ITEMS_MAX;
    char *keys = malloc((size_t)n * KEY_BYTES);
    if (!keys) return CC_OK; /* only a hint */
    cc_prefetch *pf = l->prefetch;
    pf->nkeys = pf->nholds = pf->naccounts = 0;
    pf->all = 0;
    for (int i = 0; i < n; i++) {
        snprintf(keys + (size_t)i * KEY_BYTES, KEY_BYTES, "expire:%lld", (long long)ids[i]);
        hint_key(pf, keys + (size_t)i * KEY_BYTES);
        hint_hold(l, pf, ids[i]);
    }
    cc_rc rc = c->v->prefetch(c, pf, err);
    free(keys);
    return rc;
}

static cc_rc apply_expire(cc_ledger *l, cc_conn *c, const cc_op *op, int64_t now, cc_result *r) {
    int limit = op->limit ? op->limit : CC_EXPIRE_PER_CALL_MAX;
    int64_t at = op->now_ms ? op->now_ms : now;
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)limit);
    if (!ids) return cc_fail(&r->err, CC_ERR_NOMEM, "", "out of memory");
    int n = 0;
    cc_rc rc = c->v->holds_due(c, at, limit, ids, &n, &r->err);
    if (rc == CC_OK && n > 0) rc = expire_prefetch(l, c, ids, n, &r->err);
    for (int i = 0; rc == CC_OK && i < n; i++) {
        char key[40];
        snprintf(key, sizeof key, "expire:%lld", (long long)ids[i]);
        cc_op ex;
        cc_op_init(&ex, CC_OP_EXPIRE);
        ex.key = key;
        rc = resolve_hold(l, c, &ex, CC_KIND_EXPIRE, ids[i], now, r);
        if (rc == CC_OK && r->replayed) rc = cc_fail(&r->err, CC_ERR_STORAGE, "", "due hold already expired");
    }
    free(ids);
    /* Expiring writes entries as it goes: any failure must roll back. */
    if (rc != CC_OK && !ledger_fatal(rc)) return cc_fail(&r->err, CC_ERR_STORAGE, "", "expire failed: %s", r->err.message);
    if (rc != CC_OK) return rc;
    memset(r, 0, sizeof *r);
    r->count = n;
    return CC_OK;
}

static cc_rc apply_op(cc_ledger *l, cc_conn *c, const cc_op *op, int64_t now, cc_result *r) {
    switch (op->kind) {
    case CC_OP_GRANT:
    case CC_OP_PURCHASE:
    case CC_OP_TEST_PURCHASE: return apply_credit(l, c, op, now, r);
    case CC_OP_HOLD: return apply_hold(l, c, op, now, r);
    case CC_OP_SETTLE:
    case CC_OP_VOID: return apply_resolve(l, c, op, now, r);
    case CC_OP_EXPIRE: return apply_expire(l, c, op, now, r);
    case CC_OP_HOLD_EXTEND: return apply_hold_extend(l, c, op, now, r);
    }
    CC_ASSERT(0 && "validated kind");
    return CC_ERR_INVALID;
}

/* ---------------------------------------------------------------- 4. through the group commit */

/* One caller's operations as a commit job (commit.h). An op that failed
** validation is marked entry_id == -1 and skipped by apply and fail. */
typedef struct money_job {
    const cc_op *ops;
    cc_result *res;
    int n;
} money_job;

static int invalid(const cc_result *r) { return r->rc == CC_ERR_INVALID && r->entry_id == -1; }

static cc_rc money_apply(cc_ledger *l, cc_conn *w, void *arg, int64_t now, int64_t *nops, cc_error *why) {
    money_job *j = arg;
    for (int i = 0; i < j->n; i++) {
        cc_result *r = &j->res[i];
        if (invalid(r)) continue;
        ++*nops;
        cc_rc rc = ledger_outcome(apply_op(l, w, &j->ops[i], now, r), &r->rc, &r->err, why);
        if (rc != CC_OK) return rc;
    }
    return CC_OK;
}

static void money_hint(cc_ledger *l, void *arg, cc_prefetch *pf) {
    money_job *j = arg;
    for (int i = 0; i < j->n; i++) {
        const cc_op *op = &j->ops[i];
        if (invalid(&j->res[i])) continue;
        switch (op->kind) {
        case CC_OP_GRANT:
        case CC_OP_PURCHASE:
        case CC_OP_TEST_PURCHASE:
        case CC_OP_HOLD:
            hint_key(pf, op->key);
            hint_account(l, pf, op->account_id);
            break;
        case CC_OP_SETTLE:
        case CC_OP_VOID:
            hint_key(pf, op->key);
            hint_hold(l, pf, op->hold_id);
            break;
        case CC_OP_HOLD_EXTEND: hint_hold(l, pf, op->hold_id); break;
        case CC_OP_EXPIRE: break; /* its holds are known once found due (expire_prefetch) */
        }
    }
}

static void money_fail(void *arg, const cc_error *why) {
    money_job *j = arg;
    for (int i = 0; i < j->n; i++) {
        cc_result *r = &j->res[i];
        if (invalid(r)) continue;
        memset(r, 0, sizeof *r);
        ledger_rolled_back(&r->rc, &r->err, why);
    }
}

cc_rc cc_ledger_execute(cc_ledger *l, const cc_op *ops, int n, cc_result *results, cc_error *err) {
    if (!l) return cc_fail(err, CC_ERR_INVALID, "ledger", "ledger is closed");
    if (n < 1 || n > CC_BATCH_OPS_MAX)
        return cc_fail(err, CC_ERR_INVALID, "ops", "a batch holds 1..%d operations", CC_BATCH_OPS_MAX);
    int runnable = 0;
    for (int i = 0; i < n; i++) {
        memset(&results[i], 0, sizeof results[i]);
        cc_rc rc = validate_op(&ops[i], &results[i].err);
        if (rc != CC_OK) {
            results[i].rc = rc;
            results[i].entry_id = -1; /* marks "failed before the batch" */
        } else {
            runnable++;
        }
    }
    if (runnable == 0) return CC_OK;
    money_job mj = {.ops = ops, .res = results, .n = n};
    cc_commit_job job = {.apply = money_apply, .fail = money_fail, .hint = money_hint, .arg = &mj, .nops = n,
                         .shared_ok = 1};
    ledger_commit(l, &job);
    for (int i = 0; i < n; i++)
        if (results[i].entry_id == -1 && results[i].rc != CC_OK) results[i].entry_id = 0;
    return CC_OK;
}

cc_rc cc_ledger_execute1(cc_ledger *l, const cc_op *op, cc_result *result) {
    cc_error err;
    cc_rc rc = cc_ledger_execute(l, op, 1, result, &err);
    if (rc != CC_OK) {
        memset(result, 0, sizeof *result);
        result->rc = rc;
        result->err = err;
    }
    return result->rc;
}
