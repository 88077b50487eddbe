/* test_run.c — the per-run state machine: one policy, one resolution,
** tokens bound to their run and paths, reservations, keep-alive. */
#include "ctest.h"
#include "run.h"
#include "ledger_int.h" /* to take the ledger's reader connections from the test */

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define C(x) ((int64_t)(x) * CC_MICRO)
/* Flat: $0.04 = 8.44 credits a run. Tok: per-token units, hold 10 credits. */
static const char *TABLE =
    "{\"format\":1,\"credits_per_usd\":211,\"default\":{\"usd\":\"1\"},\"nodes\":{"
    "\"Flat\":{\"family\":\"OpenAI\",\"usd\":\"0.04\"},"
    "\"Up\":{\"family\":\"Recraft\",\"calls_per_batch_of\":\"image\",\"usd\":\"0.25\"},"
    "\"Tok\":{\"credits\":\"10\",\"units\":{\"output_tokens_per_1m\":{\"credits\":\"1000000\"}}}}}";
#define FLAT 8440000

typedef struct env {
    cc_ledger *l;
    cc_price_table *t;
    cc_runs *r;
    int64_t acct;
    char path[CT_PATH_BYTES_MAX];
} env;

static void env_open(env *v, int64_t credits, int64_t ttl_ms, int64_t wait_ms, int charge_interrupted) {
    cc_error e;
    v->l = ct_ledger(2, v->path, sizeof v->path);
    CHECK(cc_price_table_parse(TABLE, strlen(TABLE), &v->t, &e) == CC_OK);
    cc_runs_config cfg = {.hold_ttl_ms = ttl_ms, .finish_wait_ms = wait_ms, .charge_interrupted = charge_interrupted};
    CHECK(cc_runs_open(v->l, v->t, &cfg, &v->r, &e) == CC_OK);
    v->acct = ct_account(v->l, "run@example.com");
    if (credits) {
        cc_op op;
        cc_result res;
        cc_op_init(&op, CC_OP_GRANT);
        op.key = "seed";
        op.account_id = v->acct;
        op.amount = credits;
        CHECK(cc_ledger_execute1(v->l, &op, &res) == CC_OK);
    }
}

static void env_close(env *v) {
    cc_runs_close(v->r);
    cc_price_table_free(v->t);
    cc_ledger_close(v->l);
}

static cc_account account_of(env *v) {
    cc_account a;
    cc_error e;
    memset(&a, 0, sizeof a);
    CHECK(cc_ledger_account(v->l, v->acct, &a, &e) == CC_OK);
    return a;
}

static int kseq;
static cc_rc begin(env *v, const char *cls, const char *prompt, cc_run_info *info) {
    char key[64];
    snprintf(key, sizeof key, "run:%s:%d", prompt, kseq++);
    cc_run_begin_args a = {.key = key, .account_id = v->acct, .prompt_id = prompt, .node_id = "1", .node_class = cls,
                           .inputs_json = "{}", .inputs_len = 2, .prefixes = "/proxy/openai/\n/customers/storage"};
    cc_error e;
    return cc_run_begin(v->r, &a, info, &e);
}

/* One whole call: begin, headers, end. */
static cc_rc call(env *v, const cc_run_info *i, const char *method, const char *path, int status,
                  int64_t credits_used, int64_t out_tokens) {
    int64_t id;
    int kind;
    cc_error e;
    cc_rc rc = cc_run_call_begin(v->r, i->token, method, path, &id, &kind, &e);
    if (rc != CC_OK) return rc;
    CHECK_EQ_I64(id, i->run_id);
    cc_run_call_headers(v->r, id, kind, status, credits_used);
    cc_usage u;
    cc_usage_init(&u);
    u.output_tokens = out_tokens;
    cc_run_call_end(v->r, id, kind, status, 0, &u);
    return CC_OK;
}

static cc_run_result finish(env *v, const cc_run_info *i, cc_run_outcome o) {
    cc_run_result res;
    cc_error e;
    CHECK(cc_run_finish(v->r, i->run_id, o, &res, &e) == CC_OK);
    return res;
}

static void interrupt_before_create_is_free(void) {
    env v;
    env_open(&v, C(100), 60000, 1000, 1);
    cc_run_info i;
    CHECK(begin(&v, "Flat", "p1", &i) == CC_OK);
    CHECK_EQ_I64(i.hold_micro, FLAT);
    CHECK_EQ_I64(account_of(&v).held, FLAT);
    cc_run_result res = finish(&v, &i, CC_RUN_INTERRUPTED);
    CHECK_EQ_I64(res.billed, 0);
    CHECK_EQ_I64(res.charged, 0);
    CHECK(!res.settled);
    CHECK(strstr(res.reason, "before the provider started") != NULL);
    cc_account a = account_of(&v);
    CHECK_EQ_I64(a.balance, C(100));
    CHECK_EQ_I64(a.held, 0);
    env_close(&v);
}

