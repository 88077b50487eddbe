/*
** report.h — reconciliation: what the upstream billed the operator next to
** what people were charged, per UTC day, from the ledger's own entries.
**
** Contract:
**   - Read only, built from the ledger's public read calls (accounts,
**     history), so it works on every backend the ledger has.
**   - Each API-node run ends in one ledger entry (src/run.c): a settle whose
**     `amount` is what the upstream billed (its X-Comfy-Credits-Used, else
**     the price rule), whose -delta is what the person was charged (at most
**     the hold) and whose `uncollected` is the shortfall; or a void when the
**     upstream billed nothing (a free run). An expired hold is a run whose
**     result never reached the ledger (counted as `expired`).
**   - margin = charged - billed (never positive: the operator resells at the
**     upstream's own price; a negative margin is what was not collected).
**   - Range: since_ms < until_ms, both >= 0, at most CC_REPORT_RANGE_MS_MAX;
**     otherwise CC_ERR_INVALID naming "from" or "to". Rows are bounded
**     (CC_REPORT_SPEND_ROWS_MAX, CC_REPORT_ACCOUNTS_MAX): beyond, CC_ERR_LIMIT.
**   - cc_report_check recomputes the all-time totals from the entries and
**     compares them with the accounts' running totals (spent, uncollected,
**     paid, granted): Σ of the report equals the ledger. Used by verify.
**   - Thread-safe (no shared state); blocks on ledger reads.
*/
#ifndef CC_REPORT_H
#define CC_REPORT_H

#include "ledger.h"

#define CC_DAY_MS INT64_C(86400000)
#define CC_REPORT_RANGE_MS_MAX (366 * CC_DAY_MS)
#define CC_REPORT_SPEND_ROWS_MAX 50000   /* (day, node class, model) rows */
#define CC_REPORT_ACCOUNTS_MAX 100000    /* accounts with activity in one report */

typedef struct cc_report_totals {
    int64_t runs, runs_charged, runs_free, expired;
    int64_t billed, charged, uncollected;
    int64_t purchases, purchased;           /* paid purchases: count, credits */
    int64_t test_purchases, test_purchased; /* TEST credits (sandbox) */
    int64_t grants, granted;
} cc_report_totals;

typedef struct cc_report_day {
    int64_t day;                /* UTC days since the epoch */
    cc_report_totals t;
} cc_report_day;

typedef struct cc_report_spend {
    int64_t day;
    char node_class[CC_CLASS_BYTES_MAX + 1];
    char model[CC_CLASS_BYTES_MAX + 1];
    int64_t runs, billed, charged, uncollected;
} cc_report_spend;

typedef struct cc_report_account {
    int64_t account_id;
    char email[CC_EMAIL_BYTES_MAX + 1];
    int64_t runs, billed, charged, uncollected, purchased, granted;
} cc_report_account;

typedef struct cc_report {
    int64_t since_ms, until_ms;
    cc_report_totals total;
    cc_report_day *days;        /* every day of the range, in order */
    int n_days;
    cc_report_spend *spend;     /* by day, then charged descending */
    int n_spend;
    cc_report_account *accounts; /* charged descending, then purchased */
    int n_accounts;
} cc_report;

cc_rc cc_report_build(cc_ledger *l, int64_t since_ms, int64_t until_ms, cc_report **out, cc_error *err);
void cc_report_free(cc_report *r);

/* Problems (malloc'd strings, caller frees) when the entries' all-time sums
** differ from the accounts' totals. */
cc_rc cc_report_check(cc_ledger *l, char **problems, int cap, int *n_problems, cc_report_totals *total,
                      cc_error *err);

#endif
