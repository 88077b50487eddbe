/*
** auth.c — accounts, passwords, sessions and personal API keys. See auth.h
** for the contract.
**
** Layout of this file:
**   1. the write operations (own types) and their validation
**   2. applying one inside the group commit (commit.h)
**   3. the public writes: accounts, credentials, passwords
**   4. the reads: accounts, credentials, sign-in
*/
#include "caps.h"
#include "commit.h"
#include "password.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>

/* ---------------------------------------------------------------- 1. operations */

typedef enum auth_kind {
    AUTH_ACCOUNT_CREATE = 1,
    AUTH_ACCOUNT_UPDATE,
    AUTH_CRED_CREATE,
    AUTH_CRED_REVOKE,
    AUTH_PASSWORD_SET,
    AUTH_KEY_LIMITS,
} auth_kind;

/* A new session or API key: the secret itself never reaches the commit. */
typedef struct cred_new {
    int64_t account_id;
    int kind;                                  /* cc_cred_kind */
    unsigned char hash[CC_CRED_HASH_BYTES];    /* SHA-256 of the secret */
    const char *hint;                          /* its first characters */
    const char *label;
    int64_t ttl_ms;                            /* 0 = no expiry (API keys) */
} cred_new;

typedef struct cred_revoke {
    int64_t account_id;
    int kind;
    int64_t id;                                /* one credential, or 0 for all of the kind */
} cred_revoke;

typedef struct key_limits {
    int64_t owner_id;                          /* the person's own key only; 0 = any (an admin) */
    int64_t id;
    int64_t cap_micro;                         /* -1 = none */
    int64_t expires_ms;                        /* 0 = never */
} key_limits;

typedef struct password_set {
    int64_t account_id;
    const char *hash;                          /* encoded scrypt hash (password.h) */
} password_set;

typedef struct auth_op {
    auth_kind kind;
    union {
        const cc_account_new *create;
        const cc_account_change *change;
        const cred_new *cred;
        const cred_revoke *revoke;
        const password_set *password;
        const key_limits *limits;
    } u;
} auth_op;

typedef struct auth_result {
    cc_rc rc;
    cc_error err;
    int64_t account_id;        /* account create/update, password set */
    cc_credential cred;        /* cred create: the stored row (id, created, expiry); key limits: the row after */
    cc_credential was;         /* key limits: the row before (its old cap and expiry, for the audit log) */
    int count;                 /* cred revoke: credentials revoked */
} auth_result;

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

static cc_rc check_role(int role, cc_error *err) {
    if (role != -1 && role != CC_ROLE_USER && role != CC_ROLE_ADMIN)
        return cc_fail(err, CC_ERR_INVALID, "role", "role must be user or admin");
    return CC_OK;
}

static cc_rc check_cred_kind(int kind, cc_error *err) {
    if (kind != CC_CRED_SESSION && kind != CC_CRED_API_KEY)
        return cc_fail(err, CC_ERR_INVALID, "kind", "credential kind must be session or api key");
    return CC_OK;
}