static void interrupt_after_create_pays_what_was_billed(void) {
    env v;
    env_open(&v, C(100), 60000, 1000, 1);
    cc_run_info i;
    /* No credits header: the rule's price for the accepted creating call. */
    CHECK(begin(&v, "Flat", "p1", &i) == CC_OK);
    CHECK(call(&v, &i, "POST", "/proxy/openai/v1/videos", 200, -1, -1) == CC_OK);
    CHECK(call(&v, &i, "GET", "/proxy/openai/v1/videos/1", 200, -1, -1) == CC_OK); /* polling */
    cc_run_result res = finish(&v, &i, CC_RUN_INTERRUPTED);
    CHECK_EQ_I64(res.billed, FLAT);
    CHECK_EQ_I64(res.charged, FLAT);
    CHECK(strstr(res.reason, "interrupted after the provider started the task") != NULL);
    /* With the upstream's report: exactly that (below the hold). */
    CHECK(begin(&v, "Flat", "p2", &i) == CC_OK);
    CHECK(call(&v, &i, "POST", "/proxy/openai/v1/videos", 200, 5000000, -1) == CC_OK);
    CHECK(call(&v, &i, "GET", "/proxy/openai/v1/videos/1", 200, 5000000, -1) == CC_OK); /* a poll repeats it */
    res = finish(&v, &i, CC_RUN_INTERRUPTED);
    CHECK_EQ_I64(res.billed, 5000000);
    CHECK_EQ_I64(res.charged, 5000000);
    cc_account a = account_of(&v);
    CHECK_EQ_I64(a.balance, C(100) - FLAT - 5000000);
    CHECK_EQ_I64(a.held, 0);
    cc_entry en;
    cc_error e;
    char key[48];
    snprintf(key, sizeof key, "settle:%lld", (long long)i.run_id);
    CHECK(cc_ledger_entry(v.l, key, &en, &e) == CC_OK);
    CHECK(strstr(en.note, "interrupted after the provider started the task") != NULL);
    env_close(&v);
}

typedef struct slow_call {
    env *v;
    cc_run_info *i;
    int64_t run_id;
    int kind;
    volatile int started; /* set just before cc_run_finish */
} slow_call;

static void *finish_thread(void *p) {
    slow_call *s = p;
    __atomic_store_n(&s->started, 1, __ATOMIC_SEQ_CST);
    cc_run_result *res = malloc(sizeof *res);
    cc_error e;
    CHECK(cc_run_finish(s->v->r, s->i->run_id, CC_RUN_INTERRUPTED, res, &e) == CC_OK);
    return res;
}

static void interrupt_during_create_waits_for_the_answer(void) {
    env v;
    env_open(&v, C(100), 60000, 5000, 1);
    cc_run_info i;
    CHECK(begin(&v, "Flat", "p1", &i) == CC_OK);
    slow_call s = {.v = &v, .i = &i};
    cc_error e;
    CHECK(cc_run_call_begin(v.r, i.token, "POST", "/proxy/openai/images/generations", &s.run_id, &s.kind, &e) ==
          CC_OK);
    pthread_t th;
    pthread_create(&th, NULL, finish_thread, &s);
    /* Closed to new calls while it waits. On a loaded machine the finishing
    ** thread may not have closed the run yet: probe, and end a probe that got
    ** in as never sent (not billable), until the run refuses new calls. */
    while (!__atomic_load_n(&s.started, __ATOMIC_SEQ_CST)) usleep(1000);
    int64_t id;
    int kind;
    cc_rc probe = CC_OK;
    for (int tries = 0; tries < 6; tries++) {
        usleep(20000);
        probe = cc_run_call_begin(v.r, i.token, "POST", "/proxy/openai/images/generations", &id, &kind, &e);
        if (probe != CC_OK) break;
        cc_run_call_end(v.r, id, kind, 0, 0, NULL); /* never sent */
    }
    CHECK(probe == CC_ERR_STATE);
    cc_run_call_headers(v.r, s.run_id, s.kind, 200, -1);
    cc_usage u;
    cc_usage_init(&u);
    cc_run_call_end(v.r, s.run_id, s.kind, 200, 0, &u);
    cc_run_result *res;
    pthread_join(th, (void **)&res);
    CHECK_EQ_I64(res->charged, FLAT);
    CHECK_EQ_I64(res->in_flight_at_deadline, 0);
    free(res);
    env_close(&v);
}

static void upstream_errors_timeouts_and_bodies(void) {
    env v;
    env_open(&v, C(100), 60000, 1000, 1);
    cc_run_info i;
    /* 5xx retried then 4xx: the upstream accepted nothing. */
    CHECK(begin(&v, "Flat", "p1", &i) == CC_OK);
    CHECK(call(&v, &i, "POST", "/proxy/openai/images/generations", 500, -1, -1) == CC_OK);
    CHECK(call(&v, &i, "POST", "/proxy/openai/images/generations", 400, -1, -1) == CC_OK);
    cc_run_result res = finish(&v, &i, CC_RUN_FAILED);
    CHECK_EQ_I64(res.billed, 0);
    CHECK_EQ_I64(res.calls, 2);
    /* A timeout, then the client's retry succeeds: two billable calls, capped at the hold. */
    CHECK(begin(&v, "Flat", "p2", &i) == CC_OK);
    int64_t id;
    int kind;
    cc_error e;
    CHECK(cc_run_call_begin(v.r, i.token, "POST", "/proxy/openai/images/generations", &id, &kind, &e) == CC_OK);
    cc_run_call_end(v.r, id, kind, 0, 1, NULL); /* timed out after sending */
    CHECK(cc_run_call_begin(v.r, i.token, "POST", "/proxy/openai/images/generations", &id, &kind, &e) == CC_OK);
    cc_run_call_end(v.r, id, kind, 0, 0, NULL); /* never sent (connection refused): not billable */
    CHECK(call(&v, &i, "POST", "/proxy/openai/images/generations", 200, -1, -1) == CC_OK);
    res = finish(&v, &i, CC_RUN_SUCCEEDED);
    CHECK_EQ_I64(res.billable_calls, 2);
    CHECK_EQ_I64(res.billed, 2 * FLAT);
    CHECK_EQ_I64(res.charged, FLAT);          /* never more than the hold */
    CHECK_EQ_I64(res.uncollected, FLAT);      /* the operator sees the rest */
    /* A 2xx with a malformed body: accepted, the rule's price. */
    CHECK(begin(&v, "Flat", "p3", &i) == CC_OK);
    CHECK(call(&v, &i, "POST", "/proxy/openai/images/generations", 200, -1, -1) == CC_OK);
    res = finish(&v, &i, CC_RUN_FAILED);
    CHECK_EQ_I64(res.charged, FLAT);
    CHECK(strstr(res.reason, "failed after the provider accepted") != NULL);
    /* Usage priced by units, above the hold: capped, the rest uncollected. */
    CHECK(begin(&v, "Tok", "p4", &i) == CC_OK);
    CHECK_EQ_I64(i.hold_micro, C(10));
    CHECK(call(&v, &i, "POST", "/proxy/openai/v1/responses", 200, -1, 50) == CC_OK); /* 50 tokens = 50 credits */
    res = finish(&v, &i, CC_RUN_SUCCEEDED);
    CHECK_EQ_I64(res.billed, C(50));
    CHECK_EQ_I64(res.charged, C(10));
    CHECK_EQ_I64(res.uncollected, C(40));
    cc_account a = account_of(&v);
    CHECK_EQ_I64(a.uncollected_total, FLAT + C(40));
    CHECK_EQ_I64(a.held, 0);
    env_close(&v);
}

