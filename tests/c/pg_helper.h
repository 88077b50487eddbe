/*
** pg_helper.h — a throwaway PostgreSQL cluster for the C tests.
**
** ct_pg_available() starts one cluster per test process on first use
** (scripts/pg-throwaway: initdb into a temp folder as a non-root user, a free
** 127.0.0.1 port) and stops it at exit. Each ct_pg_new_db() creates a fresh
** database and writes its URI. Without libpq or the server binaries the
** PostgreSQL suites FAIL (CI must run them), unless CC_TEST_NO_PG=1 is set
** explicitly, which skips them with a line saying so.
*/
#ifndef CT_PG_HELPER_H
#define CT_PG_HELPER_H

#include <stddef.h>

int ct_pg_available(void);                      /* 1: cluster up; 0: skipped (CC_TEST_NO_PG) */
int ct_pg_new_db(char *uri, size_t cap);        /* 0 on success */
int ct_pg_exec(const char *uri, const char *sql); /* 0 when the SQL ran without error */
int ct_pg_ctl(const char *args);                /* pg_ctl on the cluster, e.g. "-m fast -w stop" */
int ct_pg_port(void);

#endif
