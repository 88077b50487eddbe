/* test_threads.c — the core called from every thread a ComfyUI server calls it from, at once.
**
** In a server the same cc_runs and cc_ledger are used at the same time by
**   - ComfyUI's prompt worker thread: cc_run_begin, cc_run_finish (ledger writes, an fsync each);
**   - the event loop: admission (cc_ledger_credential_check_nowait, cc_runs_reserve_nowait,
**     cc_runs_release, cc_runs_reserved), which never waits;
**   - the gateway's I/O thread: cc_run_call_begin_nowait / headers / end for every upstream call,
**     and a blocking thread for the hold extensions it hands off (cc_run_extend);
**   - the runtime's housekeeping (cc_runs_keepalive, counts) and admin routes (grants).
** This suite runs all of them on their own threads against one ledger for a few hundred
** rounds and then checks the money: under `make ctest-tsan` it is what gives ThreadSanitizer
** the interleavings to look at; in every build it checks nothing was lost or made up.
** Worker threads never CHECK (the runner's counters are not thread-safe): they count their
** own surprises, and the main thread checks them. */
#include "ctest.h"
#include "run.h"
#include "auth.h"
#include "verify.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define C(x) ((int64_t)(x) * CC_MICRO)
/* $0.04 = 8.44 credits a run (the same table as test_run.c's Flat). */
static const char *TABLE =
    "{\"format\":1,\"credits_per_usd\":211,\"default\":{\"usd\":\"1\"},\"nodes\":{"
    "\"Flat\":{\"family\":\"OpenAI\",\"usd\":\"0.04\"}}}";
#define FLAT 8440000
#define ROUNDS 150       /* runs of each worker */
#define WORKERS 2
#define GRANTS 60

typedef struct shared {
    cc_ledger *l;
    cc_runs *r;
    int64_t acct;       /* the one account every thread works on */
    char key[CC_CRED_TOKEN_BYTES + 1];
    cc_mutex_t mu;      /* the tokens of open runs, as the gateway learns them from requests */
    char tokens[WORKERS][CC_TOKEN_BYTES_MAX + 1];
    int64_t run_ids[WORKERS];
    volatile int stop;  /* written by main, read by the others; accesses under mu */
    /* results, written by one thread each and read by main after join */
    int64_t charged[WORKERS], runs_ok[WORKERS], refused[WORKERS];
    int surprises[8];
    int64_t admitted, gw_calls, extended, granted;
} shared;

enum { S_WORKER, S_LOOP, S_IO, S_HOUSE, S_GRANT };

static int stopped(shared *s) {
    cc_mutex_lock(&s->mu);
    int v = s->stop;
    cc_mutex_unlock(&s->mu);
    return v;
}

typedef struct worker_arg {
    shared *s;
    int n;
} worker_arg;

/* ComfyUI's worker: a paid run per round (its prompt reserved first, as admission does), one
** billable call made by the gateway's thread while the run is open, then the run's end. */
static void *worker_main(void *p) {
    worker_arg *w = p;
    shared *s = w->s;
    for (int i = 0; i < ROUNDS; i++) {
        char prompt[48], key[64];
        snprintf(prompt, sizeof prompt, "w%d-%d", w->n, i);
        snprintf(key, sizeof key, "run:%s", prompt);
        cc_error e;
        cc_rc rc = cc_runs_reserve(s->r, prompt, s->acct, FLAT, &e);
        if (rc == CC_ERR_INSUFFICIENT) {
            s->refused[w->n]++;
            continue;
        }
        if (rc != CC_OK) {
            s->surprises[S_WORKER]++;
            continue;
        }
        cc_run_begin_args a = {.key = key, .account_id = s->acct, .prompt_id = prompt, .node_id = "1",
                               .node_class = "Flat", .inputs_json = "{}", .inputs_len = 2,
                               .prefixes = "/proxy/openai/"};
        cc_run_info info;
        rc = cc_run_begin(s->r, &a, &info, &e);
        if (rc != CC_OK) {
            if (rc != CC_ERR_INSUFFICIENT) s->surprises[S_WORKER]++;
            cc_runs_release(s->r, prompt);
            continue;
        }
        cc_mutex_lock(&s->mu);
        memcpy(s->tokens[w->n], info.token, sizeof info.token);
        s->run_ids[w->n] = info.run_id;
        cc_mutex_unlock(&s->mu);
        /* the node's own billable call, through the (blocking) call path */
        int64_t id;
        int kind;
        if (cc_run_call_begin(s->r, info.token, "POST", "/proxy/openai/v1/images/generations", &id, &kind, &e) ==
            CC_OK) {
            cc_run_call_headers(s->r, id, kind, 200, C(1));
            cc_usage u;
            cc_usage_init(&u);
            cc_run_call_end(s->r, id, kind, 200, 0, &u);
        } else {
            s->surprises[S_WORKER]++;
        }
        if (i % 7 == 0) usleep(200); /* let the I/O thread's calls land in the open run now and then */
        cc_mutex_lock(&s->mu);
        s->tokens[w->n][0] = '\0';
        cc_mutex_unlock(&s->mu);
        cc_run_result res;
        rc = cc_run_finish(s->r, info.run_id, i % 5 == 4 ? CC_RUN_FAILED : CC_RUN_SUCCEEDED, &res, &e);
        if (rc != CC_OK || res.charged > FLAT || res.charged < 0) {
            s->surprises[S_WORKER]++;
        } else {
            s->charged[w->n] += res.charged;
            s->runs_ok[w->n]++;
        }
        cc_runs_release(s->r, prompt);
    }
    return NULL;
}