/* An account with 100 credits and two open runs of a flat-priced node (prompts p1, p2). */
static void two_flat_runs(env *v, cc_run_info *i, cc_run_info *j) {
    env_open(v, C(100), 60000, 1000, 1);
    CHECK(begin(v, "Flat", "p1", i) == CC_OK);
    CHECK(begin(v, "Flat", "p2", j) == CC_OK);
}

static void token_bound_to_run_and_paths(void) {
    env v;
    cc_run_info i, j;
    two_flat_runs(&v, &i, &j);
    int64_t id;
    int kind;
    cc_error e;
    /* Another provider's path: refused. */
    CHECK(cc_run_call_begin(v.r, i.token, "POST", "/proxy/kling/v1/videos/text2video", &id, &kind, &e) ==
          CC_ERR_INVALID);
    CHECK_STR(e.field, "path");
    CHECK(cc_run_call_begin(v.r, i.token, "POST", "/proxy/openaiX/v1", &id, &kind, &e) == CC_ERR_INVALID);
    /* Uploads and POST polls are allowed and not billable. */
    CHECK(call(&v, &i, "POST", "/customers/storage", 200, -1, -1) == CC_OK);
    CHECK(call(&v, &i, "POST", "/proxy/openai/x/poll", 200, -1, -1) == CC_OK);
    CHECK(call(&v, &i, "POST", "/proxy/openai/x/status", 200, -1, -1) == CC_OK);
    /* Reused for a second generation: each call counted and charged (capped at the hold). */
    CHECK(call(&v, &i, "POST", "/proxy/openai/images/generations", 200, -1, -1) == CC_OK);
    CHECK(call(&v, &i, "POST", "/proxy/openai/images/generations", 200, -1, -1) == CC_OK);
    cc_run_result res = finish(&v, &i, CC_RUN_SUCCEEDED);
    CHECK_EQ_I64(res.billable_calls, 2);
    CHECK_EQ_I64(res.charged, FLAT);
    CHECK_EQ_I64(res.uncollected, FLAT);
    /* After finish the token is dead. */
    CHECK(cc_run_call_begin(v.r, i.token, "POST", "/proxy/openai/images/generations", &id, &kind, &e) ==
          CC_ERR_STATE);
    /* Forged and garbage tokens. */
    char bad[CC_TOKEN_BYTES_MAX + 1];
    strcpy(bad, j.token);
    bad[strlen(bad) - 1] = bad[strlen(bad) - 1] == '0' ? '1' : '0';
    CHECK(cc_run_call_begin(v.r, bad, "POST", "/proxy/openai/x", &id, &kind, &e) == CC_ERR_INVALID);
    CHECK(cc_run_call_begin(v.r, "nope", "POST", "/proxy/openai/x", &id, &kind, &e) == CC_ERR_INVALID);
    /* Creating calls are bounded per run. */
    for (int k = 0; k < CC_RUN_CREATING_CALLS_MAX; k++)
        CHECK(call(&v, &j, "POST", "/proxy/openai/images/generations", 500, -1, -1) == CC_OK);
    CHECK(cc_run_call_begin(v.r, j.token, "POST", "/proxy/openai/images/generations", &id, &kind, &e) ==
          CC_ERR_LIMIT);
    CHECK(call(&v, &j, "GET", "/proxy/openai/images/1", 200, -1, -1) == CC_OK); /* reads still work */
    res = finish(&v, &j, CC_RUN_FAILED);
    CHECK_EQ_I64(res.charged, 0);
    env_close(&v);
}

