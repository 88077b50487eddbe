/* pg_helper.c — see pg_helper.h. */
#include "pg_helper.h"
#include "ctest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef CC_HAVE_LIBPQ
#include <libpq-fe.h>
#endif

static char dir[64];
static int port = -1;   /* -1 not tried, 0 unavailable, >0 up */
static int dbseq;

static void stop_cluster(void) {
    if (!dir[0]) return;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "scripts/pg-throwaway stop '%s/c' >/dev/null 2>&1; rm -rf '%s'", dir, dir);
    if (system(cmd) != 0) fprintf(stderr, "pg_helper: could not stop the cluster in %s\n", dir);
    dir[0] = 0;
}

int ct_pg_available(void) {
    if (port >= 0) return port > 0;
    port = 0;
    const char *no = getenv("CC_TEST_NO_PG");
    if (no && strcmp(no, "1") == 0) {
        fprintf(stderr, "PostgreSQL suites SKIPPED (CC_TEST_NO_PG=1)\n");
        return 0;
    }
#ifndef CC_HAVE_LIBPQ
    fprintf(stderr, "FAIL: built without libpq (install libpq-dev; or CC_TEST_NO_PG=1 to skip)\n");
    ct_failed++;
    return 0;
#else
    snprintf(dir, sizeof dir, "/tmp/cc-ctest-pg-XXXXXX");
    if (!mkdtemp(dir)) { dir[0] = 0; ct_failed++; return 0; }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "scripts/pg-throwaway start '%s/c' --no-fsync", dir);
    FILE *f = popen(cmd, "r");
    int p = 0;
    if (f) {
        if (fscanf(f, "%d", &p) != 1) p = 0;
        if (pclose(f) != 0) p = 0;
    }
    atexit(stop_cluster);
    if (p <= 0) {
        fprintf(stderr, "FAIL: could not start a throwaway PostgreSQL (scripts/pg-throwaway; "
                        "scripts/setup-test installs postgresql)\n");
        ct_failed++;
        return 0;
    }
    port = p;
    return 1;
#endif
}

int ct_pg_port(void) { return port; }

int ct_pg_exec(const char *uri, const char *sql) {
#ifdef CC_HAVE_LIBPQ
    PGconn *c = PQconnectdb(uri);
    int rc = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        ExecStatusType s = PQresultStatus(r);
        rc = (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) ? 0 : -1;
        PQclear(r);
    }
    PQfinish(c);
    return rc;
#else
    (void)uri; (void)sql;
    return -1;
#endif
}

int ct_pg_new_db(char *uri, size_t cap) {
    if (!ct_pg_available()) return -1;
    char admin[128], sql[96];
    snprintf(admin, sizeof admin, "postgresql://postgres@127.0.0.1:%d/postgres", port);
    snprintf(sql, sizeof sql, "CREATE DATABASE ct%d_%d", (int)getpid(), dbseq);
    if (ct_pg_exec(admin, sql) != 0) return -1;
    snprintf(uri, cap, "postgresql://postgres@127.0.0.1:%d/ct%d_%d", port, (int)getpid(), dbseq++);
    return 0;
}

int ct_pg_ctl(const char *args) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "scripts/pg-throwaway pgctl '%s/c' %s >/dev/null 2>&1", dir, args);
    return system(cmd);
}
