/* test_gwpath.c — the gateway's path check: decoded once, plain segments, API-node paths only. */
#include "ctest.h"
#include "gwpath.h"

static const char *canon(const char *raw, char *out, size_t cap) {
    cc_error e;
    return cc_gw_path_canonical(raw, strlen(raw), out, cap, &e) == CC_OK ? out : NULL;
}

static void accepted(void) {
    char o[CC_GW_PATH_BYTES_MAX + 1];
    CHECK_STR(canon("/proxy/openai/images/generations", o, sizeof o), "/proxy/openai/images/generations");
    CHECK_STR(canon("/proxy/kling/v1/videos/text2video/t-1%3A2", o, sizeof o), "/proxy/kling/v1/videos/text2video/t-1:2");
    CHECK_STR(canon("/proxy/x/", o, sizeof o), "/proxy/x/");
    CHECK_STR(canon("/customers/storage", o, sizeof o), "/customers/storage");
    CHECK_STR(canon("/%70roxy/x", o, sizeof o), "/proxy/x"); /* one decoding, then the allow-list */
}

static void refused(void) {
    char o[CC_GW_PATH_BYTES_MAX + 1];
    const char *bad[] = {
        "", "proxy/x", "/", "/proxy", "/proxy/", "/proxy//x", "//evil/x", "/customers/balance",
        "/customers/storage/../balance", "/proxy/../customers/balance", "/proxy/./x", "/proxy/x/..",
        "/proxy/%2e%2e/customers/balance", "/proxy/%252e%252e/customers/balance", "/proxy/.%2E/x",
        "/proxy/x%2f..%2fcustomers", "/proxy/x%5cy", "/proxy/x%00y", "/proxy/x%3fy", "/proxy/x%23y",
        "/proxy/x%2", "/proxy/x%zz", "/proxy/x y", "/proxy/x\r\nHost: evil", "/proxy/x?y", "/proxy/x#y",
        "/proxy/\xc3\xa9", "/proxy/%c3%a9", "/proxy/x\\y", "/proxy/%25", NULL};
    for (int i = 0; bad[i]; i++) {
        const char *r = canon(bad[i], o, sizeof o);
        if (r) fprintf(stderr, "accepted: %s -> %s\n", bad[i], r);
        CHECK(r == NULL);
    }
    char big[CC_GW_PATH_BYTES_MAX + 10];
    memset(big, 'a', sizeof big - 1);
    memcpy(big, "/proxy/", 7);
    big[sizeof big - 1] = 0;
    CHECK(canon(big, o, sizeof o) == NULL);
    CHECK(canon("/proxy/x", o, 4) == NULL); /* output too small: refused, not truncated */
}

void suite_gwpath(void) {
    RUN(accepted);
    RUN(refused);
}
