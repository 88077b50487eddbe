/*
** verify.h — recompute every ledger invariant from the immutable entries.
**
** Contract:
**   - Reads one consistent snapshot (a read transaction on a reader
**     connection); never writes, never takes the writer, so it may run while
**     operations commit.
**   - Checks, per account: balance and held equal the sums of its entries;
**     balance >= 0 and 0 <= held <= balance after every entry; the running
**     totals (paid, granted, spent, uncollected, TEST) equal their entries';
**     every entry's amounts fit its kind. Per hold: exactly one hold entry,
**     at most one resolution whose kind matches the hold's state, the hold's
**     amount released exactly; open holds sum to the account's held.
**   - Sums are checked for overflow: a corrupted file is reported, it cannot
**     make a total wrap.
**   - Memory grows with the number of accounts and holds (two arrays); at
**     most CC_VERIFY_PROBLEMS_MAX descriptions are returned, all are counted.
*/
#ifndef CC_VERIFY_H
#define CC_VERIFY_H

#include "store.h"

#define CC_VERIFY_PROBLEMS_MAX 100   /* problems reported by one verify */

typedef struct cc_ledger cc_ledger;

typedef struct cc_verify_stats {
    int64_t accounts, entries, holds, open_holds;
    int64_t balance_total, held_total;
    int64_t problems_total;     /* may exceed the problems returned */
} cc_verify_stats;

/* Writes up to `cap` (0..CC_VERIFY_PROBLEMS_MAX) problem descriptions (each a
** malloc'd string the caller frees) and their count. CC_OK means the check
** ran (problems may still be > 0); stats may be NULL. */
cc_rc cc_ledger_verify(cc_ledger *l, char **problems, int cap, int *n_problems,
                       cc_verify_stats *stats, cc_error *err);

#endif
