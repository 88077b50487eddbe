/*
** ledger.c — the credits ledger. See ledger.h for the contract.
**
** Layout of this file:
**   1. validation of operations (in the caller's thread, before queueing)
**   2. applying one operation inside the write transaction (the rules)
**   3. group commit (leader/follower) around a batch of operations
**   4. the reader pool and read functions
**   5. verify: every invariant recomputed from the entries
*/
#include "ledger.h"
#include "i64map.h"
#include "password.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>

struct job {
    const cc_op *ops;
    int n;
    cc_result *res;
    int done;
    struct job *next;
};

struct cc_ledger {
    cc_store *store;
    cc_conn *writer;

    pthread_mutex_t mu;        /* guards queue, leader flag, counters */
    pthread_cond_t cv;
    struct job *head, *tail;
    int leader;                /* 1 while some thread runs a batch */
    int64_t ops_total, commits_total;

    /* Writer-side caches: used only by the current leader (see section 2). */
    i64map acct_cache;         /* account id -> acct_slot */
    i64map hold_cache;         /* open hold id -> hold_slot */
    int64_t *dirty;            /* ids of accounts changed in this batch */
    int ndirty;

    pthread_mutex_t rmu;       /* guards the reader pool */
    pthread_cond_t rcv;
    cc_conn *readers[CC_READERS_MAX];
    int reader_free[CC_READERS_MAX];
    int nreaders;
    int test_spendable;        /* see cc_ledger_set_test_spendable; read under mu by the leader */
};

static const char *const KIND_NAMES[CC_KIND_MAX + 1] = {
    "", "grant", "purchase", "hold", "settle", "void", "expire", "test"};

const char *cc_kind_name(int kind) {
    return (kind >= 1 && kind <= CC_KIND_MAX) ? KIND_NAMES[kind] : "unknown";
}

int cc_kind_from_name(const char *name) {
    if (!name) return 0;
    for (int k = 1; k <= CC_KIND_MAX; k++)
        if (strcmp(name, KIND_NAMES[k]) == 0) return k;
    return 0;
}

void cc_op_init(cc_op *op, cc_op_kind kind) {
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->usage.tokens_in = op->usage.tokens_out = -1;
    op->usage.images = op->usage.seconds_ms = -1;
    op->role = -1;
    op->active = -1;
    op->charge_max = -1;
}

/* ---------------------------------------------------------------- 1. validation */

static size_t slen(const char *s) { return s ? strlen(s) : 0; }

static cc_rc check_text(const char *s, size_t max, const char *field, cc_error *err) {
    if (!s) return CC_OK;
    size_t n = strnlen(s, max + 1);
    if (n > max) return cc_fail(err, CC_ERR_INVALID, field, "%s is longer than %zu bytes", field, max);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 && s[i] != '\t')
            return cc_fail(err, CC_ERR_INVALID, field, "%s contains a control character", field);
    return CC_OK;
}

int cc_email_valid(const char *e) {
    if (!e) return 0;
    size_t n = strnlen(e, CC_EMAIL_BYTES_MAX + 1);
    if (n < 3 || n > CC_EMAIL_BYTES_MAX) return 0;
    const char *at = strchr(e, '@');
    if (!at || at == e || strchr(at + 1, '@')) return 0;
    const char *dom = at + 1;
    if (!*dom || *dom == '.' || e[n - 1] == '.' || !strchr(dom, '.')) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)e[i];
        if (ch <= 0x20 || ch == 0x7f || ch == '<' || ch == '>' || ch == ',' || ch == ';' ||
            ch == '"' || ch == '(' || ch == ')' || ch == '[' || ch == ']' || ch == '\\')
            return 0;
    }
    return 1;
}

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

static cc_rc check_id(int64_t v, const char *field, cc_error *err) {
    if (v <= 0) return cc_fail(err, CC_ERR_INVALID, field, "%s must be a positive id", field);
    return CC_OK;
}

#define TRY(x) do { cc_rc rc_ = (x); if (rc_ != CC_OK) return rc_; } while (0)

