/*
** fulfil.h — credits for a paid Stripe Checkout Session, exactly once.
**
** Contract:
**   - Credits are added only when the session says status=complete and
**     payment_status=paid, whichever path reports it first (the signed
**     webhook or the user's return to ComfyUI): both call this function.
**   - The purchase is keyed by the session id ("stripe:<id>"): duplicates,
**     retries, reordering and concurrent calls credit once; later calls see
**     CC_FULFIL_ALREADY (also when the operator credited it by hand under
**     that key after it needed attention).
**   - A session is priced once, when it is created: its metadata carries the
**     credits, the amount, the currency and the rate. Fulfilment credits
**     exactly metadata.credits_micro when Stripe's amount_total and currency
**     are the ones priced (and the credits are what that amount buys at the
**     recorded rate), whatever the operator's limits or rates are later.
**   - A paid session that cannot be credited (no account, no price in its
**     metadata, an amount that differs from the price, an account that no
**     longer exists, a balance at its cap) is CC_FULFIL_NEEDS_ATTENTION with
**     the reason in *err (field + message): the caller keeps it for the
**     operator; nothing is credited and it is never answered "rejected".
**   - The ledger entry records the method actually used (the charge's
**     payment_method_details.type, else the single method offered, else
**     "stripe") and the methods offered in its note ("offered: ...").
**   - There is no refund path: nothing here ever removes credits.
**   - test = 1 (a sandbox or Stripe test-mode session) records TEST credits
**     (CC_KIND_TEST): never counted as paid, unusable against a real upstream
**     (see cc_ledger_set_test_spendable).
*/
#ifndef CC_FULFIL_H
#define CC_FULFIL_H

#include "ledger.h"
#include "stripe.h"

typedef enum cc_fulfil_state {
    CC_FULFIL_CREDITED = 1,        /* credits added now */
    CC_FULFIL_ALREADY = 2,         /* credited earlier (replay) */
    CC_FULFIL_PENDING = 3,         /* not paid yet (open, or async payment processing) */
    CC_FULFIL_NOT_PAID = 4,        /* expired, or completed without payment */
    CC_FULFIL_NEEDS_ATTENTION = 5, /* paid, but cannot be credited: for the operator (reason in *err) */
} cc_fulfil_state;

/* Returns CC_OK with *state for every outcome above; an error only when the
** ledger could not be written (storage: retry later). */
cc_rc cc_fulfil_checkout(cc_ledger *l, const cc_checkout_session *s, int test, cc_fulfil_state *state,
                         cc_result *res, cc_error *err);

const char *cc_fulfil_state_name(cc_fulfil_state s);

#endif
