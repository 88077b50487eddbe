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
    case CC_FULFIL_NEEDS_ATTENTION: return "needs_attention";
    }
    return "unknown";
}

static cc_rc attention(cc_fulfil_state *state, cc_error *err, const char *field, const char *fmt, const char *sid,
                       long long a, long long b) {
    *state = CC_FULFIL_NEEDS_ATTENTION;
    cc_fail(err, CC_ERR_STATE, field, fmt, sid, a, b);
    return CC_OK;
}

/* The price check: what Stripe charged is what was priced, and the credits
** are what that amount bought at the recorded rate. */
static int priced(const cc_checkout_session *s, const char *cur, cc_fulfil_state *state, cc_error *err) {
    if (s->priced_amount_minor <= 0 || s->rate_micro <= 0 || !s->priced_currency[0]) {
        attention(state, err, "metadata", "session %s carries no price (metadata amount_minor/currency/rate_micro)",
                  s->id, 0, 0);
        return 0;
    }
    if (strcmp(s->priced_currency, cur) != 0 || s->priced_amount_minor != s->amount_total) {
        attention(state, err, "amount_total", "session %s charged %lld minor units, but was priced at %lld", s->id,
                  (long long)s->amount_total, (long long)s->priced_amount_minor);
        return 0;
    }
    cc_rates rates;
    cc_rates_default(&rates);
    int64_t expect = 0;
    cc_error e2;
    if (cc_rates_set(&rates, cur, s->rate_micro, &e2) != CC_OK ||
        cc_rates_convert(&rates, cur, s->amount_total, &expect, &e2) != CC_OK || expect != s->credits_micro) {
        attention(state, err, "metadata.credits_micro",
                  "session %s promises %lld micro-credits, but its amount buys %lld at its recorded rate", s->id,
                  (long long)s->credits_micro, (long long)expect);
        return 0;
    }
    return 1;
}

/* The session was credited before (entry e): report that entry, add nothing. */
static cc_rc already(const cc_entry *e, cc_fulfil_state *state, cc_result *res) {
    memset(res, 0, sizeof *res);
    res->replayed = 1;
    res->entry_id = e->id;
    res->account_id = e->account_id;
    res->amount = e->amount;
    res->balance_after = e->balance_after;
    *state = CC_FULFIL_ALREADY;
    return CC_OK;
}

cc_rc cc_fulfil_checkout(cc_ledger *l, const cc_checkout_session *s, int test, cc_fulfil_state *state,
                         cc_result *res, cc_error *err) {
    memset(res, 0, sizeof *res);
    if (strcmp(s->payment_status, "paid") != 0 || strcmp(s->status, "complete") != 0) {
        *state = (strcmp(s->status, "expired") == 0 ||
                  (strcmp(s->status, "complete") == 0 && strcmp(s->payment_status, "no_payment_required") == 0))
                     ? CC_FULFIL_NOT_PAID : CC_FULFIL_PENDING;
        return CC_OK;
    }
    char key[CC_STRIPE_ID_BYTES_MAX + 8];
    snprintf(key, sizeof key, "stripe:%s", s->id);
    /* Credited already (here, or by the operator resolving it): nothing more. */
    cc_entry done;
    cc_error e_read;
    if (cc_ledger_entry(l, key, &done, &e_read) == CC_OK) return already(&done, state, res);
    /* Paid: from here on every refusal is kept for the operator. */
    if (s->account_id <= 0)
        return attention(state, err, "client_reference_id", "session %s names no account", s->id, 0, 0);
    if (s->credits_micro <= 0 || s->credits_micro > CC_AMOUNT_MAX)
        return attention(state, err, "metadata.credits_micro", "session %s carries no usable credit amount", s->id,
                         0, 0);
    if (cc_currency_exponent(s->currency) < 0 || strlen(s->currency) != 3 || s->amount_total <= 0)
        return attention(state, err, "currency", "session %s has no valid amount and currency", s->id, 0, 0);
    char cur[4];
    for (int i = 0; i < 3; i++) cur[i] = (char)(s->currency[i] | 0x20);
    cur[3] = 0;
    if (!priced(s, cur, state, err)) return CC_OK;
    char note[CC_STRIPE_METHODS_BYTES_MAX + 16] = "";
    if (s->methods_offered[0]) snprintf(note, sizeof note, "offered: %s", s->methods_offered);
    /* The method used; a single method offered can only be the one used. */
    const char *method = s->method_used[0] ? s->method_used
                         : (s->methods_offered[0] && !strchr(s->methods_offered, ',')) ? s->methods_offered
                                                                                        : "stripe";
    cc_op op;
    cc_op_init(&op, test ? CC_OP_TEST_PURCHASE : CC_OP_PURCHASE);
    op.key = key;
    op.account_id = s->account_id;
    op.amount = s->credits_micro;
    op.currency = cur;
    op.amount_minor = s->amount_total;
    op.method = method;
    op.external_ref = s->id;
    op.note = note;
    cc_rc rc = cc_ledger_execute1(l, &op, res);
    if (rc == CC_OK) {
        *state = res->replayed ? CC_FULFIL_ALREADY : CC_FULFIL_CREDITED;
        return CC_OK;
    }
    if (rc == CC_ERR_CONFLICT) {
        /* Credited before under this session (e.g. before the method was known):
        ** credits are never added twice, whatever differs in the record. */
        cc_entry e;
        cc_error e2;
        if (cc_ledger_entry(l, key, &e, &e2) == CC_OK && e.amount == s->credits_micro &&
            e.account_id == s->account_id) {
            return already(&e, state, res);
        }
    }
    if (rc == CC_ERR_STORAGE || rc == CC_ERR_NOMEM) {
        if (err) *err = res->err;
        return rc;
    }
    *state = CC_FULFIL_NEEDS_ATTENTION; /* unknown account, balance cap, conflict: for the operator */
    if (err) *err = res->err;
    return CC_OK;
}