/* The event loop: queue-time admission of other prompts, never waiting. */
static void *loop_main(void *p) {
    shared *s = p;
    for (int i = 0; !stopped(s); i++) {
        cc_credential c;
        cc_account a;
        cc_error e;
        int busy = 0;
        cc_rc rc = cc_ledger_credential_check_nowait(s->l, s->key, &c, &a, &busy, &e);
        if (rc != CC_OK && !busy) s->surprises[S_LOOP]++;
        if (rc == CC_OK && (a.id != s->acct || a.balance < 0 || a.held < 0)) s->surprises[S_LOOP]++;
        char prompt[48];
        snprintf(prompt, sizeof prompt, "loop-%d", i);
        rc = cc_runs_reserve_nowait(s->r, prompt, s->acct, 1, &busy, &e);
        if (rc == CC_OK) {
            s->admitted++;
            if (cc_runs_reserved(s->r, s->acct) < 1) s->surprises[S_LOOP]++;
            if (cc_runs_release(s->r, prompt) != 1) s->surprises[S_LOOP]++;
        } else if (!busy && rc != CC_ERR_INSUFFICIENT) {
            s->surprises[S_LOOP]++;
        }
        if (cc_runs_reservation(s->r, prompt) != -1) s->surprises[S_LOOP]++;
    }
    return NULL;
}

/* The gateway's I/O thread: polls of whatever run is open, never blocking; a hold extension it
** is told to make is made here too (in a server: handed to a thread that may block). */
static void *io_main(void *p) {
    shared *s = p;
    unsigned seed = 7;
    while (!stopped(s)) {
        char tok[CC_TOKEN_BYTES_MAX + 1];
        cc_mutex_lock(&s->mu);
        memcpy(tok, s->tokens[rand_r(&seed) % WORKERS], sizeof tok);
        cc_mutex_unlock(&s->mu);
        if (!tok[0]) {
            usleep(50);
            continue;
        }
        int64_t id = 0, ext = 0;
        int kind = 0;
        cc_error e;
        /* the run may end meanwhile: then the token is refused, as a late call is */
        if (cc_run_call_begin_nowait(s->r, tok, "GET", "/proxy/openai/v1/videos/1", &id, &kind, &ext, &e) != CC_OK)
            continue;
        if (ext) {
            cc_run_extend(s->r, ext);
            s->extended++;
        }
        cc_run_call_headers(s->r, id, kind, 200, -1);
        cc_usage u;
        cc_usage_init(&u);
        u.images = 1;
        cc_run_call_end(s->r, id, kind, 200, 0, &u);
        s->gw_calls++;
    }
    return NULL;
}

/* Housekeeping: the runtime's periodic keep-alive and the counters a status route reads. */
static void *house_main(void *p) {
    shared *s = p;
    while (!stopped(s)) {
        cc_runs_keepalive(s->r);
        int64_t open, closed, resv;
        cc_runs_counts(s->r, &open, &closed, &resv);
        if (open < 0 || open > WORKERS || closed < 0 || resv < 0) s->surprises[S_HOUSE]++;
        usleep(500);
    }
    return NULL;
}

/* An admin granting credits meanwhile (a write through the same writer thread). */
static void *grant_main(void *p) {
    shared *s = p;
    for (int i = 0; i < GRANTS; i++) {
        char key[48];
        snprintf(key, sizeof key, "grant-%d", i);
        cc_op op;
        cc_result res;
        cc_op_init(&op, CC_OP_GRANT);
        op.key = key;
        op.account_id = s->acct;
        op.amount = C(1);
        if (cc_ledger_execute1(s->l, &op, &res) != CC_OK) s->surprises[S_GRANT]++;
        else s->granted += C(1);
        usleep(300);
    }
    return NULL;
}