static cc_rc validate_op(const cc_op *op, cc_error *err) {
    switch (op->kind) {
    case CC_OP_GRANT:
        TRY(check_key(op->key, err));
        TRY(check_grant_key(op->key, err));
        TRY(check_id(op->account_id, "account_id", err));
        TRY(check_amount(op->amount, 0, "amount", err));
        TRY(check_text(op->note, CC_NOTE_BYTES_MAX, "note", err));
        return CC_OK;
    case CC_OP_PURCHASE:
    case CC_OP_TEST_PURCHASE:
        TRY(check_key(op->key, err));
        TRY(check_id(op->account_id, "account_id", err));
        TRY(check_amount(op->amount, 0, "amount", err));
        if (!op->currency || slen(op->currency) != 3)
            return cc_fail(err, CC_ERR_INVALID, "currency", "currency must be a 3-letter ISO code");
        for (int i = 0; i < 3; i++)
            if (op->currency[i] < 'a' || op->currency[i] > 'z')
                return cc_fail(err, CC_ERR_INVALID, "currency", "currency must be lower-case ISO letters");
        TRY(check_amount(op->amount_minor, 0, "amount_minor", err));
        if (slen(op->method) == 0) return cc_fail(err, CC_ERR_INVALID, "method", "payment method is required");
        TRY(check_text(op->method, CC_METHOD_BYTES_MAX, "method", err));
        if (slen(op->external_ref) == 0)
            return cc_fail(err, CC_ERR_INVALID, "external_ref", "the payment reference is required");
        TRY(check_text(op->external_ref, CC_REF_BYTES_MAX, "external_ref", err));
        TRY(check_text(op->note, CC_NOTE_BYTES_MAX, "note", err));
        return CC_OK;
    case CC_OP_HOLD:
        TRY(check_key(op->key, err));
        TRY(check_id(op->account_id, "account_id", err));
        TRY(check_amount(op->amount, 0, "amount", err));
        if (op->ttl_ms <= 0 || op->ttl_ms > CC_HOLD_TTL_MS_MAX)
            return cc_fail(err, CC_ERR_INVALID, "ttl_ms", "hold lifetime must be 1..%lld ms",
                           (long long)CC_HOLD_TTL_MS_MAX);
        TRY(check_text(op->ctx.prompt_id, CC_CTX_ID_BYTES_MAX, "prompt_id", err));
        TRY(check_text(op->ctx.node_id, CC_CTX_ID_BYTES_MAX, "node_id", err));
        TRY(check_text(op->ctx.node_class, CC_CLASS_BYTES_MAX, "node_class", err));
        TRY(check_text(op->ctx.model, CC_CLASS_BYTES_MAX, "model", err));
        return CC_OK;
    case CC_OP_SETTLE:
        TRY(check_key(op->key, err));
        TRY(check_id(op->hold_id, "hold_id", err));
        TRY(check_amount(op->amount, 1, "amount", err));
        TRY(check_counter(op->usage.tokens_in, "tokens_in", err));
        TRY(check_counter(op->usage.tokens_out, "tokens_out", err));
        TRY(check_counter(op->usage.images, "images", err));
        TRY(check_counter(op->usage.seconds_ms, "seconds_ms", err));
        TRY(check_text(op->ctx.model, CC_CLASS_BYTES_MAX, "model", err));
        TRY(check_text(op->note, CC_NOTE_BYTES_MAX, "note", err));
        if (op->charge_max < -1 || op->charge_max > CC_AMOUNT_MAX)
            return cc_fail(err, CC_ERR_INVALID, "charge_max", "charge_max must be 0..%lld (or -1 for the hold)",
                           (long long)CC_AMOUNT_MAX);
        return CC_OK;
    case CC_OP_HOLD_EXTEND:
        TRY(check_id(op->hold_id, "hold_id", err));
        if (op->ttl_ms <= 0 || op->ttl_ms > CC_HOLD_TTL_MS_MAX)
            return cc_fail(err, CC_ERR_INVALID, "ttl_ms", "hold lifetime must be 1..%lld ms",
                           (long long)CC_HOLD_TTL_MS_MAX);
        return CC_OK;
    case CC_OP_VOID:
        TRY(check_key(op->key, err));
        TRY(check_id(op->hold_id, "hold_id", err));
        TRY(check_text(op->note, CC_NOTE_BYTES_MAX, "note", err));
        return CC_OK;
    case CC_OP_EXPIRE:
        if (op->now_ms < 0) return cc_fail(err, CC_ERR_INVALID, "now_ms", "now_ms must not be negative");
        if (op->limit < 0 || op->limit > CC_EXPIRE_PER_CALL_MAX)
            return cc_fail(err, CC_ERR_INVALID, "limit", "limit must be 0..%d", CC_EXPIRE_PER_CALL_MAX);
        return CC_OK;
    case CC_OP_ACCOUNT_CREATE:
        if (!cc_email_valid(op->email))
            return cc_fail(err, CC_ERR_INVALID, "email", "'%.80s' is not a valid email address",
                           op->email ? op->email : "");
        TRY(check_text(op->display_name, CC_NAME_BYTES_MAX, "display_name", err));
        if (op->role != -1 && op->role != CC_ROLE_USER && op->role != CC_ROLE_ADMIN)
            return cc_fail(err, CC_ERR_INVALID, "role", "role must be user or admin");
        return CC_OK;
    case CC_OP_CRED_CREATE:
        TRY(check_id(op->account_id, "account_id", err));
        if (op->cred_kind != CC_CRED_SESSION && op->cred_kind != CC_CRED_API_KEY)
            return cc_fail(err, CC_ERR_INVALID, "kind", "credential kind must be session or api key");
        if (!op->cred_hash || !op->cred_hint) return cc_fail(err, CC_ERR_INVALID, "token", "no secret");
        TRY(check_text(op->note, CC_NAME_BYTES_MAX, "label", err));
        if (op->cred_kind == CC_CRED_SESSION ? (op->ttl_ms < 1 || op->ttl_ms > CC_SESSION_TTL_MS_MAX)
                                             : (op->ttl_ms < 0 || op->ttl_ms > 10LL * 366 * 24 * 3600 * 1000))
            return cc_fail(err, CC_ERR_INVALID, "ttl_ms", "credential lifetime is out of range");
        return CC_OK;
    case CC_OP_PASSWORD_SET:
        TRY(check_id(op->account_id, "account_id", err));
        if (!op->note || strncmp(op->note, "scrypt$", 7) || strlen(op->note) > CC_PASSWORD_HASH_BYTES_MAX)
            return cc_fail(err, CC_ERR_INVALID, "password", "not a password hash");
        return CC_OK;
    case CC_OP_CRED_REVOKE:
        TRY(check_id(op->account_id, "account_id", err));
        if (op->cred_kind != CC_CRED_SESSION && op->cred_kind != CC_CRED_API_KEY)
            return cc_fail(err, CC_ERR_INVALID, "kind", "credential kind must be session or api key");
        if (op->cred_id < 0) return cc_fail(err, CC_ERR_INVALID, "id", "id must not be negative");
        return CC_OK;
    case CC_OP_ACCOUNT_UPDATE:
        TRY(check_id(op->account_id, "account_id", err));
        TRY(check_text(op->display_name, CC_NAME_BYTES_MAX, "display_name", err));
        if (op->role != -1 && op->role != CC_ROLE_USER && op->role != CC_ROLE_ADMIN)
            return cc_fail(err, CC_ERR_INVALID, "role", "role must be user or admin");
        if (op->active != -1 && op->active != 0 && op->active != 1)
            return cc_fail(err, CC_ERR_INVALID, "active", "active must be 0 or 1");
        return CC_OK;
    }
    return cc_fail(err, CC_ERR_INVALID, "kind", "unknown operation kind %d", (int)op->kind);
}

/* ---------------------------------------------------------------- 2. the rules */

/* An operation's outcome other than CC_OK/business errors: the whole batch
** must roll back. Business errors (insufficient, state, conflict, not found,
** limit) are checked before the first write of the operation, so they leave
** the transaction untouched. */
static int fatal(cc_rc rc) { return rc == CC_ERR_STORAGE || rc == CC_ERR_NOMEM; }

static void set_text(char *dst, size_t cap, const char *src) {
    size_t n = slen(src);
    CC_ASSERT(n < cap); /* validated before */
    if (n) memcpy(dst, src, n);
    dst[n] = 0;
}

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

/* ---- writer-side caches
**
** Only the leader touches these (one thread at a time), inside a write
** transaction. Accounts are read through the cache and written back once per
** commit (flush_dirty); open holds are cached from creation to resolution so
** settling one needs no reads. The caches are dropped whenever another
** connection committed (data_version changed: the operator CLI in another
** process) and after any rollback, so they never disagree with the file. */

typedef struct acct_slot {
    cc_account a;
    int dirty;
} acct_slot;

typedef struct hold_slot {
    cc_hold h;
    char prompt_id[CC_CTX_ID_BYTES_MAX + 1];
    char node_id[CC_CTX_ID_BYTES_MAX + 1];
    char node_class[CC_CLASS_BYTES_MAX + 1];
    char model[CC_CLASS_BYTES_MAX + 1];
} hold_slot;

static void caches_clear(cc_ledger *l) {
    i64map_clear(&l->acct_cache, free);
    i64map_clear(&l->hold_cache, free);
    l->ndirty = 0;
}

static cc_rc flush_dirty(cc_ledger *l, cc_conn *c, cc_error *err) {
    for (int i = 0; i < l->ndirty; i++) {
        acct_slot *s = i64map_get(&l->acct_cache, l->dirty[i]);
        CC_ASSERT(s && s->dirty);
        cc_rc rc = c->v->account_update(c, &s->a, err);
        if (rc != CC_OK) return rc == CC_ERR_NOT_FOUND ? cc_fail(err, CC_ERR_STORAGE, "", "account vanished") : rc;
        s->dirty = 0;
    }
    l->ndirty = 0;
    return CC_OK;
}

static cc_rc acct_load(cc_ledger *l, cc_conn *c, int64_t id, acct_slot **out, cc_error *err) {
    acct_slot *s = i64map_get(&l->acct_cache, id);
    if (s) { *out = s; return CC_OK; }
    if (l->acct_cache.count >= l->acct_cache.max_items) {
        /* Full: write back what changed, then start over (bounded memory). */
        cc_rc rc = flush_dirty(l, c, err);
        if (rc != CC_OK) return rc;
        i64map_clear(&l->acct_cache, free);
    }
    s = malloc(sizeof *s);
    if (!s) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    cc_rc rc = c->v->account_get(c, id, &s->a, err);
    if (rc != CC_OK) { free(s); return rc; }
    s->dirty = 0;
    CC_ASSERT(i64map_put(&l->acct_cache, id, s) == 0);
    *out = s;
    return CC_OK;
}

