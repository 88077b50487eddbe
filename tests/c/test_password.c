/* test_password.c — scrypt hashes: round trip, wrong password, malformed hashes. */
#include "ctest.h"
#include "password.h"

static void roundtrip(void) {
    char h[CC_PASSWORD_HASH_BYTES_MAX + 1], h2[CC_PASSWORD_HASH_BYTES_MAX + 1];
    cc_error e;
    int ok = -1;
    CHECK(cc_password_hash("correct horse", 12, h, sizeof h, &e) == CC_OK); /* low cost: tests stay fast */
    CHECK(strncmp(h, "scrypt$12$8$1$", 14) == 0);
    CHECK(cc_password_verify("correct horse", h, &ok, &e) == CC_OK && ok == 1);
    CHECK(cc_password_verify("correct hors", h, &ok, &e) == CC_OK && ok == 0);
    CHECK(cc_password_verify("short", h, &ok, &e) == CC_OK && ok == 0);
    CHECK(cc_password_hash("correct horse", 12, h2, sizeof h2, &e) == CC_OK);
    CHECK(strcmp(h, h2) != 0); /* salted */
}

static void bad_input(void) {
    char h[CC_PASSWORD_HASH_BYTES_MAX + 1];
    cc_error e;
    int ok;
    CHECK(cc_password_hash("short", 12, h, sizeof h, &e) == CC_ERR_INVALID);
    CHECK_STR(e.field, "password");
    CHECK(cc_password_hash(NULL, 12, h, sizeof h, &e) == CC_ERR_INVALID);
    CHECK(cc_password_hash("long enough", 30, h, sizeof h, &e) == CC_ERR_INVALID);
    CHECK(cc_password_hash("long enough", 12, h, 20, &e) == CC_ERR_INVALID);
    const char *bad[] = {"", "bcrypt$x", "scrypt$99$8$1$00$00", "scrypt$12$8$1$zz", "scrypt$12$8$1$" , NULL};
    for (int i = 0; bad[i]; i++) CHECK(cc_password_verify("long enough", bad[i], &ok, &e) == CC_ERR_INVALID);
    CHECK(cc_password_verify("long enough", NULL, &ok, &e) == CC_ERR_INVALID);
}

void suite_password(void) {
    RUN(roundtrip);
    RUN(bad_input);
}
