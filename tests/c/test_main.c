/* test_main.c — runs every C suite; the last line is read by CI. */
#include "ctest.h"

#include <stdlib.h>
#include <unistd.h>

int ct_passed, ct_failed, ct_cur_failed;
const char *ct_cur_name = "";
const char *ct_only;

static char ct_dir[64];
static int ct_seq;

void ct_db_path(char *out, size_t cap) {
    if (!ct_dir[0]) {
        snprintf(ct_dir, sizeof ct_dir, "/tmp/cc-ctest-XXXXXX");
        CHECK(mkdtemp(ct_dir) != NULL);
    }
    snprintf(out, cap, "%s/l%d.db", ct_dir, ct_seq++);
}

cc_ledger *ct_ledger(int readers, char *path_out, size_t path_cap) {
    char path[CT_PATH_BYTES_MAX];
    ct_db_path(path, sizeof path);
    if (path_out) snprintf(path_out, path_cap, "%s", path);
    cc_store *s;
    cc_ledger *l = NULL;
    cc_error e;
    CHECK(cc_store_sqlite_open(path, 5000, &s, &e) == CC_OK);
    CHECK(cc_ledger_open(s, readers, &l, &e) == CC_OK);
    return l;
}

int64_t ct_account(cc_ledger *l, const char *email) {
    cc_account_new a = {.email = email, .display_name = "Test", .role = -1};
    int64_t id = 0;
    cc_error e;
    CHECK(cc_ledger_account_create(l, &a, &id, &e) == CC_OK);
    return id;
}

int main(void) {
    ct_only = getenv("CT_ONLY");
    if (ct_only && !*ct_only) ct_only = NULL;
    suite_platform();
    suite_money();
    suite_pricing();
    suite_ledger();
    suite_store_pg();
    suite_token();
    suite_stripe();
    suite_fulfil();
    suite_password();
    suite_gwpath();
    suite_http1();
    suite_usage_json();
    suite_gwsock();
    suite_curl_mem();
    suite_gateway();
    suite_listener();
    suite_run();
    suite_auth();
    suite_history();
    suite_invite();
    suite_report();
    suite_caps();
    suite_threads();
    if (ct_dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", ct_dir);
        CHECK(system(cmd) == 0);
    }
    printf("%d passed, %d failed\n", ct_passed, ct_failed);
    return ct_failed ? 1 : 0;
}