static void acct_store(cc_ledger *l, acct_slot *s, const cc_account *after) {
    CC_ASSERT(after->balance >= 0 && after->held >= 0 && after->held <= after->balance);
    CC_ASSERT(after->balance <= CC_BALANCE_MAX);
    s->a = *after;
    if (!s->dirty) {
        s->dirty = 1;
        CC_ASSERT(l->ndirty < CC_ACCOUNT_CACHE_MAX);
        l->dirty[l->ndirty++] = after->id;
    }
}

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
    } else if (rc == CC_ERR_NOT_FOUND) {
        rc = cc_fail(err, CC_ERR_STORAGE, "", "hold %lld has no entry", (long long)id);
    }
    free(he);
    return rc;
}

/* ---- idempotency
**
** The fast path inserts the entry and lets the store's unique index on the
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

static void entry_base(cc_entry *e, int kind, const cc_op *op, int64_t account_id, int64_t now) {
    memset(e, 0, sizeof *e);
    if (op->key) set_text(e->key, sizeof e->key, op->key);
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
    pthread_mutex_lock(&l->mu);
    l->test_spendable = spendable ? 1 : 0;
    pthread_mutex_unlock(&l->mu);
}

static int test_spendable(cc_ledger *l) {
    pthread_mutex_lock(&l->mu);
    int v = l->test_spendable;
    pthread_mutex_unlock(&l->mu);
    return v;
}

int cc_ledger_test_spendable(cc_ledger *l) { return test_spendable(l); }

static cc_rc apply_credit(cc_ledger *l, cc_conn *c, const cc_op *op, int64_t now, cc_result *r) {
    acct_slot *s = NULL;
    cc_rc rc = acct_load(l, c, op->account_id, &s, &r->err);
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
        set_text(e.note, sizeof e.note, op->note);
    } else {
        set_text(e.currency, sizeof e.currency, op->currency);
        e.amount_minor = op->amount_minor;
        set_text(e.method, sizeof e.method, op->method);
        set_text(e.external_ref, sizeof e.external_ref, op->external_ref);
        set_text(e.note, sizeof e.note, op->note); /* e.g. the payment methods offered; TEST never counts as paid */
    }
    a.balance = nb;
    a.updated_ms = now;
    entry_after(&e, &a);
    int replayed;
    if ((rc = insert_entry(c, op, &e, r, &replayed)) != CC_OK || replayed) return rc;
    acct_store(l, s, &a);
    result_from_entry(r, &e, 0);
    return CC_OK;
}

static cc_rc apply_hold(cc_ledger *l, cc_conn *c, const cc_op *op, int64_t now, cc_result *r) {
    acct_slot *s = NULL;
    cc_rc rc = acct_load(l, c, op->account_id, &s, &r->err);
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
    cc_entry e;
    entry_base(&e, CC_KIND_HOLD, op, a.id, now);
    e.amount = op->amount;
    e.held_delta = op->amount;
    e.ttl_ms = op->ttl_ms;
    set_text(e.prompt_id, sizeof e.prompt_id, op->ctx.prompt_id);
    set_text(e.node_id, sizeof e.node_id, op->ctx.node_id);
    set_text(e.node_class, sizeof e.node_class, op->ctx.node_class);
    set_text(e.model, sizeof e.model, op->ctx.model);
    a.held += op->amount;
    a.updated_ms = now;
    entry_after(&e, &a);
    int replayed;
    if ((rc = insert_entry(c, op, &e, r, &replayed)) != CC_OK || replayed) return rc;
    cc_hold h = {.id = e.id, .account_id = a.id, .amount = op->amount, .state = CC_HOLD_OPEN,
                 .expires_ms = now + op->ttl_ms, .resolved_by = 0};
    if ((rc = c->v->hold_insert(c, &h, &r->err)) != CC_OK) return rc;
    acct_store(l, s, &a);
    hold_slot *hs = malloc(sizeof *hs);
    if (hs) {
        hs->h = h;
        memcpy(hs->prompt_id, e.prompt_id, sizeof hs->prompt_id);
        memcpy(hs->node_id, e.node_id, sizeof hs->node_id);
        memcpy(hs->node_class, e.node_class, sizeof hs->node_class);
        memcpy(hs->model, e.model, sizeof hs->model);
        if (i64map_put(&l->hold_cache, h.id, hs) != 0) free(hs); /* full: read it back later */
    }
    result_from_entry(r, &e, 0);
    return CC_OK;
}

static const char *hold_state_name(int s) {
    switch (s) {
    case CC_HOLD_OPEN: return "open";
    case CC_HOLD_SETTLED: return "settled";
    case CC_HOLD_VOIDED: return "voided";
    case CC_HOLD_EXPIRED: return "expired";
    }
    return "unknown";
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
                hold_state_name(hs.h.state));
        return refuse(c, op, r);
    }
    acct_slot *s = NULL;
    if ((rc = acct_load(l, c, hs.h.account_id, &s, &r->err)) != CC_OK)
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
        if (slen(op->ctx.model)) set_text(e.model, sizeof e.model, op->ctx.model);
        set_text(e.note, sizeof e.note, op->note);
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
        state = CC_HOLD_SETTLED;
    } else {
        e.amount = hs.h.amount;
        set_text(e.note, sizeof e.note, kind == CC_KIND_VOID ? op->note : "hold expired");
        state = kind == CC_KIND_VOID ? CC_HOLD_VOIDED : CC_HOLD_EXPIRED;
    }
    a.held -= hs.h.amount;
    a.updated_ms = now;
    entry_after(&e, &a);
    int replayed;
    if ((rc = insert_entry(c, op, &e, r, &replayed)) != CC_OK || replayed) return rc;
    if ((rc = c->v->hold_resolve(c, hs.h.id, state, e.id, &r->err)) != CC_OK)
        return rc == CC_ERR_STATE ? cc_fail(&r->err, CC_ERR_STORAGE, "", "hold changed underneath") : rc;
    acct_store(l, s, &a);
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
                       hold_state_name(hs.h.state));
    int64_t until = now + op->ttl_ms;
    r->hold_id = hs.h.id;
    r->account_id = hs.h.account_id;
    if (until <= hs.h.expires_ms) {
        r->count = hs.h.expires_ms;
        return CC_OK;
    }
    if ((rc = c->v->hold_extend(c, hs.h.id, until, &r->err)) != CC_OK) return rc;
    if (cached) ((hold_slot *)i64map_get(&l->hold_cache, hs.h.id))->h.expires_ms = until;
    r->count = until;
    return CC_OK;
}

static cc_rc apply_resolve(cc_ledger *l, cc_conn *c, const cc_op *op, int64_t now, cc_result *r) {
    return resolve_hold(l, c, op, op->kind == CC_OP_SETTLE ? CC_KIND_SETTLE : CC_KIND_VOID, op->hold_id, now, r);
}

static cc_rc apply_expire(cc_ledger *l, cc_conn *c, const cc_op *op, int64_t now, cc_result *r) {
    int limit = op->limit ? op->limit : CC_EXPIRE_PER_CALL_MAX;
    int64_t at = op->now_ms ? op->now_ms : now;
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)limit);
    if (!ids) return cc_fail(&r->err, CC_ERR_NOMEM, "", "out of memory");
    int n = 0;
    cc_rc rc = c->v->holds_due(c, at, limit, ids, &n, &r->err);
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
    if (rc != CC_OK && !fatal(rc)) return cc_fail(&r->err, CC_ERR_STORAGE, "", "expire failed: %s", r->err.message);
    if (rc != CC_OK) return rc;
    memset(r, 0, sizeof *r);
    r->count = n;
    return CC_OK;
}

