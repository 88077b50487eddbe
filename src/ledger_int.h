/*
** ledger_int.h — internal to the ledger's files (ledger.c, rules.c, commit.c,
** verify.c, auth.c), in the manner of SQLite's sqliteInt.h: the ledger
** object's layout and the small helpers they share. Nothing outside these
** files includes it.
**
** Contract of the shared state:
**   - `mu` guards the commit queue, the leader flag, the counters and
**     test_spendable. Only the current leader (commit.c) uses `writer` and
**     the writer-side caches, one thread at a time, inside a write
**     transaction.
**   - `rmu` guards the reader pool; a reader connection is used by the one
**     thread that took it (ledger_reader_take) until it gives it back.
*/
#ifndef CC_LEDGER_INT_H
#define CC_LEDGER_INT_H

#include "ledger.h"
#include "i64map.h"

#include <string.h>

struct cc_commit_job;

struct cc_ledger {
    cc_store *store;
    cc_conn *writer;

    cc_mutex_t mu;        /* guards queue, leader flag, counters, test_spendable */
    cc_cond_t cv;
    struct cc_commit_job *head, *tail;
    int leader;                /* 1 while some thread runs a batch */
    int64_t ops_total, commits_total;
    int test_spendable;        /* see cc_ledger_set_test_spendable */

    /* Writer-side caches (commit.c): used only by the current leader. */
    i64map acct_cache;         /* account id -> cc_acct_slot */
    i64map hold_cache;         /* open hold id -> the rules' hold slot (rules.c) */
    int64_t *dirty;            /* ids of accounts changed in this batch */
    int ndirty;
    cc_prefetch *prefetch;     /* what a batch will look up (commit.c; stores with a prefetch only) */
    int others_wrote;          /* the last commit found another connection's commits (caches dropped) */

    cc_mutex_t rmu;       /* guards the reader pool */
    cc_cond_t rcv;
    cc_conn *readers[CC_READERS_MAX];
    int reader_free[CC_READERS_MAX];
    int nreaders;
};

#define TRY(x) do { cc_rc rc_ = (x); if (rc_ != CC_OK) return rc_; } while (0)

/* A reader connection for one thread; blocks until one is free. */
cc_conn *ledger_reader_take(cc_ledger *l, int *slot);
/* The same without waiting: NULL when every reader is taken. */
cc_conn *ledger_reader_try_take(cc_ledger *l, int *slot);
void ledger_reader_give(cc_ledger *l, int slot);

/* Validation shared by money and auth operations (messages name `field`). */
size_t ledger_slen(const char *s);
cc_rc ledger_check_text(const char *s, size_t max, const char *field, cc_error *err);
cc_rc ledger_check_id(int64_t v, const char *field, cc_error *err);
/* Copies validated text (asserts it fits). */
void ledger_set_text(char *dst, size_t cap, const char *src);

const char *ledger_hold_state_name(int state);

#endif
