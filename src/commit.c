/*
** commit.c — group commit: the ledger's single writer and its batching.
** See commit.h for the contract.
*/
#include "commit.h"

#include <stdlib.h>

/* ---------------------------------------------------------------- writer-side caches */

static void caches_clear(cc_ledger *l) {
    i64map_clear(&l->acct_cache, free);
    i64map_clear(&l->hold_cache, free);
    l->ndirty = 0;
}

static cc_rc flush_dirty(cc_ledger *l, cc_conn *c, cc_error *err) {
    for (int i = 0; i < l->ndirty; i++) {
        cc_acct_slot *s = i64map_get(&l->acct_cache, l->dirty[i]);
        CC_ASSERT(s && s->dirty);
        cc_rc rc = c->v->account_update(c, &s->a, err);
        if (rc != CC_OK) return rc == CC_ERR_NOT_FOUND ? cc_fail(err, CC_ERR_STORAGE, "", "account vanished") : rc;
        s->dirty = 0;
    }
    l->ndirty = 0;
    return CC_OK;
}

cc_rc ledger_acct_load(cc_ledger *l, cc_conn *c, int64_t id, cc_acct_slot **out, cc_error *err) {
    cc_acct_slot *s = i64map_get(&l->acct_cache, id);
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

void ledger_acct_store(cc_ledger *l, cc_acct_slot *s, const cc_account *after) {
    CC_ASSERT(after->balance >= 0 && after->held >= 0 && after->held <= after->balance);
    CC_ASSERT(after->balance <= CC_BALANCE_MAX);
    s->a = *after;
    if (!s->dirty) {
        s->dirty = 1;
        CC_ASSERT(l->ndirty < CC_ACCOUNT_CACHE_MAX);
        l->dirty[l->ndirty++] = after->id;
    }
}

/* ---------------------------------------------------------------- one commit */

/* Gathers what the jobs will look up; all: name cached holds and accounts
** too. Returns whether anything was named. */
static int hints(cc_ledger *l, cc_commit_job *batch, cc_commit_job *end, cc_prefetch *pf, int all) {
    pf->nkeys = pf->nholds = pf->naccounts = 0;
    pf->all = all;
    for (cc_commit_job *j = batch; j != end; j = j->next)
        if (j->hint) j->hint(l, j->arg, pf);
    return pf->nkeys || pf->nholds || pf->naccounts;
}

/* Returns 0, or -1 when a shared transaction conflicted: then the jobs'
** results are reset (fail()) and the batch is to run again under the
** exclusive writer lock. */
static int abort_batch(cc_ledger *l, cc_commit_job *batch, cc_commit_job *end, const cc_error *why, int shared) {
    cc_conn *w = l->writer;
    int again = shared && w->v->conflicted && w->v->conflicted(w);
    w->v->rollback(w);
    caches_clear(l); /* they may hold state the rollback just undid */
    for (cc_commit_job *j = batch; j != end; j = j->next) j->fail(j->arg, why);
    return again ? -1 : 0;
}

/* Every job may run in a shared write transaction (store.h begin_write_shared). */
static int shared_ok(cc_commit_job *batch, cc_commit_job *end) {
    for (cc_commit_job *j = batch; j != end; j = j->next)
        if (!j->shared_ok) return 0;
    return 1;
}

/* Runs jobs [batch, end) in one write transaction. Called by the leader only,
** so the writer connection and the caches are used by one thread at a time.
** Returns the operations applied (0 when the commit rolled back), or -1
** when a shared transaction (shared = 1) conflicted and nothing was written:
** the caller runs the batch again with shared = 0. */
static int64_t run_batch(cc_ledger *l, cc_commit_job *batch, cc_commit_job *end, int shared) {
    cc_conn *w = l->writer;
    cc_error err;
    cc_error_clear(&err);
    int64_t nops = 0;
    int changed = 1;
    /* What the jobs will look up, read in one go (PostgreSQL: with the
    ** writer lock, in one round trip, instead of one per operation). Asked
    ** before the caches are known to be current: when another process wrote
    ** before the last commit, every hold and account is named (the caches
    ** will likely be dropped); else only what they lack, and if they are
    ** dropped after all, the rest is asked once more. */
    if (w->v->prefetch && !l->prefetch) l->prefetch = malloc(sizeof *l->prefetch); /* none: no hints */
    cc_prefetch *pf = w->v->prefetch ? l->prefetch : NULL;
    if (pf && hints(l, batch, end, pf, l->others_wrote || shared) && w->v->prefetch(w, pf, &err) != CC_OK) {
        return abort_batch(l, batch, end, &err, shared);
    }
    if ((shared ? w->v->begin_write_shared(w, &err) : w->v->begin_write(w, &err)) != CC_OK ||
        w->v->data_changed(w, &changed, &err) != CC_OK) {
        return abort_batch(l, batch, end, &err, shared);
    }
    if (changed) caches_clear(l);
    if (pf && changed && !l->others_wrote && !shared && hints(l, batch, end, pf, 1) &&
        w->v->prefetch(w, pf, &err) != CC_OK) {
        return abort_batch(l, batch, end, &err, shared);
    }
    l->others_wrote = changed;
    CC_ASSERT(l->ndirty == 0);
    int64_t now = cc_now_ms();
    for (cc_commit_job *j = batch; j != end; j = j->next) {
        int64_t n = 0;
        cc_rc rc = j->apply(l, w, j->arg, now, &n, &err);
        nops += n;
        if (rc != CC_OK) {
            CC_ASSERT(ledger_fatal(rc));
            cc_error why = err;
            return abort_batch(l, batch, end, &why, shared);
        }
    }
    if (flush_dirty(l, w, &err) != CC_OK || w->v->commit(w, &err) != CC_OK) {
        return abort_batch(l, batch, end, &err, shared);
    }
    return nops;
}

/* ---------------------------------------------------------------- leader/follower */

void ledger_commit(cc_ledger *l, cc_commit_job *job) {
    CC_ASSERT(job->nops >= 1 && job->nops <= CC_BATCH_OPS_MAX);
    job->done = 0;
    job->next = NULL;
    cc_mutex_lock(&l->mu);
    if (l->tail) l->tail->next = job; else l->head = job;
    l->tail = job;
    while (!job->done) {
        if (l->leader) {
            cc_cond_wait(&l->cv, &l->mu);
            continue;
        }
        /* Become the leader: take whole jobs from the queue up to the batch
        ** limit (always at least one), run them in one commit. */
        l->leader = 1;
        cc_commit_job *batch = l->head, *end = l->head;
        int taken = 0;
        while (end && (taken == 0 || taken + end->nops <= CC_BATCH_OPS_MAX)) {
            taken += end->nops;
            end = end->next;
        }
        l->head = end;
        if (!end) l->tail = NULL;
        cc_mutex_unlock(&l->mu);

        /* While other servers write (PostgreSQL), a batch first runs in a
        ** shared transaction that theirs may overlap; on a conflict it runs
        ** again under the exclusive writer lock. */
        cc_conn *w = l->writer;
        int shared = w->v->begin_write_shared && w->v->others_write(w) && shared_ok(batch, end);
        int64_t nops = run_batch(l, batch, end, shared);
        if (nops < 0) nops = run_batch(l, batch, end, 0);
        CC_ASSERT(nops >= 0);

        cc_mutex_lock(&l->mu);
        /* `next` is read before `done` is set: a finished job's owner may
        ** return (and its stack frame go) as soon as it sees done. */
        for (cc_commit_job *j = batch; j != end;) {
            cc_commit_job *next = j->next;
            j->done = 1;
            j = next;
        }
        l->leader = 0;
        l->ops_total += nops;
        l->commits_total += 1;
        cc_cond_broadcast(&l->cv);
    }
    cc_mutex_unlock(&l->mu);
}

void cc_ledger_counters(cc_ledger *l, int64_t *ops, int64_t *commits) {
    cc_mutex_lock(&l->mu);
    *ops = l->ops_total;
    *commits = l->commits_total;
    cc_mutex_unlock(&l->mu);
}

int ledger_commit_init(cc_ledger *l) {
    cc_mutex_init(&l->mu);
    cc_cond_init(&l->cv);
    l->dirty = malloc(sizeof(int64_t) * CC_ACCOUNT_CACHE_MAX);
    if (!l->dirty || i64map_init(&l->acct_cache, CC_ACCOUNT_CACHE_MAX) != 0 ||
        i64map_init(&l->hold_cache, CC_HOLD_CACHE_MAX) != 0)
        return -1;
    return 0;
}

void ledger_commit_destroy(cc_ledger *l) {
    cc_mutex_lock(&l->mu);
    CC_ASSERT(!l->leader && !l->head); /* the binding closes only when idle */
    cc_mutex_unlock(&l->mu);
    i64map_destroy(&l->acct_cache, free);
    i64map_destroy(&l->hold_cache, free);
    free(l->dirty);
    free(l->prefetch);
    cc_mutex_destroy(&l->mu);
    cc_cond_destroy(&l->cv);
}