static cc_rc validate(const auth_op *op, cc_error *err) {
    switch (op->kind) {
    case AUTH_ACCOUNT_CREATE: {
        const cc_account_new *a = op->u.create;
        if (!cc_email_valid(a->email))
            return cc_fail(err, CC_ERR_INVALID, "email", "'%.80s' is not a valid email address",
                           a->email ? a->email : "");
        TRY(ledger_check_text(a->display_name, CC_NAME_BYTES_MAX, "display_name", err));
        return check_role(a->role, err);
    }
    case AUTH_ACCOUNT_UPDATE: {
        const cc_account_change *ch = op->u.change;
        TRY(ledger_check_id(ch->account_id, "account_id", err));
        TRY(ledger_check_text(ch->display_name, CC_NAME_BYTES_MAX, "display_name", err));
        TRY(check_role(ch->role, err));
        if (ch->active != -1 && ch->active != 0 && ch->active != 1)
            return cc_fail(err, CC_ERR_INVALID, "active", "active must be 0 or 1");
        return CC_OK;
    }
    case AUTH_CRED_CREATE: {
        const cred_new *c = op->u.cred;
        TRY(ledger_check_id(c->account_id, "account_id", err));
        TRY(check_cred_kind(c->kind, err));
        if (!c->hint) return cc_fail(err, CC_ERR_INVALID, "token", "no secret");
        TRY(ledger_check_text(c->label, CC_NAME_BYTES_MAX, "label", err));
        if (c->kind == CC_CRED_SESSION ? (c->ttl_ms < 1 || c->ttl_ms > CC_SESSION_TTL_MS_MAX)
                                       : (c->ttl_ms < 0 || c->ttl_ms > CC_API_KEY_TTL_MS_MAX))
            return cc_fail(err, CC_ERR_INVALID, "ttl_ms", "credential lifetime is out of range");
        return CC_OK;
    }
    case AUTH_CRED_REVOKE: {
        const cred_revoke *rv = op->u.revoke;
        TRY(ledger_check_id(rv->account_id, "account_id", err));
        TRY(check_cred_kind(rv->kind, err));
        if (rv->id < 0) return cc_fail(err, CC_ERR_INVALID, "id", "id must not be negative");
        return CC_OK;
    }
    case AUTH_KEY_LIMITS: {
        const key_limits *k = op->u.limits;
        TRY(ledger_check_id(k->id, "id", err));
        if (k->owner_id < 0) return cc_fail(err, CC_ERR_INVALID, "account_id", "account_id must not be negative");
        if (k->cap_micro < -1 || k->cap_micro > CC_AMOUNT_MAX)
            return cc_fail(err, CC_ERR_INVALID, "cap", "a key's cap must be 0..%lld micro-credits, or none",
                           (long long)CC_AMOUNT_MAX);
        int64_t now = cc_now_ms();
        if (k->expires_ms != 0 && (k->expires_ms <= now || k->expires_ms - now > CC_API_KEY_TTL_MS_MAX))
            return cc_fail(err, CC_ERR_INVALID, "expires", "a key's expiry must be in the future, at most 10 years "
                           "ahead, or never");
        return CC_OK;
    }
    case AUTH_PASSWORD_SET: {
        const password_set *pw = op->u.password;
        TRY(ledger_check_id(pw->account_id, "account_id", err));
        if (!pw->hash || strncmp(pw->hash, "scrypt$", 7) || strlen(pw->hash) > CC_PASSWORD_HASH_BYTES_MAX)
            return cc_fail(err, CC_ERR_INVALID, "password", "not a password hash");
        return CC_OK;
    }
    }
    return cc_fail(err, CC_ERR_INVALID, "kind", "unknown operation kind %d", (int)op->kind);
}

/* ---------------------------------------------------------------- 2. applying */

/* The account an operation names, through the writer's cache. */
static cc_rc load_account(cc_ledger *l, cc_conn *c, int64_t id, cc_acct_slot **s, cc_error *err) {
    cc_rc rc = ledger_acct_load(l, c, id, s, err);
    if (rc == CC_ERR_NOT_FOUND) return cc_fail(err, rc, "account_id", "no account with id %lld", (long long)id);
    return rc;
}

static cc_rc apply_account_create(cc_conn *c, const cc_account_new *in, int64_t now, auth_result *r) {
    cc_account a;
    memset(&a, 0, sizeof a);
    cc_caps_init(&a);
    ledger_set_text(a.email, sizeof a.email, in->email);
    ledger_set_text(a.display_name, sizeof a.display_name, in->display_name);
    a.active = 1;
    a.role = in->role == -1 ? CC_ROLE_USER : in->role;
    a.created_ms = a.updated_ms = now;
    cc_account dup;
    cc_rc rc = c->v->account_by_email(c, in->email, &dup, &r->err);
    if (rc == CC_OK)
        return cc_fail(&r->err, CC_ERR_EXISTS, "email", "an account with email '%s' already exists", in->email);
    if (rc != CC_ERR_NOT_FOUND) return rc;
    cc_error_clear(&r->err);
    if ((rc = c->v->account_insert(c, &a, &r->err)) != CC_OK) return rc;
    r->account_id = a.id;
    return CC_OK;
}

