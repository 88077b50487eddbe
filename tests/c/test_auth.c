/* test_auth.c — accounts, passwords, sessions and API keys (auth.h) through
** the ledger's group commit, with their own types. */
#include "ctest.h"

static void passwords(void) {
    cc_ledger *l = ct_ledger(2, NULL, 0);
    int64_t a = ct_account(l, "pw@example.com");
    cc_account acc;
    cc_error e;
    CHECK(cc_ledger_sign_in(l, "pw@example.com", "correct horse", &acc, &e) == CC_ERR_NOT_FOUND); /* none set */
    CHECK(cc_ledger_set_password(l, a, "correct horse", &e) == CC_OK);
    CHECK(cc_ledger_sign_in(l, "PW@example.com", "correct horse", &acc, &e) == CC_OK);
    CHECK_EQ_I64(acc.id, a);
    CHECK(cc_ledger_sign_in(l, "pw@example.com", "correct hors", &acc, &e) == CC_ERR_NOT_FOUND);
    CHECK_STR(e.message, "wrong email or password");
    CHECK(cc_ledger_sign_in(l, "nobody@example.com", "correct horse", &acc, &e) == CC_ERR_NOT_FOUND);
    CHECK_STR(e.message, "wrong email or password");
    CHECK(cc_ledger_set_password(l, a, "short", &e) == CC_ERR_INVALID);
    CHECK(cc_ledger_set_password(l, 999, "long enough pw", &e) == CC_ERR_NOT_FOUND);
    cc_account_change ch;
    cc_account_change_init(&ch, a);
    ch.active = 0;
    CHECK(cc_ledger_account_update(l, &ch, &e) == CC_OK);
    CHECK(cc_ledger_sign_in(l, "pw@example.com", "correct horse", &acc, &e) == CC_ERR_STATE);
    ch.active = 2;
    CHECK(cc_ledger_account_update(l, &ch, &e) == CC_ERR_INVALID);
    cc_account_change_init(&ch, 999);
    CHECK(cc_ledger_account_update(l, &ch, &e) == CC_ERR_NOT_FOUND);
    cc_ledger_close(l);
}

