/*
** history.h — an account's history as a person reads it: one row per run.
**
** Contract:
**   - cc_history_rows reads one account's ledger entries, newest first, and
**     folds each API-node run (its hold and the one entry that resolved it:
**     settle, void or expire) into ONE row. Purchases, TEST purchases and
**     grants are one row each.
**   - A run's row sits at its latest entry: the resolution once resolved, the
**     hold while it is open. The hold entry of a resolved run adds no row. A
**     hold resolved after this page was read is left out of it (it shows on a
**     fresh first page, where its resolution is).
**   - A run's state: RUNNING (the hold is open), CHARGED (settled, everything
**     the upstream billed was collected), UNCOLLECTED (settled, part or all of
**     what the upstream billed was not charged: above the hold, or waived for
**     an interrupted run), RELEASED (voided or expired: nothing charged).
**     `reason` is the ledger's note on the resolution (why a failed or
**     interrupted run was charged, or why it was free); "" when none.
**   - filter: a mask of CC_HROWS_RUNS | CC_HROWS_PURCHASES | CC_HROWS_GRANTS
**     (0 = everything). Purchases include TEST purchases.
**   - Paging: a page holds 1..limit rows (limit 1..CC_HISTORY_ROWS_MAX);
**     *next_before is the cursor (an entry id, passed back as before_id) for
**     the next page, 0 at the end. One call reads at most
**     CC_HISTORY_ROWS_SCAN_MAX entries, so a page may hold fewer than limit
**     rows while *next_before is not 0.
**   - Only reads through ledger.h; thread-safe; blocks on I/O (Python callers
**     release the GIL).
*/
#ifndef CC_HISTORY_H
#define CC_HISTORY_H

#include "ledger.h"

#define CC_HISTORY_ROWS_MAX 200          /* rows in one page */
#define CC_HISTORY_ROWS_SCAN_MAX 2000    /* entries read by one call */

enum { CC_HROWS_RUNS = 1, CC_HROWS_PURCHASES = 2, CC_HROWS_GRANTS = 4 };

typedef enum cc_hrow_kind { CC_HROW_RUN = 1, CC_HROW_PURCHASE, CC_HROW_TEST, CC_HROW_GRANT } cc_hrow_kind;
typedef enum cc_hrun_state {
    CC_HRUN_RUNNING = 1, CC_HRUN_CHARGED, CC_HRUN_UNCOLLECTED, CC_HRUN_RELEASED
} cc_hrun_state;

typedef struct cc_history_rows_query {
    int64_t account_id;
    int64_t before_id;          /* cursor: rows from entries with id < before_id; 0 = newest */
    unsigned filter;            /* CC_HROWS_*; 0 = all */
    int limit;                  /* 1..CC_HISTORY_ROWS_MAX */
} cc_history_rows_query;

typedef struct cc_history_row {
    int kind;                   /* cc_hrow_kind */
    int state;                  /* runs: cc_hrun_state; else 0 */
    int64_t run_id;             /* runs: the hold id */
    int64_t started_ms;         /* runs: when the hold was placed; else the entry's time */
    int64_t ended_ms;           /* runs: when it was resolved (0 while running); else the entry's time */
    int64_t held;               /* runs: the hold (worst case) */
    int64_t billed;             /* runs: what the upstream billed (0 when released) */
    int64_t charged;            /* runs: what the person paid (<= held) */
    int64_t uncollected;        /* runs: billed - charged */
    int64_t credits;            /* purchases, grants: credits added */
    int64_t balance_after;      /* after the row's latest entry */
    const char *reason;         /* runs: points into entry.note */
    cc_entry entry;             /* the row's latest entry (resolution, hold, purchase or grant) */
} cc_history_row;

cc_rc cc_history_rows(cc_ledger *l, const cc_history_rows_query *q, cc_history_row *out, int *n_out,
                      int64_t *next_before, cc_error *err);

const char *cc_hrow_kind_name(int kind);
const char *cc_hrun_state_name(int state);

#endif