static cc_rc apply_account_update(cc_ledger *l, cc_conn *c, const cc_account_change *ch, int64_t now,
                                  auth_result *r) {
    cc_acct_slot *s = NULL;
    TRY(load_account(l, c, ch->account_id, &s, &r->err));
    cc_account a = s->a;
    if (ch->display_name) ledger_set_text(a.display_name, sizeof a.display_name, ch->display_name);
    if (ch->role != -1) a.role = ch->role;
    if (ch->active != -1) a.active = ch->active;
    a.updated_ms = now;
    ledger_acct_store(l, s, &a);
    r->account_id = a.id;
    return CC_OK;
}

static cc_rc apply_cred_create(cc_ledger *l, cc_conn *c, const cred_new *in, int64_t now, auth_result *r) {
    cc_acct_slot *s = NULL;
    TRY(load_account(l, c, in->account_id, &s, &r->err));
    if (!s->a.active)
        return cc_fail(&r->err, CC_ERR_STATE, "account_id", "account %lld is disabled", (long long)s->a.id);
    cc_rc rc;
    if (in->kind == CC_CRED_API_KEY) {
        /* Bounded per account, so a leaked session cannot mint keys forever. Expired keys count (as of 0
        ** nothing has expired): they can be extended, so they are not a way round the bound. */
        cc_credential *tmp = malloc(sizeof *tmp * CC_API_KEYS_PER_ACCOUNT_MAX);
        if (!tmp) return cc_fail(&r->err, CC_ERR_NOMEM, "", "out of memory");
        int n = 0;
        rc = c->v->cred_list(c, s->a.id, CC_CRED_API_KEY, 0, tmp, CC_API_KEYS_PER_ACCOUNT_MAX, &n, &r->err);
        free(tmp);
        if (rc != CC_OK) return rc;
        if (n >= CC_API_KEYS_PER_ACCOUNT_MAX)
            return cc_fail(&r->err, CC_ERR_LIMIT, "kind", "an account may have at most %d API keys; revoke one first",
                           CC_API_KEYS_PER_ACCOUNT_MAX);
    }
    cc_credential *cr = &r->cred;
    memset(cr, 0, sizeof *cr);
    cr->kind = in->kind;
    cr->account_id = s->a.id;
    memcpy(cr->hash, in->hash, CC_CRED_HASH_BYTES);
    ledger_set_text(cr->label, sizeof cr->label, in->label);
    ledger_set_text(cr->hint, sizeof cr->hint, in->hint);
    cr->created_ms = now;
    cr->expires_ms = in->ttl_ms ? now + in->ttl_ms : 0;
    cr->cap_micro = -1; /* no cap until one is set (cc_ledger_key_limits) */
    if ((rc = c->v->cred_insert(c, cr, &r->err)) != CC_OK) return rc;
    r->account_id = cr->account_id;
    return CC_OK;
}

static cc_rc apply_cred_revoke(cc_conn *c, const cred_revoke *in, int64_t now, auth_result *r) {
    int n = 0;
    cc_rc rc = c->v->cred_revoke(c, in->id, in->account_id, in->kind, now, &n, &r->err);
    if (rc != CC_OK) return rc;
    if (in->id > 0 && n == 0)
        return cc_fail(&r->err, CC_ERR_NOT_FOUND, "id", "no active credential %lld on this account", (long long)in->id);
    r->account_id = in->account_id;
    r->count = n;
    return CC_OK;
}

static cc_rc apply_key_limits(cc_conn *c, const key_limits *in, auth_result *r) {
    cc_credential *k = &r->cred;
    cc_rc rc = c->v->cred_get(c, in->id, k, &r->err);
    if (rc == CC_OK && (k->kind != CC_CRED_API_KEY || k->revoked_ms || (in->owner_id && k->account_id != in->owner_id)))
        rc = CC_ERR_NOT_FOUND;
    if (rc == CC_ERR_NOT_FOUND)
        return cc_fail(&r->err, rc, "id", "no active API key %lld%s", (long long)in->id,
                       in->owner_id ? " on this account" : "");
    if (rc != CC_OK) return rc;
    r->was = *k; /* read in the same write transaction: exactly what this change replaced */
    k->cap_micro = in->cap_micro;
    k->expires_ms = in->expires_ms;
    r->account_id = k->account_id;
    return c->v->cred_update(c, k, &r->err);
}

static cc_rc apply_password_set(cc_ledger *l, cc_conn *c, const password_set *in, int64_t now, auth_result *r) {
    cc_acct_slot *s = NULL;
    TRY(load_account(l, c, in->account_id, &s, &r->err));
    r->account_id = s->a.id;
    return c->v->password_set(c, s->a.id, in->hash, now, &r->err);
}