static void credentials(void) {
    cc_ledger *l = ct_ledger(2, NULL, 0);
    int64_t a = ct_account(l, "keys@example.com");
    char tok[CC_CRED_TOKEN_BYTES + 1], sess[CC_CRED_TOKEN_BYTES + 1];
    cc_credential cr, seen;
    cc_account acc;
    cc_error e;
    CHECK(cc_ledger_credential_create(l, a, CC_CRED_API_KEY, "laptop", 0, tok, sizeof tok, &cr, &e) == CC_OK);
    CHECK(strncmp(tok, "cck_", 4) == 0 && strlen(tok) == CC_CRED_TOKEN_BYTES);
    CHECK(cr.id > 0 && cr.account_id == a && cr.expires_ms == 0 && cr.created_ms > 0);
    CHECK_STR(cr.label, "laptop");
    CHECK(strncmp(cr.hint, tok, 12) == 0);
    CHECK(cc_ledger_credential_check(l, tok, &seen, &acc, &e) == CC_OK);
    CHECK_EQ_I64(seen.id, cr.id);
    CHECK_EQ_I64(acc.id, a);
    CHECK(cc_ledger_credential_create(l, a, CC_CRED_SESSION, NULL, 60000, sess, sizeof sess, &cr, &e) == CC_OK);
    CHECK(strncmp(sess, "ccs_", 4) == 0 && cr.expires_ms == cr.created_ms + 60000);
    /* Bad input: nothing is stored. */
    CHECK(cc_ledger_credential_create(l, a, CC_CRED_SESSION, NULL, 0, sess, sizeof sess, &cr, &e) == CC_ERR_INVALID);
    CHECK(cc_ledger_credential_create(l, a, 9, NULL, 0, sess, sizeof sess, &cr, &e) == CC_ERR_INVALID);
    CHECK(cc_ledger_credential_create(l, a, CC_CRED_API_KEY, "a\nb", 0, sess, sizeof sess, &cr, &e) == CC_ERR_INVALID);
    CHECK_STR(e.field, "label");
    CHECK(cc_ledger_credential_create(l, 999, CC_CRED_API_KEY, NULL, 0, sess, sizeof sess, &cr, &e) ==
          CC_ERR_NOT_FOUND);
    cc_credential list[CC_CRED_LIST_MAX];
    int n = 0;
    CHECK(cc_ledger_credential_list(l, a, CC_CRED_API_KEY, 0, list, CC_CRED_LIST_MAX, &n, &e) == CC_OK);
    CHECK_EQ_I64(n, 1);
    /* Unknown and forged secrets get one answer. */
    char forged[CC_CRED_TOKEN_BYTES + 1];
    memcpy(forged, tok, sizeof forged);
    forged[10] = forged[10] == 'a' ? 'b' : 'a';
    CHECK(cc_ledger_credential_check(l, forged, &seen, &acc, &e) == CC_ERR_NOT_FOUND);
    CHECK(cc_ledger_credential_check(l, "cck_short", &seen, &acc, &e) == CC_ERR_NOT_FOUND);
    int count = 0;
    CHECK(cc_ledger_credential_revoke(l, a, CC_CRED_API_KEY, list[0].id, &count, &e) == CC_OK && count == 1);
    CHECK(cc_ledger_credential_check(l, tok, &seen, &acc, &e) == CC_ERR_NOT_FOUND);
    CHECK(cc_ledger_credential_revoke(l, a, CC_CRED_API_KEY, list[0].id, &count, &e) == CC_ERR_NOT_FOUND);
    CHECK(cc_ledger_credential_revoke(l, a, CC_CRED_API_KEY, -1, &count, &e) == CC_ERR_INVALID);
    /* A disabled account's session stops working and it cannot mint more. */
    cc_account_change ch;
    cc_account_change_init(&ch, a);
    ch.active = 0;
    CHECK(cc_ledger_account_update(l, &ch, &e) == CC_OK);
    CHECK(cc_ledger_credential_check(l, sess, &seen, &acc, &e) == CC_ERR_STATE);
    CHECK(cc_ledger_credential_create(l, a, CC_CRED_API_KEY, NULL, 0, tok, sizeof tok, &cr, &e) == CC_ERR_STATE);
    CHECK(cc_ledger_credential_revoke(l, a, CC_CRED_SESSION, 0, &count, &e) == CC_OK && count == 1);
    cc_ledger_close(l);
}

/* At most CC_API_KEYS_PER_ACCOUNT_MAX live API keys per account. */
static void api_key_limit(void) {
    cc_ledger *l = ct_ledger(2, NULL, 0);
    int64_t a = ct_account(l, "many@example.com");
    char tok[CC_CRED_TOKEN_BYTES + 1];
    cc_error e;
    for (int i = 0; i < CC_API_KEYS_PER_ACCOUNT_MAX; i++)
        CHECK(cc_ledger_credential_create(l, a, CC_CRED_API_KEY, NULL, 0, tok, sizeof tok, NULL, &e) == CC_OK);
    CHECK(cc_ledger_credential_create(l, a, CC_CRED_API_KEY, NULL, 0, tok, sizeof tok, NULL, &e) == CC_ERR_LIMIT);
    int count = 0;
    CHECK(cc_ledger_credential_revoke(l, a, CC_CRED_API_KEY, 0, &count, &e) == CC_OK);
    CHECK_EQ_I64(count, CC_API_KEYS_PER_ACCOUNT_MAX);
    CHECK(cc_ledger_credential_create(l, a, CC_CRED_API_KEY, NULL, 0, tok, sizeof tok, NULL, &e) == CC_OK);
    cc_ledger_close(l);
}

void suite_auth(void) {
    RUN(passwords);
    RUN(credentials);
    RUN(api_key_limit);
}
