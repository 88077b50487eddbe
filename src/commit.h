/*
** commit.h — group commit: the ledger's single writer and its batching.
**
** Contract:
**   - Every write of the ledger (money rules in rules.c, accounts and
**     credentials in auth.c) is a job handed to ledger_commit(). The call
**     returns when the job's transaction committed durably, or rolled back.
**   - Leader/follower: the first waiting caller becomes the leader, takes
**     whole jobs from the queue up to CC_BATCH_OPS_MAX operations (always at
**     least one job) and runs them in one write transaction; the others wait.
**     Jobs run in the order they were queued, operations of a job in order.
**   - A job's apply() may refuse its own operations (business errors are
**     recorded in the job's results and leave the transaction untouched);
**     returning a fatal code (CC_ERR_STORAGE, CC_ERR_NOMEM) rolls the whole
**     commit back and every job of it is failed through its fail().
**   - Writer-side account cache: accounts are read through it and written
**     back once per commit. It and the rules' hold cache are dropped after
**     any rollback and whenever another connection committed (the operator
**     CLI in another process), so they never disagree with the file. The
**     cache holds at most CC_ACCOUNT_CACHE_MAX accounts.
**   - Only the leader calls apply(), so the writer connection and the caches
**     are used by one thread at a time.
**   - A store with begin_write_shared (PostgreSQL): while other connections
**     write (the last commit found theirs), a batch whose jobs are all
**     shared_ok first runs in a shared write transaction; when that
**     conflicts (store.h conflicted), the jobs' results are reset through
**     fail() and the batch runs again, once, under begin_write. apply() must
**     therefore leave nothing behind but its results and the caches.
*/
#ifndef CC_COMMIT_H
#define CC_COMMIT_H

#include "ledger_int.h"

typedef struct cc_commit_job {
    /* Runs the job's operations with the writer `w` inside the transaction,
    ** at `now`. *nops: operations applied. CC_OK, or a fatal code with *why. */
    cc_rc (*apply)(cc_ledger *l, cc_conn *w, void *arg, int64_t now, int64_t *nops, cc_error *why);
    /* The commit rolled back: mark every result of the job failed with `why`. */
    void (*fail)(void *arg, const cc_error *why);
    /* Optional: adds what apply() will look up to *pf (store.h cc_prefetch),
    ** before the commit's first apply(). Leader only, like apply(). */
    void (*hint)(cc_ledger *l, void *arg, cc_prefetch *pf);
    void *arg;
    int shared_ok;             /* apply() may run in a shared write transaction (store.h begin_write_shared) */
    int nops;                  /* operations it counts toward CC_BATCH_OPS_MAX, >= 1 */
    int done;                  /* owned by commit.c */
    struct cc_commit_job *next;
} cc_commit_job;

/* Queues the job and waits until its commit finished (either way). */
void ledger_commit(cc_ledger *l, cc_commit_job *job);

/* An operation's outcome that must roll the whole commit back. */
static inline int ledger_fatal(cc_rc rc) { return rc == CC_ERR_STORAGE || rc == CC_ERR_NOMEM; }

/* Records an operation's outcome in its result's rc and err. A fatal one is
** also copied to *why and returned: the job stops, the commit rolls back. */
static inline cc_rc ledger_outcome(cc_rc rc, cc_rc *res_rc, cc_error *res_err, cc_error *why) {
    *res_rc = rc;
    res_err->rc = rc;
    if (!ledger_fatal(rc)) return CC_OK;
    *why = *res_err;
    return rc;
}

/* A result of a rolled-back commit (its other fields already zeroed). */
static inline void ledger_rolled_back(cc_rc *res_rc, cc_error *res_err, const cc_error *why) {
    *res_rc = CC_ERR_STORAGE;
    *res_err = *why;
    res_err->rc = CC_ERR_STORAGE;
}

/* The writer-side cached account; change it only through ledger_acct_store. */
typedef struct cc_acct_slot {
    cc_account a;
    int dirty;
} cc_acct_slot;

/* Leader only: the account through the cache (CC_ERR_NOT_FOUND if none). */
cc_rc ledger_acct_load(cc_ledger *l, cc_conn *w, int64_t id, cc_acct_slot **out, cc_error *err);
/* Leader only: the account's new state, written back at commit. Asserts
** 0 <= held <= balance <= CC_BALANCE_MAX. */
void ledger_acct_store(cc_ledger *l, cc_acct_slot *s, const cc_account *after);

/* Sets up / tears down the commit state of a ledger being opened/closed. */
int ledger_commit_init(cc_ledger *l);
void ledger_commit_destroy(cc_ledger *l);

#endif