/* A run's own token is recognised byte for byte (no HMAC per call) while the
** run is open; every other check still applies, and anything that is not
** exactly that token (altered, longer, shorter, the run finished) goes
** through the MAC and is refused as before. */
static void known_token_skips_only_the_mac(void) {
    env v;
    cc_run_info i, j;
    two_flat_runs(&v, &i, &j);
    int64_t id;
    int kind;
    cc_error e;
    int64_t macs = cc_runs_token_macs(v.r);
    for (int k = 0; k < 3; k++) CHECK(call(&v, &i, "POST", "/proxy/openai/x/poll", 200, -1, -1) == CC_OK);
    CHECK(call(&v, &j, "GET", "/proxy/openai/x/1", 200, -1, -1) == CC_OK);
    CHECK_EQ_I64(cc_runs_token_macs(v.r), macs); /* no MAC for a run's own token */
    /* The run's path bound still applies to its known token. */
    CHECK(cc_run_call_begin(v.r, i.token, "POST", "/proxy/kling/v1/videos/text2video", &id, &kind, &e) ==
          CC_ERR_INVALID);
    CHECK_STR(e.field, "path");
    /* Not exactly the token: checked by its MAC, refused. */
    char t[CC_TOKEN_BYTES_MAX + 8];
    size_t n = strlen(i.token);
    memcpy(t, i.token, n + 1);
    t[n - 1] = t[n - 1] == '0' ? '1' : '0';
    CHECK(cc_run_call_begin(v.r, t, "POST", "/proxy/openai/x/poll", &id, &kind, &e) == CC_ERR_INVALID);
    memcpy(t, i.token, n + 1);
    t[n] = '0';
    t[n + 1] = 0;
    CHECK(cc_run_call_begin(v.r, t, "POST", "/proxy/openai/x/poll", &id, &kind, &e) == CC_ERR_INVALID);
    t[n - 1] = 0;
    CHECK(cc_run_call_begin(v.r, t, "POST", "/proxy/openai/x/poll", &id, &kind, &e) == CC_ERR_INVALID);
    /* Another run's token with this run's hold id: its MAC does not match. */
    int64_t hi = cc_token_hold_of(i.token), hj = cc_token_hold_of(j.token);
    CHECK(hi == i.run_id && hj == j.run_id && hi != hj);
    CHECK(cc_token_hold_of("cct1.x.1") == 0 && cc_token_hold_of("cct1.") == 0 && cc_token_hold_of(NULL) == 0);
    char swapped[CC_TOKEN_BYTES_MAX + 32];
    snprintf(swapped, sizeof swapped, "cct1.%lld%s", (long long)hi, strchr(j.token + 5, '.'));
    CHECK(cc_run_call_begin(v.r, swapped, "POST", "/proxy/openai/x/poll", &id, &kind, &e) == CC_ERR_INVALID);
    CHECK_EQ_I64(cc_runs_token_macs(v.r), macs + 4);
    /* Finished: the known token is forgotten and the run refuses it. */
    finish(&v, &i, CC_RUN_SUCCEEDED);
    CHECK(cc_run_call_begin(v.r, i.token, "POST", "/proxy/openai/x/poll", &id, &kind, &e) == CC_ERR_STATE);
    CHECK(strstr(e.message, "finished") != NULL);
    CHECK_EQ_I64(cc_runs_token_macs(v.r), macs + 5);
    CHECK(call(&v, &j, "GET", "/proxy/openai/x/1", 200, -1, -1) == CC_OK); /* the other run is unaffected */
    CHECK_EQ_I64(cc_runs_token_macs(v.r), macs + 5);
    finish(&v, &j, CC_RUN_SUCCEEDED);
    env_close(&v);
}

static int64_t test_clock(void *ud) { return *(const int64_t *)ud; }

/* A run's token expires CC_RUN_TOKEN_TTL_MS (a week) after the run began,
** on the fast path too (the run's own token, no MAC): the registry's clock
** is moved to the last valid millisecond and past it. The MAC path, at the
** same instant, gives the same answer. */
static void known_token_expires_on_the_fast_path(void) {
    env v;
    env_open(&v, C(100), 60000, 1000, 1);
    int64_t now = cc_now_ms();
    cc_runs_set_clock(v.r, test_clock, &now);
    cc_run_info i, j;
    CHECK(begin(&v, "Flat", "p1", &i) == CC_OK);
    CHECK(begin(&v, "Flat", "p2", &j) == CC_OK);
    int64_t began = now, id;
    int kind;
    cc_error e;
    int64_t macs = cc_runs_token_macs(v.r);
    now = began + CC_RUN_TOKEN_TTL_MS - 1; /* the last millisecond it works */
    CHECK(call(&v, &i, "POST", "/proxy/openai/x/poll", 200, -1, -1) == CC_OK);
    now = began + CC_RUN_TOKEN_TTL_MS;
    CHECK(cc_run_call_begin(v.r, i.token, "POST", "/proxy/openai/x/poll", &id, &kind, &e) == CC_ERR_STATE);
    CHECK_STR(e.field, "token");
    CHECK_STR(e.message, "hold token expired");
    now = began + 2 * CC_RUN_TOKEN_TTL_MS;
    CHECK(cc_run_call_begin(v.r, i.token, "GET", "/proxy/openai/x/1", &id, &kind, &e) == CC_ERR_STATE);
    CHECK_STR(e.message, "hold token expired");
    CHECK_EQ_I64(cc_runs_token_macs(v.r), macs); /* all of it on the fast path */
    /* The same instant through the MAC (j's token is no longer known once j
    ** finished): expired too, before anything else is looked at. */
    finish(&v, &j, CC_RUN_FAILED);
    CHECK(cc_run_call_begin(v.r, j.token, "GET", "/proxy/openai/x/1", &id, &kind, &e) == CC_ERR_STATE);
    CHECK_STR(e.message, "hold token expired");
    CHECK_EQ_I64(cc_runs_token_macs(v.r), macs + 1);
    now = began + 1; /* and back before the expiry: it is the clock that decides, nothing latched */
    CHECK(call(&v, &i, "GET", "/proxy/openai/x/1", 200, -1, -1) == CC_OK);
    CHECK(cc_run_call_begin(v.r, j.token, "GET", "/proxy/openai/x/1", &id, &kind, &e) == CC_ERR_STATE);
    CHECK(strstr(e.message, "finished") != NULL);
    cc_run_result res = finish(&v, &i, CC_RUN_SUCCEEDED);
    CHECK_EQ_I64(res.billable_calls, 0); /* the refused calls were not counted */
    env_close(&v);
}

