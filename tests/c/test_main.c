/* test_main.c — runs every C suite; the last line is read by CI. */
#include "ctest.h"

int ct_passed, ct_failed, ct_cur_failed;
const char *ct_cur_name = "";

int main(void) {
    suite_money();
    suite_pricing();
    suite_ledger();
    suite_token();
    suite_stripe();
    suite_fulfil();
    suite_password();
    suite_gwpath();
    suite_run();
    printf("%d passed, %d failed\n", ct_passed, ct_failed);
    return ct_failed ? 1 : 0;
}
