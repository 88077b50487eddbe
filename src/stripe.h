/*
** stripe.h — the Stripe Checkout client (libcurl + cJSON) and webhook check.
**
** Contract:
**   - cc_stripe_checkout_create() creates a Checkout Session in payment mode
**     with one price_data line item in the chosen currency (amount in its
**     minor unit: zero-decimal currencies such as JPY are whole yen),
**     customer_email, client_reference_id, metadata (the price fixed at
**     creation: credits_micro, amount_minor, currency, rate_micro; account;
**     the methods offered), the methods (`payment_method_types` before API
**     version 2026-09-30.endive, `allowed_payment_method_types` from then on:
**     endive removed the former), and for WeChat Pay
**     payment_method_options[wechat_pay][client]=web. WeChat Pay and Alipay
**     are offered only in USD (Comfy.org's rule, narrower than Stripe's).
**     Amounts below Stripe's per-currency minimum charge are refused before
**     any request. Every create carries the caller's Idempotency-Key.
**   - Every request carries `Stripe-Version: <api_version>` (one pinned
**     version, CC_STRIPE_API_VERSION_DEFAULT unless the operator sets one),
**     so the account's default version never changes what is sent or read.
**   - retrieve expands payment_intent.latest_charge and reads the method the
**     buyer actually paid with (payment_method_details.type) into
**     method_used; payment_intent may be null, an id or an object.
**   - A string from Stripe that does not fit its field is an error
**     (CC_ERR_LIMIT naming the field), never silently truncated.
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
#define CC_STRIPE_URL_BYTES_MAX 4096
#define CC_STRIPE_VERSION_BYTES_MAX 40
#define CC_STRIPE_METHODS_BYTES_MAX 64
#define CC_STRIPE_METHOD_BYTES_MAX 32 /* = the ledger's CC_METHOD_BYTES_MAX */
/* The pinned API version: the newest that the official SDK (PyPI stripe
** 16.1.0) is generated for; tests run against it and 2024-06-20. */
#define CC_STRIPE_API_VERSION_DEFAULT "2026-10-28.endive"
/* The first version without payment_method_types on Checkout create. */
#define CC_STRIPE_VERSION_ALLOWED_TYPES "2026-09-30"
#define CC_STRIPE_RESPONSE_BYTES_MAX (1024 * 1024)
#define CC_STRIPE_TOLERANCE_S_DEFAULT 300

enum { CC_PAY_CARD = 1, CC_PAY_WECHAT = 2, CC_PAY_ALIPAY = 4 };

typedef struct cc_stripe cc_stripe;

typedef struct cc_checkout_params {
    const char *currency;          /* ISO, any case */
    int64_t amount_minor;          /* what the buyer pays, in minor units */
    int64_t credits_micro;         /* what they get (metadata) */
    int64_t rate_micro;            /* credits (micro) per major unit used to price it (metadata) */
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
    int64_t priced_amount_minor;   /* metadata.amount_minor: the price fixed at creation, 0 if absent */
    char priced_currency[4];       /* metadata.currency, "" if absent */
    int64_t rate_micro;            /* metadata.rate_micro, 0 if absent */
    char customer_email[CC_EMAIL_BYTES_MAX + 1];
    char methods_offered[CC_STRIPE_METHODS_BYTES_MAX + 1]; /* metadata.method, "" if absent */
    char method_used[CC_STRIPE_METHOD_BYTES_MAX + 1]; /* the charge's payment_method_details.type, "" if unknown */
    char payment_intent[CC_STRIPE_ID_BYTES_MAX + 1];  /* its id, "" while none */
    int64_t created_s;
} cc_checkout_session;

/* api_version NULL or "" = CC_STRIPE_API_VERSION_DEFAULT; else YYYY-MM-DD
** or YYYY-MM-DD.<name>. */
cc_rc cc_stripe_open(const char *api_base, const char *secret_key, const char *api_version, int timeout_ms,
                     cc_stripe **out, cc_error *err);
const char *cc_stripe_api_version(const cc_stripe *s);
int cc_stripe_api_version_valid(const char *v);
void cc_stripe_close(cc_stripe *s);

/* The form body of a create for that API version (validated as
** cc_stripe_checkout_create does); *body_out is malloc'd. */
cc_rc cc_stripe_checkout_body(const char *api_version, const cc_checkout_params *p, char **body_out, cc_error *err);
cc_rc cc_stripe_checkout_create(cc_stripe *s, const cc_checkout_params *p, cc_checkout_session *out,
                                cc_error *err);
cc_rc cc_stripe_checkout_retrieve(cc_stripe *s, const char *session_id, cc_checkout_session *out, cc_error *err);
cc_rc cc_stripe_checkout_expire(cc_stripe *s, const char *session_id, cc_checkout_session *out, cc_error *err);

/* A payment's receipt: GET /v1/payment_intents/{id}?expand[]=latest_charge
** (docs.stripe.com/api/payment_intents/retrieve, /api/expanding_objects).
** receipt_url and the method actually used (payment_method_details.type)
** come from the expanded Charge; "" while the intent has no charge. The id
** must be a PaymentIntent id ("pi_" + [A-Za-z0-9_]). */
typedef struct cc_payment_receipt {
    char payment_intent[CC_STRIPE_ID_BYTES_MAX + 1];
    char status[32];               /* the intent's status, e.g. succeeded */
    char charge[CC_STRIPE_ID_BYTES_MAX + 1];
    char receipt_url[CC_STRIPE_URL_BYTES_MAX + 1];
    char method_used[CC_STRIPE_METHOD_BYTES_MAX + 1];
    int livemode;
} cc_payment_receipt;
cc_rc cc_stripe_payment_receipt(cc_stripe *s, const char *payment_intent_id, cc_payment_receipt *out, cc_error *err);
/* Parses a PaymentIntent object as cc_stripe_payment_receipt does. */
cc_rc cc_stripe_payment_intent_parse(const char *json, size_t len, cc_payment_receipt *out, cc_error *err);

/* Parses a Checkout Session object (from a webhook event or the API). */
cc_rc cc_stripe_session_parse(const char *json, size_t len, cc_checkout_session *out, cc_error *err);

/* Verifies a webhook delivery; on success *event_type and the embedded
** session (data.object) are filled when it is a checkout.session event. */
cc_rc cc_stripe_webhook_verify(const char *secret, const char *sig_header, const char *body, size_t len,
                               int64_t now_s, int64_t tolerance_s, cc_error *err);

/* Which methods a currency may offer under our rule (card everywhere,
** WeChat Pay and Alipay only in USD). */
int cc_stripe_methods_allowed(const char *currency);

/* Stripe's minimum charge in the currency's minor unit (docs.stripe.com/
** currencies#minimum-and-maximum-charge-amounts), 0 where Stripe publishes
** none (it then applies the settlement currency's minimum itself). */
int64_t cc_stripe_min_charge_minor(const char *currency);

#endif
