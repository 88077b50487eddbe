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
        /* Accepted: for some t=<digits> item in the header, the header must carry
        ** the real HMAC of "t.body" (anything else would be a forgery). The
        ** header may hold other, malformed t= items: the verifier uses the
        ** numeric one, as Stripe's libraries do. */
        int found = 0;
        for (const char *t = strstr(hdr, "t="); t && !found; t = strstr(t + 1, "t=")) {
            if (t[2] < '0' || t[2] > '9') continue;
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
            found = strstr(hdr, hex) != NULL;
        }
        FZ_CHECK(found);
    }
    free(hdr);
    free(body);
    return 0;
}
