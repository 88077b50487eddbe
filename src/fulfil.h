/*
** fulfil.h — credits for a paid Stripe Checkout Session, exactly once.
**
** Contract:
**   - Credits are added only when the session says status=complete and
**     payment_status=paid, whichever path reports it first (the signed
**     webhook or the user's return to ComfyUI): both call this function.
**   - The purchase is keyed by the session id ("stripe:<id>"): duplicates,
**     retries, reordering and concurrent calls credit once; later calls see
**     CC_FULFIL_ALREADY. A repeat carrying different amounts is a conflict.
**   - The session must name an existing account (client_reference_id), a
**     positive credit amount (metadata.credits_micro) and a known currency,
**     and its credits must lie within [min_micro, max_micro] (the operator's
**     per-purchase limits, checked again here on the server).
**   - There is no refund path: nothing here ever removes credits.
*/
#ifndef CC_FULFIL_H
#define CC_FULFIL_H

#include "ledger.h"
#include "stripe.h"

typedef enum cc_fulfil_state {
    CC_FULFIL_CREDITED = 1,   /* credits added now */
    CC_FULFIL_ALREADY = 2,    /* credited earlier (replay) */
    CC_FULFIL_PENDING = 3,    /* not paid yet (open, or async payment processing) */
    CC_FULFIL_NOT_PAID = 4,   /* expired, or completed without payment */
} cc_fulfil_state;

cc_rc cc_fulfil_checkout(cc_ledger *l, const cc_checkout_session *s, int64_t min_micro, int64_t max_micro,
                         cc_fulfil_state *state, cc_result *res, cc_error *err);

const char *cc_fulfil_state_name(cc_fulfil_state s);

#endif
