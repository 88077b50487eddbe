/* Stripe-Signature headers: only a header with a v1 HMAC of "t.body" under
** the secret, within the tolerance, is accepted. Input: header 0xff body. */
#include <stdio.h>
#include <openssl/hmac.h>
#include "fuzz_util.h"
#include "stripe.h"

#define SECRET "whsec_fuzz_secret"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    char *hdr, *body;
    fz_split(d, n, &hdr, &body);
    cc_error e;
    int64_t now = 1700000000;
    if (cc_stripe_webhook_verify(SECRET, hdr, body, strlen(body), now, 300, &e) == CC_OK) {
        /* Accepted: the header must really carry the right MAC (a forgery would be a finding). */
        const char *t = strstr(hdr, "t=");
        FZ_CHECK(t != NULL);
        long long ts = atoll(t + 2);
        char msg[64];
        snprintf(msg, sizeof msg, "%lld.", ts);
        size_t ml0 = strlen(msg), bl = strlen(body);
        unsigned char *buf = malloc(ml0 + bl + 1);
        memcpy(buf, msg, ml0);
        memcpy(buf + ml0, body, bl);
        unsigned char mac[32];
        unsigned int ml = 0;
        FZ_CHECK(HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), buf, ml0 + bl, mac, &ml) != NULL);
        free(buf);
        char hex[65];
        cc_hex_encode(mac, 32, hex);
        FZ_CHECK(strstr(hdr, hex) != NULL);
    }
    free(hdr);
    free(body);
    return 0;
}