static cc_rc apply_account_create(cc_ledger *l, cc_conn *c, const cc_op *op, int64_t now, cc_result *r) {
    (void)l;
    cc_account a;
    memset(&a, 0, sizeof a);
    set_text(a.email, sizeof a.email, op->email);
    set_text(a.display_name, sizeof a.display_name, op->display_name);
    a.active = 1;
    a.role = op->role == -1 ? CC_ROLE_USER : op->role;
    a.created_ms = a.updated_ms = now;
    cc_account dup;
    cc_rc rc = c->v->account_by_email(c, op->email, &dup, &r->err);
    if (rc == CC_OK)
        return cc_fail(&r->err, CC_ERR_EXISTS, "email", "an account with email '%s' already exists", op->email);
    if (rc != CC_ERR_NOT_FOUND) return rc;
    cc_error_clear(&r->err);
    if ((rc = c->v->account_insert(c, &a, &r->err)) != CC_OK) return rc;
    r->account_id = a.id;
    return CC_OK;
}

static cc_rc apply_account_update(cc_ledger *l, cc_conn *c, const cc_op *op, int64_t now, cc_result *r) {
    acct_slot *s = NULL;
    cc_rc rc = acct_load(l, c, op->account_id, &s, &r->err);
    if (rc == CC_ERR_NOT_FOUND)
        return cc_fail(&r->err, rc, "account_id", "no account with id %lld", (long long)op->account_id);
    if (rc != CC_OK) return rc;
    cc_account a = s->a;
    if (op->display_name) set_text(a.display_name, sizeof a.display_name, op->display_name);
    if (op->role != -1) a.role = op->role;
    if (op->active != -1) a.active = op->active;
    a.updated_ms = now;
    acct_store(l, s, &a);
    r->account_id = a.id;
    r->balance_after = a.balance;
    r->held_after = a.held;
    return CC_OK;
}

static cc_rc apply_cred_create(cc_ledger *l, cc_conn *c, const cc_op *op, int64_t now, cc_result *r) {
    acct_slot *s = NULL;
    cc_rc rc = acct_load(l, c, op->account_id, &s, &r->err);
    if (rc == CC_ERR_NOT_FOUND)
        return cc_fail(&r->err, rc, "account_id", "no account with id %lld", (long long)op->account_id);
    if (rc != CC_OK) return rc;
    if (!s->a.active)
        return cc_fail(&r->err, CC_ERR_STATE, "account_id", "account %lld is disabled", (long long)s->a.id);
    if (op->cred_kind == CC_CRED_API_KEY) {
        /* Bounded per account, so a leaked session cannot mint keys forever. */
        cc_credential *tmp = malloc(sizeof *tmp * CC_API_KEYS_PER_ACCOUNT_MAX);
        if (!tmp) return cc_fail(&r->err, CC_ERR_NOMEM, "", "out of memory");
        int n = 0;
        rc = c->v->cred_list(c, s->a.id, CC_CRED_API_KEY, now, tmp, CC_API_KEYS_PER_ACCOUNT_MAX, &n, &r->err);
        free(tmp);
        if (rc != CC_OK) return rc;
        if (n >= CC_API_KEYS_PER_ACCOUNT_MAX)
            return cc_fail(&r->err, CC_ERR_LIMIT, "kind", "an account may have at most %d API keys; revoke one first",
                           CC_API_KEYS_PER_ACCOUNT_MAX);
    }
    cc_credential cr;
    memset(&cr, 0, sizeof cr);
    cr.kind = op->cred_kind;
    cr.account_id = s->a.id;
    memcpy(cr.hash, op->cred_hash, CC_CRED_HASH_BYTES);
    set_text(cr.label, sizeof cr.label, op->note);
    set_text(cr.hint, sizeof cr.hint, op->cred_hint);
    cr.created_ms = now;
    cr.expires_ms = op->ttl_ms ? now + op->ttl_ms : 0;
    if ((rc = c->v->cred_insert(c, &cr, &r->err)) != CC_OK) return rc;
    r->entry_id = cr.id;        /* credential results: id, created, expiry */
    r->account_id = cr.account_id;
    r->amount = cr.created_ms;
    r->count = cr.expires_ms;
    return CC_OK;
}

static cc_rc apply_cred_revoke(cc_ledger *l, cc_conn *c, const cc_op *op, int64_t now, cc_result *r) {
    (void)l;
    int n = 0;
    cc_rc rc = c->v->cred_revoke(c, op->cred_id, op->account_id, op->cred_kind, now, &n, &r->err);
    if (rc != CC_OK) return rc;
    if (op->cred_id > 0 && n == 0)
        return cc_fail(&r->err, CC_ERR_NOT_FOUND, "id", "no active credential %lld on this account",
                       (long long)op->cred_id);
    r->account_id = op->account_id;
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
    case CC_OP_ACCOUNT_CREATE: return apply_account_create(l, c, op, now, r);
    case CC_OP_ACCOUNT_UPDATE: return apply_account_update(l, c, op, now, r);
    case CC_OP_CRED_CREATE: return apply_cred_create(l, c, op, now, r);
    case CC_OP_CRED_REVOKE: return apply_cred_revoke(l, c, op, now, r);
    case CC_OP_PASSWORD_SET: {
        acct_slot *s = NULL;
        cc_rc rc = acct_load(l, c, op->account_id, &s, &r->err);
        if (rc == CC_ERR_NOT_FOUND)
            return cc_fail(&r->err, rc, "account_id", "no account with id %lld", (long long)op->account_id);
        if (rc != CC_OK) return rc;
        r->account_id = s->a.id;
        return c->v->password_set(c, s->a.id, op->note, now, &r->err);
    }
    }
    CC_ASSERT(0 && "validated kind");
    return CC_ERR_INVALID;
}

/* ---------------------------------------------------------------- 3. group commit */

static void fail_batch(struct job *batch, struct job *end, const cc_error *why) {
    for (struct job *j = batch; j != end; j = j->next) {
        for (int i = 0; i < j->n; i++) {
            cc_result *r = &j->res[i];
            if (r->rc == CC_ERR_INVALID && r->entry_id == -1) continue; /* failed validation */
            memset(r, 0, sizeof *r);
            r->rc = CC_ERR_STORAGE;
            r->err = *why;
            r->err.rc = CC_ERR_STORAGE;
        }
    }
}

static void abort_batch(cc_ledger *l, struct job *batch, struct job *end, const cc_error *why) {
    l->writer->v->rollback(l->writer);
    caches_clear(l); /* they may hold state the rollback just undid */
    fail_batch(batch, end, why);
}

