/* portable/main.c — the C suites whose code needs no libcurl, SQLite, OpenSSL
** or cJSON: built as a Windows .exe with mingw-w64 (MSVC-like fallbacks
** forced) and run under wine by scripts/check-portable; also buildable on
** Linux. Kept out of the tests/c/ glob so that `make ctest` has one main(). */
#include "../ctest.h"

int ct_passed, ct_failed, ct_cur_failed;
const char *ct_cur_name = "";
const char *ct_only; /* CT_ONLY (test_main.c): not read here, every test runs */

int main(void) {
    suite_platform();
    suite_money();
    suite_gwpath();
    suite_http1();
    printf("%d passed, %d failed\n", ct_passed, ct_failed);
    return ct_failed ? 1 : 0;
}