static void late_report_and_second_finish(void) {
    env v;
    env_open(&v, C(100), 60000, 50, 1); /* finish waits 50 ms at most */
    cc_run_info i;
    CHECK(begin(&v, "Flat", "p1", &i) == CC_OK);
    int64_t id;
    int kind;
    cc_error e;
    CHECK(cc_run_call_begin(v.r, i.token, "POST", "/proxy/openai/images/generations", &id, &kind, &e) == CC_OK);
    cc_run_result res = finish(&v, &i, CC_RUN_INTERRUPTED);
    /* Still in flight at the deadline: the upstream may have accepted it. */
    CHECK_EQ_I64(res.in_flight_at_deadline, 1);
    CHECK_EQ_I64(res.charged, FLAT);
    /* The answer arrives after the run was resolved: counted, never charged twice, no slot left behind. */
    cc_run_call_headers(v.r, id, kind, 200, 3000000);
    cc_run_call_end(v.r, id, kind, 200, 0, NULL);
    cc_run_result again = finish(&v, &i, CC_RUN_SUCCEEDED);
    CHECK(again.replayed);
    CHECK_EQ_I64(again.charged, FLAT);
    CHECK_EQ_I64(again.late_calls, 0); /* the first result, as it was */
    int64_t open, closed, resv;
    cc_runs_counts(v.r, &open, &closed, &resv);
    CHECK_EQ_I64(open, 0);
    CHECK_EQ_I64(closed, 1);
    CHECK_EQ_I64(account_of(&v).balance, C(100) - FLAT);
    env_close(&v);
}

static void *finish_any(void *p) {
    slow_call *s = p;
    cc_run_result *res = malloc(sizeof *res);
    cc_error e;
    CHECK(cc_run_finish(s->v->r, s->i->run_id, s->kind ? CC_RUN_INTERRUPTED : CC_RUN_SUCCEEDED, res, &e) == CC_OK);
    return res;
}

static void concurrent_finish_resolves_once(void) {
    env v;
    env_open(&v, C(100), 60000, 1000, 1);
    for (int round = 0; round < 20; round++) {
        cc_run_info i;
        char p[16];
        snprintf(p, sizeof p, "c%d", round);
        CHECK(begin(&v, "Flat", p, &i) == CC_OK);
        CHECK(call(&v, &i, "POST", "/proxy/openai/images/generations", 200, 2000000, -1) == CC_OK);
        slow_call a = {.v = &v, .i = &i, .kind = 0}, b = {.v = &v, .i = &i, .kind = 1};
        pthread_t ta, tb;
        pthread_create(&ta, NULL, finish_any, &a);
        pthread_create(&tb, NULL, finish_any, &b);
        cc_run_result *ra, *rb;
        pthread_join(ta, (void **)&ra);
        pthread_join(tb, (void **)&rb);
        CHECK(ra->replayed + rb->replayed == 1);
        CHECK_EQ_I64(ra->charged, 2000000);
        CHECK_EQ_I64(rb->charged, 2000000);
        free(ra);
        free(rb);
    }
    cc_account a = account_of(&v);
    CHECK_EQ_I64(a.balance, C(100) - 20 * 2000000);
    CHECK_EQ_I64(a.held, 0);
    env_close(&v);
}

static void operator_may_not_charge_interrupted_runs(void) {
    env v;
    env_open(&v, C(100), 60000, 1000, 0);
    cc_run_info i;
    CHECK(begin(&v, "Flat", "p1", &i) == CC_OK);
    CHECK(call(&v, &i, "POST", "/proxy/openai/images/generations", 200, -1, -1) == CC_OK);
    cc_run_result res = finish(&v, &i, CC_RUN_INTERRUPTED);
    CHECK_EQ_I64(res.charged, 0);
    CHECK_EQ_I64(res.uncollected, FLAT);
    CHECK(strstr(res.reason, "operator setting") != NULL);
    /* Failed runs still pay what was billed. */
    CHECK(begin(&v, "Flat", "p2", &i) == CC_OK);
    CHECK(call(&v, &i, "POST", "/proxy/openai/images/generations", 200, -1, -1) == CC_OK);
    res = finish(&v, &i, CC_RUN_FAILED);
    CHECK_EQ_I64(res.charged, FLAT);
    cc_account a = account_of(&v);
    CHECK_EQ_I64(a.uncollected_total, FLAT);
    CHECK_EQ_I64(a.balance, C(100) - FLAT);
    env_close(&v);
}

static void long_run_keeps_its_hold(void) {
    env v;
    env_open(&v, C(100), 400, 1000, 1); /* hold ttl 400 ms */
    cc_run_info i;
    CHECK(begin(&v, "Flat", "p1", &i) == CC_OK);
    for (int k = 0; k < 4; k++) { /* 4 x 250 ms > ttl: calls keep it alive */
        usleep(250000);
        CHECK(call(&v, &i, "GET", "/proxy/openai/images/1", 200, -1, -1) == CC_OK);
        cc_op ex;
        cc_op_init(&ex, CC_OP_EXPIRE);
        cc_result r;
        CHECK(cc_ledger_execute1(v.l, &ex, &r) == CC_OK);
        CHECK_EQ_I64(r.count, 0);
    }
    /* Without calls, the periodic keep-alive does it. */
    for (int k = 0; k < 3; k++) {
        usleep(250000);
        CHECK(cc_runs_keepalive(v.r) == 1);
        cc_op ex;
        cc_op_init(&ex, CC_OP_EXPIRE);
        cc_result r;
        CHECK(cc_ledger_execute1(v.l, &ex, &r) == CC_OK);
        CHECK_EQ_I64(r.count, 0);
    }
    CHECK(call(&v, &i, "POST", "/proxy/openai/images/generations", 200, -1, -1) == CC_OK);
    cc_run_result res = finish(&v, &i, CC_RUN_SUCCEEDED);
    CHECK(!res.hold_lost);
    CHECK_EQ_I64(res.charged, FLAT);
    /* A hold nobody kept alive expires; the billed cost is then reported uncollected, never lost silently. */
    CHECK(begin(&v, "Flat", "p2", &i) == CC_OK);
    CHECK(call(&v, &i, "POST", "/proxy/openai/images/generations", 200, -1, -1) == CC_OK);
    cc_op ex;
    cc_op_init(&ex, CC_OP_EXPIRE);
    ex.now_ms = cc_now_ms() + 10000;
    cc_result r;
    CHECK(cc_ledger_execute1(v.l, &ex, &r) == CC_OK);
    CHECK_EQ_I64(r.count, 1);
    res = finish(&v, &i, CC_RUN_SUCCEEDED);
    CHECK(res.hold_lost);
    CHECK_EQ_I64(res.uncollected, FLAT);
    env_close(&v);
}

