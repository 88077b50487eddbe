/* Usage JSON from upstream answers: counters are -1 (absent) or >= 0. */
#include <stdio.h>
#include "fuzz_util.h"
#include "gateway.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    cc_usage u;
    cc_usage_init(&u);
    cc_usage_from_json((const char *)d, n, &u);
    FZ_CHECK(u.input_tokens >= -1 && u.output_tokens >= -1 && u.images >= -1 && u.seconds_ms >= -1);
    return 0;
}
