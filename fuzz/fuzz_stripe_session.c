/* Stripe Checkout Session JSON (webhook events and API answers). */
#include <stdio.h>
#include "fuzz_util.h"
#include "stripe.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    cc_checkout_session s;
    cc_error e;
    if (cc_stripe_session_parse((const char *)d, n, &s, &e) == CC_OK) {
        FZ_CHECK(memchr(s.id, 0, sizeof s.id) && memchr(s.currency, 0, sizeof s.currency));
        FZ_CHECK(s.credits_micro >= 0 || s.credits_micro < 0); /* read, under ASan */
    }
    return 0;
}
