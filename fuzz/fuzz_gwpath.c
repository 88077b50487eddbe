/* The gateway path check: whatever it accepts is plain, API-node only, has
** no dot segments, and is its own canonical form. */
#include <stdio.h>
#include "fuzz_util.h"
#include "gwpath.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    char out[CC_GW_PATH_BYTES_MAX + 1], again[CC_GW_PATH_BYTES_MAX + 1];
    cc_error e;
    if (cc_gw_path_canonical((const char *)d, n, out, sizeof out, &e) != CC_OK) return 0;
    FZ_CHECK(strncmp(out, "/proxy/", 7) == 0 || strcmp(out, "/customers/storage") == 0);
    FZ_CHECK(!strstr(out, "/../") && !strstr(out, "/./") && !strstr(out, "//") && !strchr(out, '%'));
    size_t len = strlen(out);
    FZ_CHECK(!(len >= 3 && strcmp(out + len - 3, "/..") == 0));
    for (const char *c = out; *c; c++) FZ_CHECK(*c > 0x20 && *c < 0x7f && *c != '\\' && *c != '?' && *c != '#');
    FZ_CHECK(cc_gw_path_canonical(out, len, again, sizeof again, &e) == CC_OK && strcmp(out, again) == 0);
    return 0;
}