typedef struct auth_job {
    const auth_op *op;
    auth_result *res;
} auth_job;

static cc_rc auth_apply(cc_ledger *l, cc_conn *w, void *arg, int64_t now, int64_t *nops, cc_error *why) {
    auth_job *j = arg;
    const auth_op *op = j->op;
    auth_result *r = j->res;
    cc_rc rc = CC_ERR_INVALID;
    *nops = 1;
    switch (op->kind) {
    case AUTH_ACCOUNT_CREATE: rc = apply_account_create(w, op->u.create, now, r); break;
    case AUTH_ACCOUNT_UPDATE: rc = apply_account_update(l, w, op->u.change, now, r); break;
    case AUTH_CRED_CREATE: rc = apply_cred_create(l, w, op->u.cred, now, r); break;
    case AUTH_CRED_REVOKE: rc = apply_cred_revoke(w, op->u.revoke, now, r); break;
    case AUTH_PASSWORD_SET: rc = apply_password_set(l, w, op->u.password, now, r); break;
    case AUTH_KEY_LIMITS: rc = apply_key_limits(w, op->u.limits, r); break;
    }
    return ledger_outcome(rc, &r->rc, &r->err, why);
}

static void auth_fail(void *arg, const cc_error *why) {
    auth_result *r = ((auth_job *)arg)->res;
    memset(r, 0, sizeof *r);
    ledger_rolled_back(&r->rc, &r->err, why);
}

/* Validates op, runs it as one job of the group commit; r tells how it went. */
static cc_rc auth_run(cc_ledger *l, const auth_op *op, auth_result *r, cc_error *err) {
    memset(r, 0, sizeof *r);
    if (!l) return cc_fail(err, CC_ERR_INVALID, "ledger", "ledger is closed");
    cc_rc rc = validate(op, err);
    if (rc != CC_OK) return rc;
    auth_job aj = {.op = op, .res = r};
    cc_commit_job job = {.apply = auth_apply, .fail = auth_fail, .arg = &aj, .nops = 1};
    ledger_commit(l, &job);
    if (r->rc != CC_OK && err) *err = r->err;
    return r->rc;
}

/* ---------------------------------------------------------------- 3. writes */

void cc_account_change_init(cc_account_change *ch, int64_t account_id) {
    memset(ch, 0, sizeof *ch);
    ch->account_id = account_id;
    ch->role = -1;
    ch->active = -1;
}

cc_rc cc_ledger_account_create(cc_ledger *l, const cc_account_new *a, int64_t *id_out, cc_error *err) {
    if (!a) return cc_fail(err, CC_ERR_INVALID, "email", "no account given");
    auth_op op = {.kind = AUTH_ACCOUNT_CREATE, .u.create = a};
    auth_result r;
    cc_rc rc = auth_run(l, &op, &r, err);
    if (rc == CC_OK && id_out) *id_out = r.account_id;
    return rc;
}

cc_rc cc_ledger_account_update(cc_ledger *l, const cc_account_change *ch, cc_error *err) {
    if (!ch) return cc_fail(err, CC_ERR_INVALID, "account_id", "no change given");
    auth_op op = {.kind = AUTH_ACCOUNT_UPDATE, .u.change = ch};
    auth_result r;
    return auth_run(l, &op, &r, err);
}

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
    char hint[13];
    memcpy(hint, tok, 12);
    hint[12] = 0;
    cred_new cn = {.account_id = account_id, .kind = kind, .hint = hint, .label = label ? label : "",
                   .ttl_ms = ttl_ms};
    sha256(tok, CC_CRED_TOKEN_BYTES, cn.hash);
    auth_op op = {.kind = AUTH_CRED_CREATE, .u.cred = &cn};
    auth_result r;
    cc_rc rc = auth_run(l, &op, &r, err);
    if (rc != CC_OK) return rc;
    memcpy(token_out, tok, CC_CRED_TOKEN_BYTES + 1);
    if (out) *out = r.cred;
    return CC_OK;
}

