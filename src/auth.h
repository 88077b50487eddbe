/*
** auth.h — who is who: accounts, passwords, sessions and personal API keys.
**
** Contract:
**   - An account is identified by its email (unique, compared without case)
**     and has a role (user/admin) and a status (active/disabled). Accounts
**     are never deleted; a disabled account cannot sign in, present a
**     session or API key, or place a hold.
**   - Writes (account create/update, password set, credential create and
**     revoke) go through the ledger's group commit (commit.h) with their own
**     operation type: they are durable when the call returns and never share
**     fields with money operations (cc_op).
**   - A password is stored only as an scrypt hash (password.h), computed
**     before the write: the KDF never runs inside a commit. sign_in answers
**     CC_ERR_NOT_FOUND "wrong email or password" for an unknown email and a
**     wrong password alike, after the same KDF work, and CC_ERR_STATE for a
**     disabled account.
**   - A session or API key secret ("ccs_..." / "cck_...", 32 random bytes)
**     is returned once and stored only as its SHA-256. Sessions live
**     1..CC_SESSION_TTL_MS_MAX; API keys (ttl 0) until revoked, at most
**     CC_API_KEYS_PER_ACCOUNT_MAX unrevoked ones per account (expired keys
**     count: they stay listed and can be extended, cc_ledger_key_limits).
**   - Checking a secret answers CC_ERR_NOT_FOUND for unknown, revoked and
**     expired secrets alike to anyone who does not hold it.
**   - Thread-safe; every function may block on I/O (callers from Python
**     release the GIL around them).
*/
#ifndef CC_AUTH_H
#define CC_AUTH_H

#include "store.h"

#define CC_ACCOUNTS_LIST_MAX 10000   /* accounts returned by one list call */
#define CC_CRED_TOKEN_BYTES 68       /* "ccX_" + 64 hex */
#define CC_SESSION_TTL_MS_MAX (90LL * 24 * 3600 * 1000)
#define CC_API_KEY_TTL_MS_MAX (10LL * 366 * 24 * 3600 * 1000)
#define CC_API_KEYS_PER_ACCOUNT_MAX 50

typedef struct cc_ledger cc_ledger;

/* A new account. role -1 means CC_ROLE_USER; display_name NULL means "". */
typedef struct cc_account_new {
    const char *email;
    const char *display_name;
    int role;
} cc_account_new;

/* A change to an account: fields left at "keep" are not touched. */
typedef struct cc_account_change {
    int64_t account_id;
    const char *display_name;   /* NULL = keep */
    int role;                   /* -1 = keep */
    int active;                 /* -1 = keep, 0 disable, 1 enable */
} cc_account_change;

void cc_account_change_init(cc_account_change *ch, int64_t account_id); /* everything "keep" */

/* CC_ERR_EXISTS when the email is taken. *id_out is the new account's id. */
cc_rc cc_ledger_account_create(cc_ledger *l, const cc_account_new *a, int64_t *id_out, cc_error *err);
cc_rc cc_ledger_account_update(cc_ledger *l, const cc_account_change *ch, cc_error *err);

cc_rc cc_ledger_account(cc_ledger *l, int64_t id, cc_account *out, cc_error *err);
/* cc_ledger_account for a caller that may not wait (the queue gate, on the
** event loop): when every reader connection is taken it returns at once
** with *busy = 1 (CC_ERR_STATE, field "busy"); otherwise *busy = 0 and the
** answer is cc_ledger_account's. It still reads SQLite (WAL: readers do not
** wait for the writer). */
cc_rc cc_ledger_account_nowait(cc_ledger *l, int64_t id, cc_account *out, int *busy, cc_error *err);
cc_rc cc_ledger_account_by_email(cc_ledger *l, const char *email, cc_account *out,
                                 cc_error *err);
cc_rc cc_ledger_accounts(cc_ledger *l, int64_t after_id, int limit, cc_account *out,
                         int *n_out, cc_error *err);

/* The secret is written to token_out (at least CC_CRED_TOKEN_BYTES + 1)
** once. ttl_ms 0 means no expiry (API keys); sessions need
** 1..CC_SESSION_TTL_MS_MAX. */
cc_rc cc_ledger_credential_create(cc_ledger *l, int64_t account_id, int kind, const char *label, int64_t ttl_ms,
                                  char *token_out, size_t token_cap, cc_credential *out, cc_error *err);
/* id > 0 revokes that credential of the account; id == 0 all of the kind. */
cc_rc cc_ledger_credential_revoke(cc_ledger *l, int64_t account_id, int kind, int64_t id, int *count,
                                  cc_error *err);
/* Who presents this secret: CC_ERR_NOT_FOUND for unknown/revoked/expired
** secrets, CC_ERR_STATE for a disabled account. */
cc_rc cc_ledger_credential_check(cc_ledger *l, const char *token, cc_credential *cred, cc_account *acct,
                                 cc_error *err);
/* The same without waiting for a reader connection (see cc_ledger_account_nowait). */
cc_rc cc_ledger_credential_check_nowait(cc_ledger *l, const char *token, cc_credential *cred, cc_account *acct,
                                        int *busy, cc_error *err);
/* An account's unrevoked credentials of one kind, newest first: only those that work now, or with
** include_expired also the expired ones (an API key's owner and the admin see them, marked expired; they
** still cannot be used: checks and holds refuse them). */
cc_rc cc_ledger_credential_list(cc_ledger *l, int64_t account_id, int kind, int include_expired, cc_credential *out,
                                int cap, int *n_out, cc_error *err);

/* A personal API key's spending cap (over its life, micro-credits 0..CC_AMOUNT_MAX, or -1 = none) and
** expiry (epoch ms, later than now and at most CC_API_KEY_TTL_MS_MAX ahead, or 0 = never). owner_id > 0:
** only that account's key (the person; CC_ERR_NOT_FOUND otherwise); owner_id == 0: any key (an admin).
** Revoked keys and sessions are CC_ERR_NOT_FOUND. A hold placed with the key (cc_op.credential_id) is
** refused when the key is revoked or expired, or when cap_used + the hold > cap (CC_ERR_INSUFFICIENT,
** field "key_cap"), in the hold's own transaction; cap_used counts what runs of the key hold or were
** charged (what a hold did not charge comes back). Lowering the cap below cap_used only stops new holds.
** out (the key after) and was (the key before: its old cap and expiry, read in the same transaction, for
** the audit log) may be NULL. */
cc_rc cc_ledger_key_limits(cc_ledger *l, int64_t owner_id, int64_t key_id, int64_t cap_micro, int64_t expires_ms,
                           cc_credential *out, cc_credential *was, cc_error *err);

cc_rc cc_ledger_set_password(cc_ledger *l, int64_t account_id, const char *password, cc_error *err);
cc_rc cc_ledger_sign_in(cc_ledger *l, const char *email, const char *password, cc_account *out, cc_error *err);

int cc_email_valid(const char *email);

#endif
