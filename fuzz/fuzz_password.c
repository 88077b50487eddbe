/* Password hashes (stored strings) and the password rule. Input: password
** 0xff encoded hash. Hashes naming a cost above 2^10 are not verified (the
** KDF would dominate the run); their parsing up to that point still is. */
#include <stdio.h>
#include "fuzz_util.h"
#include "password.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    char *pw, *enc;
    fz_split(d, n, &pw, &enc);
    cc_error e;
    (void)cc_password_check(pw, &e);
    int log2n = 0, r = 0, p = 0;
    if (sscanf(enc, "scrypt$%d$%d$%d$", &log2n, &r, &p) != 3 || (log2n <= 10 && r <= 2 && p <= 1)) {
        int ok = -1;
        cc_rc rc = cc_password_verify(pw, enc, &ok, &e);
        FZ_CHECK(rc != CC_OK || ok == 0 || ok == 1);
    }
    free(pw);
    free(enc);
    return 0;
}