cc_rc cc_ledger_credential_revoke(cc_ledger *l, int64_t account_id, int kind, int64_t id, int *count,
                                  cc_error *err) {
    cred_revoke rv = {.account_id = account_id, .kind = kind, .id = id};
    auth_op op = {.kind = AUTH_CRED_REVOKE, .u.revoke = &rv};
    auth_result r;
    cc_rc rc = auth_run(l, &op, &r, err);
    if (rc == CC_OK) *count = r.count;
    return rc;
}

cc_rc cc_ledger_key_limits(cc_ledger *l, int64_t owner_id, int64_t key_id, int64_t cap_micro, int64_t expires_ms,
                           cc_credential *out, cc_credential *was, cc_error *err) {
    key_limits k = {.owner_id = owner_id, .id = key_id, .cap_micro = cap_micro, .expires_ms = expires_ms};
    auth_op op = {.kind = AUTH_KEY_LIMITS, .u.limits = &k};
    auth_result r;
    cc_rc rc = auth_run(l, &op, &r, err);
    if (rc == CC_OK && out) *out = r.cred;
    if (rc == CC_OK && was) *was = r.was;
    return rc;
}

cc_rc cc_ledger_set_password(cc_ledger *l, int64_t account_id, const char *password, cc_error *err) {
    char enc[CC_PASSWORD_HASH_BYTES_MAX + 1];
    cc_rc rc = cc_password_hash(password, CC_SCRYPT_LOG2N_DEFAULT, enc, sizeof enc, err);
    if (rc != CC_OK) return rc;
    password_set pw = {.account_id = account_id, .hash = enc};
    auth_op op = {.kind = AUTH_PASSWORD_SET, .u.password = &pw};
    auth_result r;
    return auth_run(l, &op, &r, err);
}

/* ---------------------------------------------------------------- 4. reads */

static cc_rc busy_fail(int *busy, cc_error *err) {
    *busy = 1;
    return cc_fail(err, CC_ERR_STATE, "busy", "every reader connection is in use");
}

static cc_rc account_read(cc_ledger *l, int64_t id, cc_account *out, int *busy, cc_error *err) {
    if (busy) *busy = 0;
    if (id <= 0) return cc_fail(err, CC_ERR_INVALID, "account_id", "account_id must be a positive id");
    int slot;
    cc_conn *c = busy ? ledger_reader_try_take(l, &slot) : ledger_reader_take(l, &slot);
    if (!c) return busy_fail(busy, err);
    cc_rc rc = c->v->account_get(c, id, out, err);
    ledger_reader_give(l, slot);
    if (rc == CC_ERR_NOT_FOUND)
        cc_fail(err, rc, "account_id", "no account with id %lld", (long long)id);
    return rc;
}

cc_rc cc_ledger_account(cc_ledger *l, int64_t id, cc_account *out, cc_error *err) {
    return account_read(l, id, out, NULL, err);
}

cc_rc cc_ledger_account_nowait(cc_ledger *l, int64_t id, cc_account *out, int *busy, cc_error *err) {
    return account_read(l, id, out, busy, err);
}

cc_rc cc_ledger_account_by_email(cc_ledger *l, const char *email, cc_account *out, cc_error *err) {
    if (!email || !*email || strlen(email) > CC_EMAIL_BYTES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "email", "email is empty or too long");
    int slot;
    cc_conn *c = ledger_reader_take(l, &slot);
    cc_rc rc = c->v->account_by_email(c, email, out, err);
    ledger_reader_give(l, slot);
    if (rc == CC_ERR_NOT_FOUND) cc_fail(err, rc, "email", "no account with email '%s'", email);
    return rc;
}

cc_rc cc_ledger_accounts(cc_ledger *l, int64_t after_id, int limit, cc_account *out, int *n_out,
                         cc_error *err) {
    if (limit < 1 || limit > CC_ACCOUNTS_LIST_MAX)
        return cc_fail(err, CC_ERR_INVALID, "limit", "limit must be 1..%d", CC_ACCOUNTS_LIST_MAX);
    if (after_id < 0) return cc_fail(err, CC_ERR_INVALID, "after_id", "after_id must not be negative");
    int slot;
    cc_conn *c = ledger_reader_take(l, &slot);
    cc_rc rc = c->v->account_list(c, after_id, limit, out, n_out, err);
    ledger_reader_give(l, slot);
    return rc;
}