static void reservations(void) {
    env v;
    env_open(&v, C(10), 60000, 1000, 1);
    cc_error e;
    /* Prompt A reserves 8.44 of 10; prompt B (8.44) no longer fits. */
    CHECK(cc_runs_reserve(v.r, "A", v.acct, FLAT, &e) == CC_OK);
    CHECK_EQ_I64(cc_runs_reserved(v.r, v.acct), FLAT);
    CHECK(cc_runs_reserve(v.r, "B", v.acct, FLAT, &e) == CC_ERR_INSUFFICIENT);
    CHECK(strstr(e.message, "reserved by queued prompts") != NULL);
    CHECK(cc_runs_reserve(v.r, "A", v.acct, 1, &e) == CC_ERR_EXISTS);
    /* A run of a prompt without a reservation cannot take A's credits. */
    cc_run_info i;
    CHECK(begin(&v, "Flat", "other", &i) == CC_ERR_INSUFFICIENT);
    /* A's node draws its hold from A's reservation. */
    CHECK(begin(&v, "Flat", "A", &i) == CC_OK);
    CHECK_EQ_I64(i.from_reservation, FLAT);
    CHECK_EQ_I64(cc_runs_reservation(v.r, "A"), 0);
    CHECK_EQ_I64(cc_runs_reserved(v.r, v.acct), 0);
    CHECK(call(&v, &i, "POST", "/proxy/openai/images/generations", 200, 1000000, -1) == CC_OK);
    finish(&v, &i, CC_RUN_SUCCEEDED);
    CHECK_EQ_I64(cc_runs_release(v.r, "A"), 0);
    CHECK_EQ_I64(cc_runs_reservation(v.r, "A"), -1);
    /* Release returns what a prompt did not use. */
    CHECK(cc_runs_reserve(v.r, "B", v.acct, C(5), &e) == CC_OK);
    CHECK_EQ_I64(cc_runs_release(v.r, "B"), C(5));
    CHECK_EQ_I64(cc_runs_reserved(v.r, v.acct), 0);
    CHECK(cc_runs_reserve(v.r, "", v.acct, 1, &e) == CC_ERR_INVALID);
    CHECK(cc_runs_reserve(v.r, "C", v.acct, -1, &e) == CC_ERR_INVALID);
    env_close(&v);
}

/* ---- admission never waits for a hold's commit (issue #14) */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

typedef struct slow_begin {
    env *v;
    cc_rc rc;
    cc_run_info info;
} slow_begin;

static void *slow_begin_main(void *p) {
    slow_begin *b = p;
    b->rc = begin(b->v, "Flat", "P", &b->info);
    return NULL;
}

typedef struct unlock_later {
    sqlite3 *db;
    int ms;
} unlock_later;

static void *unlock_later_main(void *p) {
    unlock_later *u = p;
    usleep((useconds_t)u->ms * 1000);
    CHECK(sqlite3_exec(u->db, "ROLLBACK", 0, 0, 0) == SQLITE_OK);
    return NULL;
}

static void admission_does_not_wait_for_a_hold_commit(void) {
    env v;
    env_open(&v, C(10), 60000, 1000, 1);
    const char *path = v.path;
    /* Another connection holds SQLite's write lock: the run's hold commit waits for it. */
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0) == SQLITE_OK);
    slow_begin b = {.v = &v};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, slow_begin_main, &b) == 0);
    cc_error e;
    int busy = -1;
    /* Wait until the begin has checked and is committing (8.44 being placed, shown as reserved).
    ** The wait only reads: it used to probe by reserving all 10 credits and releasing them, and a
    ** begin whose check fell between the two (a preempted test thread on a loaded machine) was
    ** refused for want of credits; the test then failed in cascade and aborted the whole run. */
    int streak = 0; /* twice in a row, 20 ms apart */
    for (int i = 0; i < 2000 && streak < 2; i++) {
        streak = cc_runs_reserved(v.r, v.acct) == FLAT ? streak + 1 : 0;
        usleep(20 * 1000);
    }
    CHECK_EQ_I64(streak, 2);
    /* once it is placing, all 10 credits are "busy" (not decided without waiting) */
    CHECK(cc_runs_reserve_nowait(v.r, "probe", v.acct, C(10), &busy, &e) == CC_ERR_STATE);
    CHECK_EQ_I64(busy, 1);
    /* 10 - 8.44 being placed = 1.56: 1 credit is admitted at once, without waiting for the commit */
    double t = now_ms();
    CHECK(cc_runs_reserve_nowait(v.r, "Q", v.acct, C(1), &busy, &e) == CC_OK);
    CHECK_EQ_I64(busy, 0);
    CHECK(cc_runs_release(v.r, "Q") == C(1));
    CHECK(cc_runs_reserve(v.r, "Q2", v.acct, C(1), &e) == CC_OK); /* the waiting variant does not wait either */
    CHECK(now_ms() - t < 2000); /* the commit waits up to 5 s for the lock */
    CHECK(cc_runs_release(v.r, "Q2") == C(1));
    /* the hold being committed is shown as reserved until the ledger holds it */
    CHECK_EQ_I64(cc_runs_reserved(v.r, v.acct), FLAT);
    CHECK_EQ_I64(account_of(&v).held, 0);
    /* 2 credits do not fit while 8.44 is counted as placing: not decided without waiting */
    CHECK(cc_runs_reserve_nowait(v.r, "R", v.acct, C(2), &busy, &e) == CC_ERR_STATE);
    CHECK_EQ_I64(busy, 1);
    CHECK_EQ_I64(cc_runs_reservation(v.r, "R"), -1);
    /* waiting, the answer is exact once the hold committed: 1.56 available */
    unlock_later u = {db, 200};
    pthread_t ut;
    CHECK(pthread_create(&ut, NULL, unlock_later_main, &u) == 0);
    t = now_ms();
    CHECK(cc_runs_reserve(v.r, "R", v.acct, C(2), &e) == CC_ERR_INSUFFICIENT);
    CHECK(now_ms() - t >= 100);
    CHECK(strstr(e.message, "available 1.56") != NULL);
    CHECK(cc_runs_reserve(v.r, "R", v.acct, C(1), &e) == CC_OK); /* and what fits still fits */
    pthread_join(ut, NULL);
    pthread_join(th, NULL);
    CHECK(b.rc == CC_OK);
    CHECK_EQ_I64(account_of(&v).held, FLAT);
    CHECK_EQ_I64(cc_runs_reserved(v.r, v.acct), C(1)); /* R's 1 credit; the hold is the ledger's now */
    sqlite3_close(db);
    cc_runs_release(v.r, "R");
    if (b.rc == CC_OK) finish(&v, &b.info, CC_RUN_FAILED); /* else there is no run (id 0 would abort) */
    env_close(&v);
}

