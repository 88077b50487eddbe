/*
** caps.h — spending caps per account: a daily and a monthly cap set by an
** admin, and lower ones a person may set on their own account.
**
** Contract:
**   - Windows are UTC calendar days and months. A cap is in micro-credits,
**     0..CC_AMOUNT_MAX, or CC_CAP_NONE. The effective cap of a window is the
**     smaller of the admin's and the person's own.
**   - What a window has used = the holds placed in it that are still open +
**     what the holds placed in it were charged. A hold is admitted only when
**     used + its amount <= the effective cap of both windows; this is checked
**     by the ledger's hold rule (rules.c) inside the write transaction that
**     checks the balance, so it is atomic with it across threads and processes
**     (the account row carries the counters; every backend stores them).
**   - When a hold resolves, what it did not charge returns to the window it
**     was placed in, if that window is still the current one.
**   - A refusal is CC_ERR_INSUFFICIENT with field "cap_daily" or "cap_monthly"
**     and a message naming the cap (the operator's or the person's own), its
**     window and when it resets, e.g. "daily spending cap reached: ... resets
**     at 2026-12-02 00:00 UTC".
**   - cc_ledger_set_caps: an admin sets the account's caps; the person sets
**     their own, which may not exceed the admin's (CC_ERR_INVALID naming the
**     field; none = no lower cap of their own, the admin's applies). Nothing changes on any error. Thread-safe (group commit).
*/
#ifndef CC_CAPS_H
#define CC_CAPS_H

#include "store.h"

#define CC_CAP_NONE INT64_C(-1)
#define CC_CAPS_MESSAGE_BYTES_MAX 300

typedef struct cc_ledger cc_ledger;

int64_t cc_caps_day(int64_t ms);             /* UTC days since the epoch */
int64_t cc_caps_month(int64_t ms);           /* year * 12 + month - 1 (UTC) */
int64_t cc_caps_month_start_ms(int64_t month);

/* A new account's caps: none, counters at 0. */
void cc_caps_init(cc_account *a);

/* Whether `amount` more fits in both windows at `now` (no change to a). */
cc_rc cc_caps_check(const cc_account *a, int64_t amount, int64_t now, cc_error *err);
/* check, then count the hold in both windows (moving them to `now`). */
cc_rc cc_caps_admit(cc_account *a, int64_t amount, int64_t now, cc_error *err);
/* A hold placed at placed_ms resolved without charging `released`. */
void cc_caps_release(cc_account *a, int64_t placed_ms, int64_t released, int64_t now);
/* What is left in each window at now (CC_CAP_NONE when uncapped). */
void cc_caps_room(const cc_account *a, int64_t now, int64_t *daily_left, int64_t *monthly_left);

typedef enum cc_caps_who { CC_CAPS_ADMIN = 0, CC_CAPS_OWN = 1 } cc_caps_who;
cc_rc cc_ledger_set_caps(cc_ledger *l, int64_t account_id, cc_caps_who who, int64_t daily, int64_t monthly,
                         cc_account *out, cc_error *err);

#endif
