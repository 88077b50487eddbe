/*
** fulfil.c — Stripe Checkout fulfilment. See fulfil.h.
*/
#include "fulfil.h"
#include "money.h"

#include <string.h>

const char *cc_fulfil_state_name(cc_fulfil_state s) {
    switch (s) {
    case CC_FULFIL_CREDITED: return "credited";
    case CC_FULFIL_ALREADY: return "already_credited";
    case CC_FULFIL_PENDING: return "pending";
    case CC_FULFIL_NOT_PAID: return "not_paid";
    }
    return "unknown";
}

cc_rc cc_fulfil_checkout(cc_ledger *l, const cc_checkout_session *s, int64_t min_micro, int64_t max_micro,
                         cc_fulfil_state *state, cc_result *res, cc_error *err) {
    memset(res, 0, sizeof *res);
    if (strcmp(s->payment_status, "paid") != 0 || strcmp(s->status, "complete") != 0) {
        *state = (strcmp(s->status, "expired") == 0 ||
                  (strcmp(s->status, "complete") == 0 && strcmp(s->payment_status, "no_payment_required") == 0))
                     ? CC_FULFIL_NOT_PAID : CC_FULFIL_PENDING;
        return CC_OK;
    }
    if (s->account_id <= 0)
        return cc_fail(err, CC_ERR_INVALID, "client_reference_id", "session %s names no account", s->id);
    if (s->credits_micro <= 0)
        return cc_fail(err, CC_ERR_INVALID, "metadata.credits_micro", "session %s carries no credit amount", s->id);
    if (s->credits_micro < min_micro || s->credits_micro > max_micro)
        return cc_fail(err, CC_ERR_LIMIT, "metadata.credits_micro",
                       "session %s is for %lld micro-credits, outside the purchase limits", s->id,
                       (long long)s->credits_micro);
    if (cc_currency_exponent(s->currency) < 0 || s->amount_total <= 0)
        return cc_fail(err, CC_ERR_INVALID, "currency", "session %s has no valid amount and currency", s->id);
    char key[CC_STRIPE_ID_BYTES_MAX + 8];
    snprintf(key, sizeof key, "stripe:%s", s->id);
    cc_op op;
    cc_op_init(&op, CC_OP_PURCHASE);
    op.key = key;
    op.account_id = s->account_id;
    op.amount = s->credits_micro;
    char cur[4];
    for (int i = 0; i < 3; i++) cur[i] = (char)(s->currency[i] | 0x20);
    cur[3] = 0;
    op.currency = cur;
    op.amount_minor = s->amount_total;
    op.method = s->method[0] ? s->method : "stripe";
    op.external_ref = s->id;
    if (cc_ledger_execute1(l, &op, res) != CC_OK) {
        if (err) *err = res->err;
        return res->rc;
    }
    *state = res->replayed ? CC_FULFIL_ALREADY : CC_FULFIL_CREDITED;
    return CC_OK;
}
