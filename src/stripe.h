/*
** stripe.h — the Stripe Checkout client (libcurl + cJSON) and webhook check.
**
** Contract:
**   - cc_stripe_checkout_create() creates a Checkout Session in payment mode
**     with one price_data line item in the chosen currency (amount in its
**     minor unit: zero-decimal currencies such as JPY are whole yen),
**     customer_email, client_reference_id, metadata (credits, account, method
**     choice), payment_method_types, and for WeChat Pay
**     payment_method_options[wechat_pay][client]=web. WeChat Pay and Alipay
**     are offered only in USD (Comfy.org's rule, narrower than Stripe's).
**     Every create carries an Idempotency-Key.
**   - Keys are never logged and never appear in error messages.
**   - cc_stripe_webhook_verify() checks `Stripe-Signature: t=..,v1=..[,v1=..]`
**     as Stripe documents: HMAC-SHA256(secret, "<t>.<raw body>") compared in
**     constant time with each v1, timestamp within the tolerance.
**   - Blocking (network); thread-safe (one curl handle per call).
*/
#ifndef CC_STRIPE_H
#define CC_STRIPE_H

#include "cc_common.h"

#define CC_STRIPE_ID_BYTES_MAX 255
#define CC_STRIPE_URL_BYTES_MAX 2048
#define CC_STRIPE_RESPONSE_BYTES_MAX (1024 * 1024)
#define CC_STRIPE_TOLERANCE_S_DEFAULT 300

enum { CC_PAY_CARD = 1, CC_PAY_WECHAT = 2, CC_PAY_ALIPAY = 4 };

typedef struct cc_stripe cc_stripe;

typedef struct cc_checkout_params {
    const char *currency;          /* ISO, any case */
    int64_t amount_minor;          /* what the buyer pays, in minor units */
    int64_t credits_micro;         /* what they get (metadata) */
    int64_t account_id;            /* client_reference_id and metadata */
    const char *customer_email;
    const char *product_name;      /* line item name */
    const char *success_url;       /* should contain {CHECKOUT_SESSION_ID} */
    const char *cancel_url;
    int methods;                   /* CC_PAY_* bits; 0 = card */
    int64_t expires_at_s;          /* 0 = Stripe's default (24 h) */
    const char *idempotency_key;
} cc_checkout_params;

typedef struct cc_checkout_session {
    char id[CC_STRIPE_ID_BYTES_MAX + 1];
    char url[CC_STRIPE_URL_BYTES_MAX + 1];
    char status[16];               /* open | complete | expired */
    char payment_status[24];       /* paid | unpaid | no_payment_required */
    char currency[4];
    int64_t amount_total;          /* minor units */
    int64_t account_id;            /* from client_reference_id, 0 if absent */
    int64_t credits_micro;         /* from metadata, 0 if absent */
    char customer_email[CC_EMAIL_BYTES_MAX + 1];
    char method[32];               /* from metadata.method, "" if absent */
    int64_t created_s;
} cc_checkout_session;

cc_rc cc_stripe_open(const char *api_base, const char *secret_key, int timeout_ms, cc_stripe **out,
                     cc_error *err);
void cc_stripe_close(cc_stripe *s);

cc_rc cc_stripe_checkout_create(cc_stripe *s, const cc_checkout_params *p, cc_checkout_session *out,
                                cc_error *err);
cc_rc cc_stripe_checkout_retrieve(cc_stripe *s, const char *session_id, cc_checkout_session *out, cc_error *err);
cc_rc cc_stripe_checkout_expire(cc_stripe *s, const char *session_id, cc_checkout_session *out, cc_error *err);

/* Parses a Checkout Session object (from a webhook event or the API). */
cc_rc cc_stripe_session_parse(const char *json, size_t len, cc_checkout_session *out, cc_error *err);

/* Verifies a webhook delivery; on success *event_type and the embedded
** session (data.object) are filled when it is a checkout.session event. */
cc_rc cc_stripe_webhook_verify(const char *secret, const char *sig_header, const char *body, size_t len,
                               int64_t now_s, int64_t tolerance_s, cc_error *err);

/* Which methods a currency may offer under our rule (card everywhere,
** WeChat Pay and Alipay only in USD). */
int cc_stripe_methods_allowed(const char *currency);

#endif