/* The no-wait reads (the queue gate calls them on the event loop): with every
** reader connection taken they answer "busy" at once; otherwise exactly what
** the waiting calls answer. */
static void nowait_reads_never_wait_for_a_reader(void) {
    env v;
    env_open(&v, C(10), 60000, 1000, 1);
    cc_error e;
    char tok[CC_CRED_TOKEN_BYTES + 1];
    cc_credential cred, cred2;
    cc_account a, a2;
    CHECK(cc_ledger_credential_create(v.l, v.acct, CC_CRED_API_KEY, "k", 0, tok, sizeof tok, &cred, &e) == CC_OK);
    int s1, s2, busy = -1;
    CHECK(ledger_reader_take(v.l, &s1) != NULL); /* env_open made two readers: take both */
    CHECK(ledger_reader_take(v.l, &s2) != NULL);
    double t = now_ms();
    CHECK(cc_ledger_credential_check_nowait(v.l, tok, &cred, &a, &busy, &e) == CC_ERR_STATE);
    CHECK_EQ_I64(busy, 1);
    CHECK_STR(e.field, "busy");
    busy = -1;
    CHECK(cc_ledger_account_nowait(v.l, v.acct, &a, &busy, &e) == CC_ERR_STATE);
    CHECK_EQ_I64(busy, 1);
    busy = -1;
    CHECK(cc_runs_reserve_nowait(v.r, "P", v.acct, C(1), &busy, &e) == CC_ERR_STATE);
    CHECK_EQ_I64(busy, 1);
    CHECK_EQ_I64(cc_runs_reservation(v.r, "P"), -1);
    CHECK(now_ms() - t < 2000); /* a waiting read would not return while the test holds both readers */
    ledger_reader_give(v.l, s1);
    ledger_reader_give(v.l, s2);
    CHECK(cc_ledger_credential_check_nowait(v.l, tok, &cred, &a, &busy, &e) == CC_OK);
    CHECK_EQ_I64(busy, 0);
    CHECK(cc_ledger_credential_check(v.l, tok, &cred2, &a2, &e) == CC_OK);
    CHECK_EQ_I64(cred.id, cred2.id);
    CHECK_EQ_I64(a.id, v.acct);
    CHECK_EQ_I64(a.balance, a2.balance);
    CHECK(cc_ledger_credential_check_nowait(v.l, "cck_nope", &cred, &a, &busy, &e) == CC_ERR_NOT_FOUND);
    CHECK_EQ_I64(busy, 0);
    CHECK(cc_ledger_account_nowait(v.l, 999, &a, &busy, &e) == CC_ERR_NOT_FOUND);
    CHECK_EQ_I64(busy, 0);
    CHECK(cc_runs_reserve_nowait(v.r, "P", v.acct, C(1), &busy, &e) == CC_OK);
    CHECK_EQ_I64(busy, 0);
    CHECK(cc_runs_reserve_nowait(v.r, "Q", v.acct, C(10), &busy, &e) == CC_ERR_INSUFFICIENT);
    CHECK_EQ_I64(busy, 0);
    cc_runs_release(v.r, "P");
    env_close(&v);
}

/* A hold that is not placed gives back what it took from its prompt's reservation. */
static void failed_hold_returns_its_reservation(void) {
    env v;
    env_open(&v, C(100), 60000, 1000, 1);
    cc_error e;
    CHECK(cc_runs_reserve(v.r, "P", v.acct, 2 * FLAT, &e) == CC_OK);
    cc_run_begin_args a = {.key = "run:P:same", .account_id = v.acct, .prompt_id = "P", .node_id = "1",
                           .node_class = "Flat", .inputs_json = "{}", .inputs_len = 2, .prefixes = "/proxy/openai/"};
    cc_run_info i, j;
    CHECK(cc_run_begin(v.r, &a, &i, &e) == CC_OK);
    CHECK_EQ_I64(cc_runs_reservation(v.r, "P"), FLAT);
    CHECK(cc_run_begin(v.r, &a, &j, &e) == CC_ERR_CONFLICT); /* the same hold key: no second hold */
    CHECK_EQ_I64(cc_runs_reservation(v.r, "P"), FLAT);
    CHECK_EQ_I64(cc_runs_reserved(v.r, v.acct), FLAT);
    finish(&v, &i, CC_RUN_FAILED);
    CHECK_EQ_I64(cc_runs_release(v.r, "P"), FLAT);
    env_close(&v);
}