static void every_thread_at_once_loses_and_makes_up_nothing(void) {
    shared *s = calloc(1, sizeof *s);
    CHECK(s != NULL);
    if (!s) return;
    cc_error e;
    cc_price_table *t;
    s->l = ct_ledger(2, NULL, 0);
    CHECK(cc_price_table_parse(TABLE, strlen(TABLE), &t, &e) == CC_OK);
    cc_runs_config cfg = {.hold_ttl_ms = 60000, .finish_wait_ms = 1000, .charge_interrupted = 1};
    CHECK(cc_runs_open(s->l, t, &cfg, &s->r, &e) == CC_OK);
    s->acct = ct_account(s->l, "threads@example.com");
    const int64_t seed_micro = C(1000); /* each run holds 8.44 and is charged 1 (its header), so all fit */
    cc_op op;
    cc_result res;
    cc_op_init(&op, CC_OP_GRANT);
    op.key = "seed";
    op.account_id = s->acct;
    op.amount = seed_micro;
    CHECK(cc_ledger_execute1(s->l, &op, &res) == CC_OK);
    cc_credential cred;
    CHECK(cc_ledger_credential_create(s->l, s->acct, CC_CRED_API_KEY, "k", 0, s->key, sizeof s->key, &cred, &e) ==
          CC_OK);
    cc_mutex_init(&s->mu);

    pthread_t wt[WORKERS], lt, it, ht, gt;
    worker_arg wa[WORKERS];
    CHECK(pthread_create(&lt, NULL, loop_main, s) == 0);
    CHECK(pthread_create(&it, NULL, io_main, s) == 0);
    CHECK(pthread_create(&ht, NULL, house_main, s) == 0);
    CHECK(pthread_create(&gt, NULL, grant_main, s) == 0);
    for (int i = 0; i < WORKERS; i++) {
        wa[i] = (worker_arg){s, i};
        CHECK(pthread_create(&wt[i], NULL, worker_main, &wa[i]) == 0);
    }
    for (int i = 0; i < WORKERS; i++) pthread_join(wt[i], NULL);
    pthread_join(gt, NULL);
    cc_mutex_lock(&s->mu);
    s->stop = 1;
    cc_mutex_unlock(&s->mu);
    pthread_join(lt, NULL);
    pthread_join(it, NULL);
    pthread_join(ht, NULL);

    for (int i = 0; i < 8; i++) CHECK_EQ_I64(s->surprises[i], 0);
    int64_t charged = 0, runs = 0;
    for (int i = 0; i < WORKERS; i++) {
        charged += s->charged[i];
        runs += s->runs_ok[i];
    }
    fprintf(stderr, "  threads: %lld runs (%lld refused), %lld admissions, %lld gateway calls, %lld extensions\n",
            (long long)runs, (long long)(s->refused[0] + s->refused[1]), (long long)s->admitted,
            (long long)s->gw_calls, (long long)s->extended);
    CHECK(runs > 0);
    CHECK(s->admitted > 0);
    CHECK_EQ_I64(s->granted, GRANTS * C(1));
    /* The money: every credit granted is in the balance or was charged, nothing is held, nothing
    ** is reserved, and the ledger's own check agrees with itself. */
    cc_account a;
    CHECK(cc_ledger_account(s->l, s->acct, &a, &e) == CC_OK);
    CHECK_EQ_I64(a.balance, seed_micro + s->granted - charged);
    CHECK_EQ_I64(a.held, 0);
    CHECK_EQ_I64(cc_runs_reserved(s->r, s->acct), 0);
    int64_t open, closed, resv;
    cc_runs_counts(s->r, &open, &closed, &resv);
    CHECK_EQ_I64(open, 0);
    CHECK_EQ_I64(resv, 0);
    char *problems[4];
    int np = -1;
    CHECK(cc_ledger_verify(s->l, problems, 4, &np, NULL, &e) == CC_OK);
    CHECK_EQ_I64(np, 0);
    for (int i = 0; i < np && i < 4; i++) {
        fprintf(stderr, "  verify: %s\n", problems[i]);
        free(problems[i]);
    }
    cc_mutex_destroy(&s->mu);
    cc_runs_close(s->r);
    cc_price_table_free(t);
    cc_ledger_close(s->l);
    free(s);
}

void suite_threads(void) {
    RUN(every_thread_at_once_loses_and_makes_up_nothing);
}