/* Runs jobs [batch, end) in one write transaction. Called by the leader only,
** so the writer connection and the caches are used by one thread at a time. */
static int64_t run_batch(cc_ledger *l, struct job *batch, struct job *end) {
    cc_conn *w = l->writer;
    cc_error err;
    cc_error_clear(&err);
    int64_t nops = 0;
    int changed = 1;
    if (w->v->begin_write(w, &err) != CC_OK || w->v->data_changed(w, &changed, &err) != CC_OK) {
        abort_batch(l, batch, end, &err);
        return 0;
    }
    if (changed) caches_clear(l);
    CC_ASSERT(l->ndirty == 0);
    int64_t now = cc_now_ms();
    for (struct job *j = batch; j != end; j = j->next) {
        for (int i = 0; i < j->n; i++) {
            cc_result *r = &j->res[i];
            if (r->rc == CC_ERR_INVALID && r->entry_id == -1) continue;
            nops++;
            cc_rc rc = apply_op(l, w, &j->ops[i], now, r);
            r->rc = rc;
            r->err.rc = rc;
            if (fatal(rc)) {
                cc_error why = r->err;
                abort_batch(l, batch, end, &why);
                return 0;
            }
        }
    }
    if (flush_dirty(l, w, &err) != CC_OK || w->v->commit(w, &err) != CC_OK) {
        abort_batch(l, batch, end, &err);
        return 0;
    }
    return nops;
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

    struct job job = {.ops = ops, .n = n, .res = results, .done = 0, .next = NULL};
    pthread_mutex_lock(&l->mu);
    if (l->tail) l->tail->next = &job; else l->head = &job;
    l->tail = &job;
    while (!job.done) {
        if (l->leader) {
            pthread_cond_wait(&l->cv, &l->mu);
            continue;
        }
        /* Become the leader: take whole jobs from the queue up to the batch
        ** limit (always at least one), run them in one commit. */
        l->leader = 1;
        struct job *batch = l->head, *end = l->head;
        int taken = 0;
        while (end && (taken == 0 || taken + end->n <= CC_BATCH_OPS_MAX)) {
            taken += end->n;
            end = end->next;
        }
        l->head = end;
        if (!end) l->tail = NULL;
        pthread_mutex_unlock(&l->mu);

        int64_t nops = run_batch(l, batch, end);

        pthread_mutex_lock(&l->mu);
        for (struct job *j = batch; j != end; j = j->next) j->done = 1;
        l->leader = 0;
        l->ops_total += nops;
        l->commits_total += 1;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
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

void cc_ledger_counters(cc_ledger *l, int64_t *ops, int64_t *commits) {
    pthread_mutex_lock(&l->mu);
    *ops = l->ops_total;
    *commits = l->commits_total;
    pthread_mutex_unlock(&l->mu);
}

/* ---------------------------------------------------------------- 4. readers */

static cc_conn *reader_take(cc_ledger *l, int *slot) {
    pthread_mutex_lock(&l->rmu);
    for (;;) {
        for (int i = 0; i < l->nreaders; i++) {
            if (l->reader_free[i]) {
                l->reader_free[i] = 0;
                pthread_mutex_unlock(&l->rmu);
                *slot = i;
                return l->readers[i];
            }
        }
        pthread_cond_wait(&l->rcv, &l->rmu);
    }
}

static void reader_give(cc_ledger *l, int slot) {
    pthread_mutex_lock(&l->rmu);
    CC_ASSERT(!l->reader_free[slot]);
    l->reader_free[slot] = 1;
    pthread_cond_signal(&l->rcv);
    pthread_mutex_unlock(&l->rmu);
}

cc_rc cc_ledger_open(cc_store *store, int readers, cc_ledger **out, cc_error *err) {
    *out = NULL;
    if (!store) return cc_fail(err, CC_ERR_INVALID, "store", "no store");
    if (readers < 1 || readers > CC_READERS_MAX) {
        store->v->close(store);
        return cc_fail(err, CC_ERR_INVALID, "readers", "readers must be 1..%d", CC_READERS_MAX);
    }
    cc_ledger *l = calloc(1, sizeof *l);
    if (!l) {
        store->v->close(store);
        return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    l->store = store;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    pthread_mutex_init(&l->rmu, NULL);
    pthread_cond_init(&l->rcv, NULL);
    l->dirty = malloc(sizeof(int64_t) * CC_ACCOUNT_CACHE_MAX);
    if (!l->dirty || i64map_init(&l->acct_cache, CC_ACCOUNT_CACHE_MAX) != 0 ||
        i64map_init(&l->hold_cache, CC_HOLD_CACHE_MAX) != 0) {
        cc_ledger_close(l);
        return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    cc_rc rc = store->v->connect(store, 1, &l->writer, err);
    for (int i = 0; rc == CC_OK && i < readers; i++) {
        rc = store->v->connect(store, 0, &l->readers[i], err);
        if (rc == CC_OK) {
            l->reader_free[i] = 1;
            l->nreaders++;
        }
    }
    if (rc != CC_OK) {
        cc_ledger_close(l);
        return rc;
    }
    *out = l;
    return CC_OK;
}

void cc_ledger_close(cc_ledger *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    CC_ASSERT(!l->leader && !l->head); /* the binding closes only when idle */
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->nreaders; i++) l->readers[i]->v->close(l->readers[i]);
    if (l->writer) l->writer->v->close(l->writer);
    l->store->v->close(l->store);
    i64map_destroy(&l->acct_cache, free);
    i64map_destroy(&l->hold_cache, free);
    free(l->dirty);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->rmu);
    pthread_cond_destroy(&l->rcv);
    free(l);
}

cc_rc cc_ledger_account(cc_ledger *l, int64_t id, cc_account *out, cc_error *err) {
    if (id <= 0) return cc_fail(err, CC_ERR_INVALID, "account_id", "account_id must be a positive id");
    int slot;
    cc_conn *c = reader_take(l, &slot);
    cc_rc rc = c->v->account_get(c, id, out, err);
    reader_give(l, slot);
    if (rc == CC_ERR_NOT_FOUND)
        cc_fail(err, rc, "account_id", "no account with id %lld", (long long)id);
    return rc;
}

cc_rc cc_ledger_account_by_email(cc_ledger *l, const char *email, cc_account *out, cc_error *err) {
    if (!email || !*email || strlen(email) > CC_EMAIL_BYTES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "email", "email is empty or too long");
    int slot;
    cc_conn *c = reader_take(l, &slot);
    cc_rc rc = c->v->account_by_email(c, email, out, err);
    reader_give(l, slot);
    if (rc == CC_ERR_NOT_FOUND) cc_fail(err, rc, "email", "no account with email '%s'", email);
    return rc;
}

cc_rc cc_ledger_accounts(cc_ledger *l, int64_t after_id, int limit, cc_account *out, int *n_out,
                         cc_error *err) {
    if (limit < 1 || limit > CC_ACCOUNTS_LIST_MAX)
        return cc_fail(err, CC_ERR_INVALID, "limit", "limit must be 1..%d", CC_ACCOUNTS_LIST_MAX);
    if (after_id < 0) return cc_fail(err, CC_ERR_INVALID, "after_id", "after_id must not be negative");
    int slot;
    cc_conn *c = reader_take(l, &slot);
    cc_rc rc = c->v->account_list(c, after_id, limit, out, n_out, err);
    reader_give(l, slot);
    return rc;
}

cc_rc cc_ledger_hold(cc_ledger *l, int64_t hold_id, cc_hold *out, cc_error *err) {
    if (hold_id <= 0) return cc_fail(err, CC_ERR_INVALID, "hold_id", "hold_id must be a positive id");
    int slot;
    cc_conn *c = reader_take(l, &slot);
    cc_rc rc = c->v->hold_get(c, hold_id, out, err);
    reader_give(l, slot);
    return rc;
}

cc_rc cc_ledger_entry(cc_ledger *l, const char *key, cc_entry *out, cc_error *err) {
    if (!key || !*key || strlen(key) > CC_KEY_BYTES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "key", "key is empty or too long");
    int slot;
    cc_conn *c = reader_take(l, &slot);
    cc_rc rc = c->v->entry_by_key(c, key, out, err);
    reader_give(l, slot);
    return rc;
}

cc_rc cc_ledger_history(cc_ledger *l, const cc_history_query *q, cc_entry *out, int *n_out,
                        int64_t *next_before, cc_error *err) {
    if (q->account_id <= 0)
        return cc_fail(err, CC_ERR_INVALID, "account_id", "account_id must be a positive id");
    if (q->limit < 1 || q->limit > CC_HISTORY_PAGE_MAX)
        return cc_fail(err, CC_ERR_INVALID, "limit", "limit must be 1..%d", CC_HISTORY_PAGE_MAX);
    if (q->before_id < 0) return cc_fail(err, CC_ERR_INVALID, "cursor", "cursor must not be negative");
    if (q->kinds_mask & ~(unsigned)(((1u << (CC_KIND_MAX + 1)) - 1) & ~1u))
        return cc_fail(err, CC_ERR_INVALID, "kinds", "unknown entry kind in filter");
    if (q->since_ms < 0 || q->until_ms < 0 || (q->until_ms && q->since_ms > q->until_ms))
        return cc_fail(err, CC_ERR_INVALID, "since", "date range is empty or negative");
    int slot;
    cc_conn *c = reader_take(l, &slot);
    cc_rc rc = c->v->history(c, q, out, n_out, err);
    reader_give(l, slot);
    if (rc != CC_OK) return rc;
    *next_before = (*n_out == q->limit) ? out[*n_out - 1].id : 0;
    return CC_OK;
}

/* ---------------------------------------------------------------- credentials */

static void sha256(const char *s, size_t n, unsigned char out[CC_CRED_HASH_BYTES]) {
    unsigned int len = 0;
    CC_ASSERT(EVP_Digest(s, n, out, &len, EVP_sha256(), NULL) == 1 && len == CC_CRED_HASH_BYTES);
}

cc_rc cc_ledger_credential_create(cc_ledger *l, int64_t account_id, int kind, const char *label, int64_t ttl_ms,
                                  char *token_out, size_t token_cap, cc_credential *out, cc_error *err) {
    if (token_cap < CC_CRED_TOKEN_BYTES + 1) return cc_fail(err, CC_ERR_INVALID, "token", "token buffer too small");
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1) return cc_fail(err, CC_ERR_STORAGE, "", "no randomness available");
    char tok[CC_CRED_TOKEN_BYTES + 1];
    memcpy(tok, kind == CC_CRED_SESSION ? "ccs_" : "cck_", 4);
    cc_hex_encode(raw, sizeof raw, tok + 4);
    unsigned char hash[CC_CRED_HASH_BYTES];
    sha256(tok, CC_CRED_TOKEN_BYTES, hash);
    char hint[13];
    memcpy(hint, tok, 12);
    hint[12] = 0;
    cc_op op;
    cc_op_init(&op, CC_OP_CRED_CREATE);
    op.account_id = account_id;
    op.cred_kind = kind;
    op.cred_hash = hash;
    op.cred_hint = hint;
    op.note = label ? label : "";
    op.ttl_ms = ttl_ms;
    cc_result r;
    if (cc_ledger_execute1(l, &op, &r) != CC_OK) {
        if (err) *err = r.err;
        return r.rc;
    }
    memcpy(token_out, tok, CC_CRED_TOKEN_BYTES + 1);
    if (out) {
        memset(out, 0, sizeof *out);
        out->id = r.entry_id;
        out->kind = kind;
        out->account_id = account_id;
        memcpy(out->hash, hash, sizeof hash);
        set_text(out->label, sizeof out->label, op.note);
        memcpy(out->hint, hint, sizeof hint);
        out->created_ms = r.amount;
        out->expires_ms = r.count;
    }
    return CC_OK;
}

cc_rc cc_ledger_credential_revoke(cc_ledger *l, int64_t account_id, int kind, int64_t id, int *count,
                                  cc_error *err) {
    cc_op op;
    cc_op_init(&op, CC_OP_CRED_REVOKE);
    op.account_id = account_id;
    op.cred_kind = kind;
    op.cred_id = id;
    cc_result r;
    if (cc_ledger_execute1(l, &op, &r) != CC_OK) {
        if (err) *err = r.err;
        return r.rc;
    }
    *count = (int)r.count;
    return CC_OK;
}

cc_rc cc_ledger_credential_check(cc_ledger *l, const char *token, cc_credential *cred, cc_account *acct,
                                 cc_error *err) {
    size_t n = token ? strnlen(token, CC_CRED_TOKEN_BYTES + 1) : 0;
    if (n != CC_CRED_TOKEN_BYTES || (strncmp(token, "ccs_", 4) && strncmp(token, "cck_", 4)))
        return cc_fail(err, CC_ERR_NOT_FOUND, "token", "not a valid session or API key");
    unsigned char hash[CC_CRED_HASH_BYTES];
    sha256(token, n, hash);
    int slot;
    cc_conn *c = reader_take(l, &slot);
    cc_rc rc = c->v->cred_by_hash(c, hash, cred, err);
    if (rc == CC_OK) rc = c->v->account_get(c, cred->account_id, acct, err);
    reader_give(l, slot);
    if (rc == CC_ERR_NOT_FOUND) return cc_fail(err, rc, "token", "not a valid session or API key");
    if (rc != CC_OK) return rc;
    int64_t now = cc_now_ms();
    /* Only the holder of the secret gets here: telling them why leaks nothing. */
    if (cred->revoked_ms)
        return cc_fail(err, CC_ERR_NOT_FOUND, "revoked", "this %s was revoked",
                       cred->kind == CC_CRED_API_KEY ? "API key" : "session");
    if (cred->expires_ms && cred->expires_ms <= now)
        return cc_fail(err, CC_ERR_NOT_FOUND, "expired", "this session has expired");
    if (!acct->active) return cc_fail(err, CC_ERR_STATE, "account_id", "this account is disabled");
    return CC_OK;
}

cc_rc cc_ledger_credential_list(cc_ledger *l, int64_t account_id, int kind, cc_credential *out, int cap, int *n_out,
                                cc_error *err) {
    if (account_id <= 0) return cc_fail(err, CC_ERR_INVALID, "account_id", "account_id must be a positive id");
    if (cap < 1 || cap > CC_CRED_LIST_MAX) return cc_fail(err, CC_ERR_INVALID, "limit", "limit is out of range");
    int slot;
    cc_conn *c = reader_take(l, &slot);
    cc_rc rc = c->v->cred_list(c, account_id, kind, cc_now_ms(), out, cap, n_out, err);
    reader_give(l, slot);
    return rc;
}

cc_rc cc_ledger_usage(cc_ledger *l, int64_t account_id, int64_t since_ms, int64_t until_ms, cc_usage_row *out,
                      int cap, int *n_out, cc_error *err) {
    if (account_id <= 0) return cc_fail(err, CC_ERR_INVALID, "account_id", "account_id must be a positive id");
    if (since_ms < 0 || until_ms <= since_ms || until_ms - since_ms > CC_USAGE_RANGE_MS_MAX)
        return cc_fail(err, CC_ERR_INVALID, "since", "the range must be non-empty and at most 366 days");
    if (cap < 1 || cap > CC_USAGE_ROWS_MAX) return cc_fail(err, CC_ERR_INVALID, "cap", "cap out of range");
    int slot;
    cc_conn *c = reader_take(l, &slot);
    cc_rc rc = c->v->usage_summary(c, account_id, since_ms, until_ms, out, cap, n_out, err);
    reader_give(l, slot);
    return rc;
}

/* ---------------------------------------------------------------- passwords */

cc_rc cc_ledger_set_password(cc_ledger *l, int64_t account_id, const char *password, cc_error *err) {
    char enc[CC_PASSWORD_HASH_BYTES_MAX + 1];
    cc_rc rc = cc_password_hash(password, CC_SCRYPT_LOG2N_DEFAULT, enc, sizeof enc, err);
    if (rc != CC_OK) return rc;
    cc_op op;
    cc_op_init(&op, CC_OP_PASSWORD_SET);
    op.account_id = account_id;
    op.note = enc;
    cc_result r;
    if (cc_ledger_execute1(l, &op, &r) != CC_OK) {
        if (err) *err = r.err;
        return r.rc;
    }
    return CC_OK;
}

/* A hash of a password nobody knows, verified for unknown emails so that
** both answers take the same time. Made once, lazily. */
static pthread_once_t decoy_once = PTHREAD_ONCE_INIT;
static char decoy_hash[CC_PASSWORD_HASH_BYTES_MAX + 1];
static void make_decoy(void) {
    cc_error e;
    CC_ASSERT(cc_password_hash("decoy-password-never-used", CC_SCRYPT_LOG2N_DEFAULT, decoy_hash,
                               sizeof decoy_hash, &e) == CC_OK);
}

cc_rc cc_ledger_sign_in(cc_ledger *l, const char *email, const char *password, cc_account *out, cc_error *err) {
    if (!email || !*email || strlen(email) > CC_EMAIL_BYTES_MAX || !password)
        return cc_fail(err, CC_ERR_INVALID, "email", "enter an email and a password");
    char enc[CC_PASSWORD_HASH_BYTES_MAX + 1];
    int slot;
    cc_conn *c = reader_take(l, &slot);
    cc_rc rc = c->v->account_by_email(c, email, out, err);
    if (rc == CC_OK) rc = c->v->password_get(c, out->id, enc, sizeof enc, err);
    reader_give(l, slot);
    int known = rc == CC_OK;
    if (rc != CC_OK && rc != CC_ERR_NOT_FOUND) return rc;
    if (!known) {
        pthread_once(&decoy_once, make_decoy);
        memcpy(enc, decoy_hash, sizeof enc);
    }
    int ok = 0;
    rc = cc_password_verify(password, enc, &ok, err);
    if (rc != CC_OK) return rc;
    if (!known || !ok) return cc_fail(err, CC_ERR_NOT_FOUND, "password", "wrong email or password");
    if (!out->active) return cc_fail(err, CC_ERR_STATE, "email", "this account is disabled");
    return CC_OK;
}

/* ---------------------------------------------------------------- 5. verify */

typedef struct acc_sum {
    cc_account a;
    int64_t balance, held, paid, granted, spent, uncollected, entries, test;
} acc_sum;

typedef struct hold_chk {
    cc_hold h;
    int64_t hold_entries;      /* entries of kind hold with this id: must be 1 */
    int64_t resolutions;       /* settle/void/expire entries: 0 if open, else 1 */
    int64_t resolution_kind;
} hold_chk;

typedef struct vctx {
    acc_sum *acc;
    int64_t nacc, capacc;
    hold_chk *holds;
    int64_t nholds, capholds;
    char **problems;
    int cap, n;
    int64_t total_problems;
    int64_t cur;               /* index into acc of the account being scanned */
    int64_t last_entry_id;
    int oom;
    cc_verify_stats *stats;
} vctx;

static void problem(vctx *v, const char *fmt, ...) CC_PRINTF_LIKE(2, 3);
static void problem(vctx *v, const char *fmt, ...) {
    v->total_problems++;
    if (v->n >= v->cap) return;
    char buf[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char *p = strdup(buf);
    if (!p) { v->oom = 1; return; }
    v->problems[v->n++] = p;
}

static int grow(void **arr, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return 0;
    int64_t nc = *cap ? *cap * 2 : 1024;
    while (nc < need) nc *= 2;
    void *p = realloc(*arr, (size_t)nc * elem);
    if (!p) return -1;
    *arr = p;
    *cap = nc;
    return 0;
}

static int v_account(void *ctx, const cc_account *a) {
    vctx *v = ctx;
    if (grow((void **)&v->acc, &v->capacc, v->nacc + 1, sizeof(acc_sum))) { v->oom = 1; return 1; }
    acc_sum *s = &v->acc[v->nacc++];
    memset(s, 0, sizeof *s);
    s->a = *a;
    return 0;
}

static int v_hold(void *ctx, const cc_hold *h) {
    vctx *v = ctx;
    if (grow((void **)&v->holds, &v->capholds, v->nholds + 1, sizeof(hold_chk))) { v->oom = 1; return 1; }
    hold_chk *c = &v->holds[v->nholds++];
    memset(c, 0, sizeof *c);
    c->h = *h;
    return 0;
}

static acc_sum *find_acc(vctx *v, int64_t id) {
    int64_t lo = 0, hi = v->nacc - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (v->acc[mid].a.id == id) return &v->acc[mid];
        if (v->acc[mid].a.id < id) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}

static hold_chk *find_hold(vctx *v, int64_t id) {
    int64_t lo = 0, hi = v->nholds - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (v->holds[mid].h.id == id) return &v->holds[mid];
        if (v->holds[mid].h.id < id) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}

/* A running total of verify, checked: a corrupted file cannot make it wrap. */
static void vsum(vctx *v, const cc_entry *e, int64_t *total, int64_t delta) {
    if (cc_add_i64(*total, delta, total)) {
        problem(v, "entry %lld of account %lld overflows a running total", (long long)e->id, (long long)e->account_id);
        *total = delta < 0 ? INT64_MIN : INT64_MAX;
    }
}

static int v_entry(void *ctx, const cc_entry *e) {
    vctx *v = ctx;
    v->stats->entries++;
    acc_sum *s = find_acc(v, e->account_id);
    if (!s) {
        problem(v, "entry %lld belongs to unknown account %lld", (long long)e->id, (long long)e->account_id);
        return 0;
    }
    if (e->kind < 1 || e->kind > CC_KIND_MAX) {
        problem(v, "entry %lld has unknown kind %d", (long long)e->id, e->kind);
        return 0;
    }
    /* Running sums in 128 bits so a corrupted file cannot overflow the check. */
    CC_I128 nb = (CC_I128)s->balance + e->delta, nh = (CC_I128)s->held + e->held_delta;
    if (nb != e->balance_after || nh != e->held_after)
        problem(v, "entry %lld of account %lld: balance/held after is %lld/%lld, entries give %lld/%lld",
                (long long)e->id, (long long)e->account_id, (long long)e->balance_after,
                (long long)e->held_after, (long long)nb, (long long)nh);
    if (nb < 0) problem(v, "entry %lld drives account %lld negative", (long long)e->id, (long long)e->account_id);
    if (nh < 0 || nh > nb)
        problem(v, "entry %lld leaves account %lld with held %lld outside 0..balance %lld",
                (long long)e->id, (long long)e->account_id, (long long)nh, (long long)nb);
    s->balance = (int64_t)nb;
    s->held = (int64_t)nh;
    /* TEST credits: only a test entry adds them, only a settle may spend them (at most its charge). */
    int64_t test_was = s->test;
    if (e->kind == CC_KIND_TEST) vsum(v, e, &s->test, e->delta);
    else s->test = e->test_after;
    if (e->test_after != s->test || e->test_after < 0 || e->test_after > e->balance_after ||
        (e->kind == CC_KIND_SETTLE ? (e->test_after > test_was || test_was - e->test_after > -e->delta)
                                   : (e->kind != CC_KIND_TEST && e->test_after != test_was)))
        problem(v, "entry %lld of account %lld: TEST credits after it are %lld, entries give %lld (was %lld)",
                (long long)e->id, (long long)e->account_id, (long long)e->test_after, (long long)s->test,
                (long long)test_was);
    s->entries++;
    switch (e->kind) {
    case CC_KIND_GRANT: vsum(v, e, &s->granted, e->delta); if (e->delta <= 0 || e->held_delta) goto shape; break;
    case CC_KIND_PURCHASE: vsum(v, e, &s->paid, e->delta); if (e->delta <= 0 || e->held_delta) goto shape; break;
    case CC_KIND_TEST: if (e->delta <= 0 || e->held_delta) goto shape; break;
    case CC_KIND_HOLD: {
        if (e->delta != 0 || e->held_delta != e->amount || e->amount <= 0) goto shape;
        hold_chk *h = find_hold(v, e->id);
        if (!h) problem(v, "hold entry %lld has no hold record", (long long)e->id);
        else {
            h->hold_entries++;
            if (h->h.amount != e->amount || h->h.account_id != e->account_id)
                problem(v, "hold %lld record does not match its entry", (long long)e->id);
        }
        break;
    }
    case CC_KIND_SETTLE:
    case CC_KIND_VOID:
    case CC_KIND_EXPIRE: {
        if (e->kind == CC_KIND_SETTLE) {
            vsum(v, e, &s->spent, -e->delta);
            vsum(v, e, &s->uncollected, e->uncollected);
            if (e->delta > 0 || e->uncollected < 0 || -e->delta + e->uncollected != e->amount) goto shape;
        } else if (e->delta != 0 || e->uncollected != 0) {
            goto shape;
        }
        hold_chk *h = find_hold(v, e->hold_id);
        if (!h) { problem(v, "entry %lld resolves unknown hold %lld", (long long)e->id, (long long)e->hold_id); break; }
        h->resolutions++;
        if (h->resolutions > 1)
            problem(v, "hold %lld resolved more than once (again by entry %lld)", (long long)e->hold_id,
                    (long long)e->id);
        if (e->held_delta != -h->h.amount)
            problem(v, "entry %lld releases %lld but hold %lld held %lld", (long long)e->id,
                    (long long)-e->held_delta, (long long)h->h.id, (long long)h->h.amount);
        if (h->h.resolved_by != e->id && h->resolutions == 1)
            problem(v, "hold %lld says it was resolved by entry %lld, not %lld", (long long)h->h.id,
                    (long long)h->h.resolved_by, (long long)e->id);
        int want = e->kind == CC_KIND_SETTLE ? CC_HOLD_SETTLED
                 : e->kind == CC_KIND_VOID ? CC_HOLD_VOIDED : CC_HOLD_EXPIRED;
        if (h->h.state != want)
            problem(v, "hold %lld is %s but entry %lld %s it", (long long)h->h.id,
                    hold_state_name(h->h.state), (long long)e->id, cc_kind_name(e->kind));
        if (e->id < h->h.id)
            problem(v, "entry %lld resolves hold %lld before it existed", (long long)e->id, (long long)h->h.id);
        break;
    }
    }
    return 0;
shape:
    problem(v, "entry %lld (%s) has amounts that do not fit its kind", (long long)e->id, cc_kind_name(e->kind));
    return 0;
}

cc_rc cc_ledger_verify(cc_ledger *l, char **problems, int cap, int *n_problems,
                       cc_verify_stats *stats, cc_error *err) {
    if (cap < 0 || cap > CC_VERIFY_PROBLEMS_MAX)
        return cc_fail(err, CC_ERR_INVALID, "cap", "cap must be 0..%d", CC_VERIFY_PROBLEMS_MAX);
    vctx v;
    memset(&v, 0, sizeof v);
    v.problems = problems;
    v.cap = cap;
    cc_verify_stats st;
    memset(&st, 0, sizeof st);
    v.stats = &st;
    int slot;
    cc_conn *c = reader_take(l, &slot);
    cc_rc rc = c->v->begin_read(c, err);
    if (rc == CC_OK) rc = c->v->scan_accounts(c, v_account, &v, err);
    if (rc == CC_OK && !v.oom) rc = c->v->scan_holds(c, v_hold, &v, err);
    if (rc == CC_OK && !v.oom) rc = c->v->scan_entries(c, v_entry, &v, err);
    c->v->end_read(c);
    reader_give(l, slot);
    if (rc == CC_OK && v.oom) rc = cc_fail(err, CC_ERR_NOMEM, "", "out of memory during verify");
    if (rc == CC_OK) {
        for (int64_t i = 0; i < v.nacc; i++) {
            acc_sum *s = &v.acc[i];
            const cc_account *a = &s->a;
            if (cc_add_i64(st.balance_total, a->balance, &st.balance_total) ||
                cc_add_i64(st.held_total, a->held, &st.held_total))
                problem(&v, "the ledger's balance or held total overflows at account %lld", (long long)a->id);
            if (a->balance < 0) problem(&v, "account %lld has a negative balance %lld", (long long)a->id, (long long)a->balance);
            if (s->balance != a->balance)
                problem(&v, "account %lld: balance %lld but its entries sum to %lld", (long long)a->id,
                        (long long)a->balance, (long long)s->balance);
            if (s->held != a->held)
                problem(&v, "account %lld: held %lld but its entries sum to %lld", (long long)a->id,
                        (long long)a->held, (long long)s->held);
            if (s->paid != a->paid_total || s->granted != a->granted_total || s->spent != a->spent_total ||
                s->uncollected != a->uncollected_total)
                problem(&v, "account %lld: totals paid/granted/spent/uncollected %lld/%lld/%lld/%lld, "
                        "entries give %lld/%lld/%lld/%lld", (long long)a->id, (long long)a->paid_total,
                        (long long)a->granted_total, (long long)a->spent_total,
                        (long long)a->uncollected_total, (long long)s->paid, (long long)s->granted,
                        (long long)s->spent, (long long)s->uncollected);
            if (s->test != a->test_balance)
                problem(&v, "account %lld: TEST credits %lld but its entries give %lld", (long long)a->id,
                        (long long)a->test_balance, (long long)s->test);
            s->held = 0; /* reused below: open hold sum from hold records */
        }
        for (int64_t i = 0; i < v.nholds; i++) {
            hold_chk *h = &v.holds[i];
            if (h->hold_entries != 1)
                problem(&v, "hold %lld has %lld hold entries", (long long)h->h.id, (long long)h->hold_entries);
            if (h->h.state == CC_HOLD_OPEN) {
                st.open_holds++;
                if (h->resolutions != 0)
                    problem(&v, "hold %lld is open but has a resolving entry", (long long)h->h.id);
                acc_sum *s = find_acc(&v, h->h.account_id);
                if (s) s->held += h->h.amount;
                else problem(&v, "hold %lld belongs to unknown account", (long long)h->h.id);
            } else if (h->resolutions == 0) {
                problem(&v, "hold %lld is %s but no entry resolved it", (long long)h->h.id,
                        hold_state_name(h->h.state));
            }
        }
        for (int64_t i = 0; i < v.nacc; i++)
            if (v.acc[i].held != v.acc[i].a.held)
                problem(&v, "account %lld: held %lld but its open holds sum to %lld",
                        (long long)v.acc[i].a.id, (long long)v.acc[i].a.held, (long long)v.acc[i].held);
        st.accounts = v.nacc;
        st.holds = v.nholds;
    }
    st.problems_total = v.total_problems;
    free(v.acc);
    free(v.holds);
    if (rc != CC_OK) {
        for (int i = 0; i < v.n; i++) free(v.problems[i]);
        *n_problems = 0;
        return rc;
    }
    *n_problems = v.n;
    if (stats) *stats = st;
    return CC_OK;
}