static void bad_input(void) {
    env v;
    env_open(&v, C(10), 60000, 1000, 1);
    cc_error e;
    cc_run_info i;
    cc_run_begin_args a = {.key = "k", .account_id = v.acct, .node_class = "Flat", .prefixes = ""};
    CHECK(cc_run_begin(v.r, &a, &i, &e) == CC_ERR_INVALID);
    CHECK_STR(e.field, "prefixes");
    a.prefixes = "/proxy/openai/";
    a.account_id = 0;
    CHECK(cc_run_begin(v.r, &a, &i, &e) == CC_ERR_INVALID);
    a.account_id = v.acct;
    a.inputs_json = "{not json";
    a.inputs_len = 9;
    CHECK(cc_run_begin(v.r, &a, &i, &e) == CC_ERR_INVALID);
    CHECK_EQ_I64(account_of(&v).held, 0); /* nothing held for a refused start */
    cc_run_result res;
    CHECK(cc_run_finish(v.r, 12345, CC_RUN_SUCCEEDED, &res, &e) == CC_ERR_NOT_FOUND);
    CHECK(cc_run_finish(v.r, 12345, (cc_run_outcome)9, &res, &e) == CC_ERR_INVALID);
    cc_runs_config bad = {.hold_ttl_ms = 0, .finish_wait_ms = 0};
    cc_runs *r2;
    CHECK(cc_runs_open(v.l, v.t, &bad, &r2, &e) == CC_ERR_INVALID);
    env_close(&v);
}

/* A node that calls once per image of its batch: the hold covers every
** call, each accepted call pays one image, the bound on calls grows with it. */
static void batch_node_holds_every_image(void) {
    env v;
    env_open(&v, C(400), 60000, 1000, 1);
    const char *in = "{\"image\":[\"comfy_credits_batch\",3]}";
    cc_run_begin_args a = {.key = "run:b1:1", .account_id = v.acct, .prompt_id = "b1", .node_id = "1",
                           .node_class = "Up", .inputs_json = in, .inputs_len = strlen(in),
                           .prefixes = "/proxy/openai/\n/customers/storage"};
    cc_run_info i;
    cc_error e;
    CHECK(cc_run_begin(v.r, &a, &i, &e) == CC_OK);
    CHECK_EQ_I64(i.hold_micro, 3 * 52750000);
    CHECK_EQ_I64(i.calls_planned, 3);
    CHECK(call(&v, &i, "POST", "/proxy/openai/up", 200, -1, -1) == CC_OK);
    CHECK(call(&v, &i, "POST", "/proxy/openai/up", 200, -1, -1) == CC_OK);
    cc_run_result res = finish(&v, &i, CC_RUN_INTERRUPTED); /* two of three images were upscaled */
    CHECK_EQ_I64(res.billed, 2 * 52750000);
    CHECK_EQ_I64(res.charged, 2 * 52750000);
    CHECK_EQ_I64(res.uncollected, 0);
    /* Every image, and the client's retries beyond them, up to calls + 7. */
    a.key = "run:b2:1";
    a.prompt_id = "b2";
    CHECK(cc_run_begin(v.r, &a, &i, &e) == CC_OK);
    for (int k = 0; k < 3 + CC_RUN_CREATING_CALLS_MAX - 1; k++)
        CHECK(call(&v, &i, "POST", "/proxy/openai/up", 200, -1, -1) == CC_OK);
    CHECK(call(&v, &i, "POST", "/proxy/openai/up", 200, -1, -1) == CC_ERR_LIMIT);
    res = finish(&v, &i, CC_RUN_SUCCEEDED);
    CHECK_EQ_I64(res.charged, 3 * 52750000); /* never more than the hold */
    CHECK_EQ_I64(res.uncollected, 7 * 52750000);
    /* Refused before any call when the batch does not fit. */
    in = "{\"image\":[\"comfy_credits_batch\",4]}";
    a.inputs_json = in;
    a.inputs_len = strlen(in);
    a.key = "run:b3:1";
    a.prompt_id = "b3";
    CHECK(cc_run_begin(v.r, &a, &i, &e) == CC_ERR_INSUFFICIENT);
    CHECK(strstr(e.message, "4 images, one paid call each") != NULL);
    cc_account acc = account_of(&v);
    CHECK_EQ_I64(acc.held, 0);
    CHECK_EQ_I64(acc.balance, C(400) - 2 * 52750000 - 3 * 52750000);
    env_close(&v);
}

void suite_run(void) {
    RUN(batch_node_holds_every_image);
    RUN(interrupt_before_create_is_free);
    RUN(interrupt_after_create_pays_what_was_billed);
    RUN(interrupt_during_create_waits_for_the_answer);
    RUN(upstream_errors_timeouts_and_bodies);
    RUN(token_bound_to_run_and_paths);
    RUN(known_token_skips_only_the_mac);
    RUN(known_token_expires_on_the_fast_path);
    RUN(late_report_and_second_finish);
    RUN(concurrent_finish_resolves_once);
    RUN(operator_may_not_charge_interrupted_runs);
    RUN(long_run_keeps_its_hold);
    RUN(reservations);
    RUN(admission_does_not_wait_for_a_hold_commit);
    RUN(failed_hold_returns_its_reservation);
    RUN(nowait_reads_never_wait_for_a_reader);
    RUN(bad_input);
}
