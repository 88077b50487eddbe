/*
** ctest.h — the smallest test runner that CI can read.
**
** Each test is a void function; RUN(fn) executes it and counts it as passed
** when no CHECK inside failed. main() prints "N passed, N failed" as its last
** line and exits non-zero on any failure.
*/
#ifndef CTEST_H
#define CTEST_H

#include <stdio.h>
#include <string.h>
#include <stdint.h>

extern int ct_passed, ct_failed, ct_cur_failed;
extern const char *ct_cur_name;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "FAIL %s:%d [%s] %s\n", __FILE__, __LINE__,        \
                    ct_cur_name, #cond);                                       \
            ct_cur_failed = 1;                                                 \
        }                                                                      \
    } while (0)

#define CHECK_EQ_I64(a, b)                                                     \
    do {                                                                       \
        long long ct_a = (long long)(a), ct_b = (long long)(b);                \
        if (ct_a != ct_b) {                                                    \
            fprintf(stderr, "FAIL %s:%d [%s] %s == %s (%lld != %lld)\n",       \
                    __FILE__, __LINE__, ct_cur_name, #a, #b, ct_a, ct_b);      \
            ct_cur_failed = 1;                                                 \
        }                                                                      \
    } while (0)

#define CHECK_STR(a, b)                                                        \
    do {                                                                       \
        const char *ct_a = (a), *ct_b = (b);                                   \
        if (!ct_a || !ct_b || strcmp(ct_a, ct_b) != 0) {                       \
            fprintf(stderr, "FAIL %s:%d [%s] %s == \"%s\" (got \"%s\")\n",     \
                    __FILE__, __LINE__, ct_cur_name, #a, ct_b ? ct_b : "(null)", \
                    ct_a ? ct_a : "(null)");                                   \
            ct_cur_failed = 1;                                                 \
        }                                                                      \
    } while (0)

/* CT_ONLY=text in the environment: only the tests whose name contains it
** (to run one timing-sensitive test many times under load). */
extern const char *ct_only;
#define RUN(fn)                                                                \
    do {                                                                       \
        if (ct_only && !strstr(#fn, ct_only)) break;                           \
        ct_cur_name = #fn;                                                     \
        ct_cur_failed = 0;                                                     \
        fn();                                                                  \
        if (ct_cur_failed) ct_failed++; else ct_passed++;                      \
    } while (0)

/* Shared fixtures (test_main.c). Every ledger file lives in one temporary
** directory per run, removed when main() ends. */
#include "ledger.h"
#define CT_PATH_BYTES_MAX 300
/* A new file path in the run's temporary directory (nothing is created). */
void ct_db_path(char *out, size_t cap);
/* A fresh, empty ledger on its own SQLite file; its path is written to
** path_out unless that is NULL. */
cc_ledger *ct_ledger(int readers, char *path_out, size_t path_cap);
/* Creates an account (display name "Test") and returns its id. */
int64_t ct_account(cc_ledger *l, const char *email);

/* Suites, one per tested concept; each is defined in its test_*.c file. */
void suite_platform(void); /* also in the Windows .exe: tests/c/portable/main.c */
void suite_money(void);
void suite_pricing(void);
void suite_ledger(void);
void suite_store_pg(void);
void suite_token(void);
void suite_stripe(void);
void suite_fulfil(void);
void suite_password(void);
void suite_gwpath(void);
void suite_http1(void); /* also in the Windows .exe */
void suite_gateway(void);
void suite_gwsock(void);
void suite_usage_json(void);
void suite_curl_mem(void);
void suite_listener(void);
void suite_run(void);
void suite_auth(void);
void suite_history(void);
void suite_invite(void);
void suite_report(void);
void suite_caps(void);
void suite_threads(void);

#endif