static cc_rc credential_check(cc_ledger *l, const char *token, cc_credential *cred, cc_account *acct, int *busy,
                              cc_error *err) {
    if (busy) *busy = 0;
    size_t n = token ? strnlen(token, CC_CRED_TOKEN_BYTES + 1) : 0;
    if (n != CC_CRED_TOKEN_BYTES || (strncmp(token, "ccs_", 4) && strncmp(token, "cck_", 4)))
        return cc_fail(err, CC_ERR_NOT_FOUND, "token", "not a valid session or API key");
    unsigned char hash[CC_CRED_HASH_BYTES];
    sha256(token, n, hash);
    int slot;
    cc_conn *c = busy ? ledger_reader_try_take(l, &slot) : ledger_reader_take(l, &slot);
    if (!c) return busy_fail(busy, err);
    cc_rc rc = c->v->cred_by_hash(c, hash, cred, err);
    if (rc == CC_OK) rc = c->v->account_get(c, cred->account_id, acct, err);
    ledger_reader_give(l, slot);
    if (rc == CC_ERR_NOT_FOUND) return cc_fail(err, rc, "token", "not a valid session or API key");
    if (rc != CC_OK) return rc;
    int64_t now = cc_now_ms();
    /* Only the holder of the secret gets here: telling them why leaks nothing. */
    if (cred->revoked_ms)
        return cc_fail(err, CC_ERR_NOT_FOUND, "revoked", "this %s was revoked",
                       cred->kind == CC_CRED_API_KEY ? "API key" : "session");
    if (cred->expires_ms && cred->expires_ms <= now)
        return cc_fail(err, CC_ERR_NOT_FOUND, "expired", "this %s has expired",
                       cred->kind == CC_CRED_API_KEY ? "API key" : "session");
    if (!acct->active) return cc_fail(err, CC_ERR_STATE, "account_id", "this account is disabled");
    return CC_OK;
}

cc_rc cc_ledger_credential_check(cc_ledger *l, const char *token, cc_credential *cred, cc_account *acct,
                                 cc_error *err) {
    return credential_check(l, token, cred, acct, NULL, err);
}

cc_rc cc_ledger_credential_check_nowait(cc_ledger *l, const char *token, cc_credential *cred, cc_account *acct,
                                        int *busy, cc_error *err) {
    return credential_check(l, token, cred, acct, busy, err);
}

cc_rc cc_ledger_credential_list(cc_ledger *l, int64_t account_id, int kind, int include_expired, cc_credential *out,
                                int cap, int *n_out, cc_error *err) {
    if (account_id <= 0) return cc_fail(err, CC_ERR_INVALID, "account_id", "account_id must be a positive id");
    if (cap < 1 || cap > CC_CRED_LIST_MAX) return cc_fail(err, CC_ERR_INVALID, "limit", "limit is out of range");
    int slot;
    cc_conn *c = ledger_reader_take(l, &slot);
    /* The store lists what has not expired at now_ms: as of 0, nothing has. */
    cc_rc rc = c->v->cred_list(c, account_id, kind, include_expired ? 0 : cc_now_ms(), out, cap, n_out, err);
    ledger_reader_give(l, slot);
    return rc;
}

/* A hash of a password nobody knows, verified for unknown emails so that
** both answers take the same time. Made once, lazily. */
static cc_once_t decoy_once = CC_ONCE_INIT;
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
    cc_conn *c = ledger_reader_take(l, &slot);
    cc_rc rc = c->v->account_by_email(c, email, out, err);
    if (rc == CC_OK) rc = c->v->password_get(c, out->id, enc, sizeof enc, err);
    ledger_reader_give(l, slot);
    int known = rc == CC_OK;
    if (rc != CC_OK && rc != CC_ERR_NOT_FOUND) return rc;
    if (!known) {
        cc_once(&decoy_once, make_decoy);
        memcpy(enc, decoy_hash, sizeof enc);
    }
    int ok = 0;
    rc = cc_password_verify(password, enc, &ok, err);
    if (rc != CC_OK) return rc;
    if (!known || !ok) return cc_fail(err, CC_ERR_NOT_FOUND, "password", "wrong email or password");
    if (!out->active) return cc_fail(err, CC_ERR_STATE, "email", "this account is disabled");
    return CC_OK;
}
