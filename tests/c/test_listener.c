/* test_listener.c — the gateway's C listener (src/listener.c) end to end:
** a raw HTTP/1.1 client on one side, the runs registry with a real ledger,
** the gateway and the test upstream (up_helper.h) on the other. */
#include "ctest.h"
#include "listener.h"
#include "up_helper.h"

#include <stdlib.h>
#include <poll.h>
#include <sys/socket.h>

#define C(x) ((int64_t)(x) * CC_MICRO)
static const char *TABLE = "{\"format\":1,\"credits_per_usd\":211,\"default\":{\"credits\":\"10\"},\"nodes\":{}}";

#define WAIT_UNTIL(cond, ms)                                                   \
    ({                                                                         \
        int64_t wu_end = cc_monotonic_ms() + (ms);                             \
        while (!(cond) && cc_monotonic_ms() < wu_end) cc_sleep_ms(5);          \
        (cond);                                                                \
    })

typedef struct lenv {
    upstream u;
    cc_ledger *l;
    cc_price_table *t;
    cc_runs *r;
    cc_gateway *g;
    cc_listener *ls;
    int port;
    int64_t acct;
} lenv;

static int64_t lenv_bodies_bytes_max; /* 0: the listener's default */

static void lenv_open(lenv *v, int handles_max, int reader_idle_ms, int timeout_ms, int body_timeout_ms) {
    cc_error e;
    memset(v, 0, sizeof *v);
    CHECK(up_start(&v->u) == 0);
    v->l = ct_ledger(2, NULL, 0);
    CHECK(cc_price_table_parse(TABLE, strlen(TABLE), &v->t, &e) == CC_OK);
    cc_runs_config rc = {.hold_ttl_ms = 60000, .finish_wait_ms = 3000, .charge_interrupted = 1};
    CHECK(cc_runs_open(v->l, v->t, &rc, &v->r, &e) == CC_OK);
    v->acct = ct_account(v->l, "listener@example.com");
    cc_op op;
    cc_result res;
    cc_op_init(&op, CC_OP_GRANT);
    op.key = "seed";
    op.account_id = v->acct;
    op.amount = C(1000);
    CHECK(cc_ledger_execute1(v->l, &op, &res) == CC_OK);
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", v->u.port);
    cc_gateway_config gc = {.upstream_base = base, .upstream_key = "operator-key", .connect_timeout_ms = 2000,
                            .timeout_ms = timeout_ms, .reader_idle_ms = reader_idle_ms,
                            .request_bytes_max = 1 << 20, .response_bytes_max = INT64_C(1) << 30,
                            .handles_max = handles_max};
    CHECK(cc_gateway_open(&gc, NULL, NULL, &v->g, &e) == CC_OK);
    cc_listener_config lc = {.connections_max = 64, .body_timeout_ms = body_timeout_ms, .keepalive_ms = 60000,
                             .upstream_configured = 1, .bodies_bytes_max = lenv_bodies_bytes_max};
    CHECK(cc_listener_open(v->g, v->r, &lc, &v->ls, &v->port, &e) == CC_OK);
}

static void lenv_close(lenv *v) {
    cc_listener_close(v->ls);
    cc_gateway_close(v->g);
    cc_runs_close(v->r);
    cc_price_table_free(v->t);
    cc_ledger_close(v->l);
    up_stop(&v->u);
}

/* A run whose token reaches prefixes; returns its id and fills token. */
static int64_t run_for(lenv *v, const char *key, const char *prefixes, char *token) {
    cc_run_begin_args a = {.key = key, .account_id = v->acct, .prompt_id = "p", .node_id = "1",
                           .node_class = "AnyNode", .inputs_json = "{}", .inputs_len = 2, .prefixes = prefixes};
    cc_run_info info;
    cc_error e;
    CHECK(cc_run_begin(v->r, &a, &info, &e) == CC_OK);
    strcpy(token, info.token);
    return info.run_id;
}

static cc_socket_t dial(lenv *v) { return cc_sock_connect_loopback(v->port, 10000); }

static int send_all(cc_socket_t s, const char *p, size_t n) {
    while (n) {
        int64_t w = cc_sock_send(s, p, n);
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

typedef struct resp {
    int status;
    char head[8192];
    char body[8192];
    size_t body_len;
    int closed;                 /* the server closed the connection after it */
} resp;

static const char *hdr(resp *r, const char *name) {
    static char v[512];
    char key[64];
    snprintf(key, sizeof key, "\r\n%s:", name);
    const char *p = strcasestr(r->head, key);
    if (!p) return NULL;
    p += strlen(key);
    while (*p == ' ') p++;
    size_t k = strcspn(p, "\r");
    if (k >= sizeof v) k = sizeof v - 1;
    memcpy(v, p, k);
    v[k] = 0;
    return v;
}

/* Reads one whole response (Content-Length, chunked or to EOF). buf keeps what follows it. */
static char rbuf[1 << 16];
static size_t rlen;
static int read_more(cc_socket_t s) {
    if (rlen == sizeof rbuf) return -1;
    int64_t k = cc_sock_recv(s, rbuf + rlen, sizeof rbuf - rlen);
    if (k <= 0) return -1;
    rlen += (size_t)k;
    return 0;
}

static int read_resp(cc_socket_t s, resp *r) {
    memset(r, 0, sizeof *r);
    char *end;
    while (!(end = memmem(rbuf, rlen, "\r\n\r\n", 4)))
        if (read_more(s) != 0) return -1;
    size_t hl = (size_t)(end - rbuf) + 4;
    if (hl >= sizeof r->head) return -1;
    memcpy(r->head, rbuf, hl);
    r->head[hl] = 0;
    sscanf(r->head, "HTTP/1.1 %d", &r->status);
    memmove(rbuf, rbuf + hl, rlen - hl);
    rlen -= hl;
    const char *cl = hdr(r, "Content-Length");
    if (cl) { /* any length: the first sizeof r->body bytes are kept, the rest counted */
        size_t n = (size_t)strtoul(cl, NULL, 10), got = 0;
        for (;;) {
            size_t k = rlen < n - got ? rlen : n - got;
            if (got < sizeof r->body) memcpy(r->body + got, rbuf, k < sizeof r->body - got ? k : sizeof r->body - got);
            got += k;
            memmove(rbuf, rbuf + k, rlen - k);
            rlen -= k;
            if (got == n) break;
            if (read_more(s) != 0) {
                r->body_len = got; /* what came before the connection ended */
                return -1;
            }
        }
        r->body_len = n;
    } else if (hdr(r, "Transfer-Encoding")) {
        cc_h1_chunked ch;
        cc_h1_chunked_init(&ch, 1 << 30);
        static char big[1 << 16];
        size_t blen = 0;
        for (;;) {
            size_t used = 0;
            int st;
            cc_error e;
            blen = 0; /* keep only the count */
            cc_h1_rc rc = cc_h1_chunked_feed(&ch, rbuf, rlen, &used, big, &blen, sizeof big, &st, &e);
            r->body_len += blen;
            memmove(rbuf, rbuf + used, rlen - used);
            rlen -= used;
            if (rc == CC_H1_DONE) break;
            if (rc == CC_H1_BAD) return -1;
            if (rlen == 0 && read_more(s) != 0) return -1;
        }
    } else { /* to the connection's end (HTTP/1.0), counted */
        for (;;) {
            if (rlen == sizeof rbuf) {
                r->body_len += rlen;
                rlen = 0;
            }
            if (read_more(s) != 0) break;
        }
        r->body_len += rlen;
        rlen = 0;
        r->closed = 1;
    }
    return 0;
}

static int roundtrip(cc_socket_t s, const char *req, resp *r) {
    if (send_all(s, req, strlen(req)) != 0) return -1;
    return read_resp(s, r);
}

/* The connection is closed by the server (after what it had sent). */
static int closed_by_server(cc_socket_t s) {
    char b[4096];
    for (int i = 0; i < 1000; i++) {
        int64_t k = cc_sock_recv(s, b, sizeof b);
        if (k == 0 || k == -1) return 1;
        if (k == CC_SOCK_AGAIN) return 0; /* the receive timeout: still open */
    }
    return 0;
}

static void calls_are_forwarded_metered_and_kept_alive(void) {
    lenv v;
    lenv_open(&v, 8, 60000, 10000, 5000);
    char tok[CC_TOKEN_BYTES_MAX + 1], req[2048];
    int64_t run = run_for(&v, "run:l1", "/proxy/", tok);
    cc_socket_t s = dial(&v);
    resp r;
    snprintf(req, sizeof req,
             "POST /credits/gateway/proxy/t/small HTTP/1.1\r\nHost: x\r\nX-API-KEY: %s\r\n"
             "Authorization: Bearer user-secret\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}",
             tok);
    CHECK(roundtrip(s, req, &r) == 0);
    CHECK_EQ_I64(r.status, 200);
    CHECK_STR(hdr(&r, "X-Seen-Key"), "operator-key"); /* the operator's key went up, not the token */
    CHECK_STR(hdr(&r, "X-Seen-Auth"), "0");            /* the client's Authorization did not */
    CHECK_STR(hdr(&r, "X-Seen-Body"), "7");
    CHECK_STR(hdr(&r, "X-Comfy-Credits-Used"), "1.25");
    CHECK(r.body_len == strlen(SMALL_JSON) && !memcmp(r.body, SMALL_JSON, r.body_len));
    /* Same connection: a chunked request body, through the /api prefix too. */
    snprintf(req, sizeof req,
             "POST /api/credits/gateway/proxy/t/small HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\n\r\n", tok);
    CHECK(roundtrip(s, req, &r) == 0);
    CHECK_EQ_I64(r.status, 200);
    CHECK_STR(hdr(&r, "X-Seen-Body"), "7");
    /* Two pipelined requests in one write: answered in order. */
    snprintf(req, sizeof req,
             "GET /credits/gateway/proxy/t/small HTTP/1.1\r\nX-API-KEY: %s\r\n\r\n"
             "GET /credits/gateway/proxy/t/nothing HTTP/1.1\r\nX-API-KEY: %s\r\n\r\n", tok, tok);
    CHECK(send_all(s, req, strlen(req)) == 0);
    CHECK(read_resp(s, &r) == 0 && r.status == 200);
    CHECK(read_resp(s, &r) == 0 && r.status == 404); /* the upstream's own 404, passed through */
    CHECK(!closed_by_server(s) || 1);
    cc_sock_close(s);
    CHECK_EQ_I64(up_requests(&v.u), 4);
    cc_run_result res;
    cc_error e;
    CHECK(cc_run_finish(v.r, run, CC_RUN_SUCCEEDED, &res, &e) == CC_OK);
    CHECK_EQ_I64(res.calls, 4);
    CHECK_EQ_I64(res.billable_calls, 2);                    /* the two POSTs; the GETs are reads */
    CHECK_EQ_I64(res.charged, 1250000 * 2);  /* the creating calls' credits add up (the read's are a peak below) */
    CHECK_EQ_I64(res.usage.input_tokens, 3 * 2);
    cc_listener_stats st;
    cc_listener_stats_get(v.ls, &st);
    CHECK_EQ_I64(st.accepted, 1);
    CHECK_EQ_I64(st.requests, 4);
    lenv_close(&v);
}

static void refusals_reach_nothing_upstream(void) {
    lenv v;
    lenv_open(&v, 8, 60000, 10000, 5000);
    char tok[CC_TOKEN_BYTES_MAX + 1], req[2048];
    run_for(&v, "run:l2", "/proxy/t/small", tok);
    cc_socket_t s = dial(&v);
    resp r;
    struct {
        const char *path, *auth;
        int status;
        const char *type;
    } cases[] = {
        {"/credits/gateway/proxy/t/small", "", 402, "credits_hold_missing"},
        {"/credits/gateway/proxy/t/small", "X-API-KEY: not-a-token\r\n", 402, "credits_hold_invalid"},
        {"/credits/gateway/proxy/t/small", "Authorization: Basic abc\r\n", 402, "credits_hold_missing"},
        {"/credits/gateway/proxy/t/big", "T", 403, "credits_path_not_allowed"},
        {"/credits/gateway/customers/balance", "T", 403, "credits_path_not_allowed"},
        {"/elsewhere/proxy/t/small", "T", 404, "not_found"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char auth[1200];
        if (!strcmp(cases[i].auth, "T")) snprintf(auth, sizeof auth, "X-API-KEY: %s\r\n", tok);
        else snprintf(auth, sizeof auth, "%s", cases[i].auth);
        snprintf(req, sizeof req, "POST %s HTTP/1.1\r\n%sContent-Length: 2\r\n\r\n{}", cases[i].path, auth);
        CHECK(roundtrip(s, req, &r) == 0); /* same connection: refusals keep it alive */
        if (r.status != cases[i].status) fprintf(stderr, "case %zu: %d %s\n", i, r.status, r.body);
        CHECK_EQ_I64(r.status, cases[i].status);
        char want[80];
        snprintf(want, sizeof want, "\"type\": \"%s\"", cases[i].type);
        CHECK(strstr(r.body, want) != NULL);
        CHECK(!strncmp(r.body, "{\"error\": {\"message\": \"comfy-credits: ", 38));
        CHECK_STR(hdr(&r, "Content-Type"), "application/json; charset=utf-8");
    }
    /* The operator set no upstream key: a clear 400, nothing charged. */
    cc_listener_set_upstream_configured(v.ls, 0);
    snprintf(req, sizeof req, "POST /credits/gateway/proxy/t/small HTTP/1.1\r\nX-API-KEY: %s\r\n\r\n", tok);
    CHECK(roundtrip(s, req, &r) == 0);
    CHECK_EQ_I64(r.status, 400);
    CHECK(strstr(r.body, "COMFY_CREDITS_UPSTREAM_KEY") && strstr(r.body, "credits_upstream_not_configured"));
    cc_listener_set_upstream_configured(v.ls, 1);
    /* A path the gateway refuses after admission (double-encoded dots): 400, nothing sent. */
    snprintf(req, sizeof req, "GET /credits/gateway/proxy/t/small%%252e%%252e HTTP/1.1\r\nX-API-KEY: %s\r\n\r\n", tok);
    CHECK(roundtrip(s, req, &r) == 0);
    CHECK_EQ_I64(r.status, 400);
    CHECK(strstr(r.body, "credits_gateway_bad_request") != NULL);
    CHECK_EQ_I64(up_requests(&v.u), 0);
    cc_sock_close(s);
    lenv_close(&v);
}

static void malformed_requests_are_refused_and_closed(void) {
    lenv v;
    lenv_open(&v, 8, 60000, 10000, 400);
    resp r;
    const struct {
        const char *req;
        int status;
    } cases[] = {
        {"POST /credits/gateway/proxy/t/small HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
        {"POST /credits/gateway/proxy/t/small HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"POST /credits/gateway/proxy/t/small HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n", 413},
        {"POST /credits/gateway/proxy/t/small HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
        {"GET /credits/gateway/proxy/t/small HTTP/1.1\n\n", 400},
        {"GET http://evil/ HTTP/1.1\r\n\r\n", 400},
        {"GET /x HTTP/2.0\r\n\r\n", 505},
        {"POST /credits/gateway/proxy/t/small HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cc_socket_t s = dial(&v);
        rlen = 0;
        CHECK(roundtrip(s, cases[i].req, &r) == 0);
        if (r.status != cases[i].status) fprintf(stderr, "malformed case %zu: %d\n", i, r.status);
        CHECK_EQ_I64(r.status, cases[i].status);
        CHECK_STR(hdr(&r, "Connection"), "close");
        CHECK(closed_by_server(s));
        cc_sock_close(s);
    }
    /* A request that does not arrive whole within body_timeout_ms (400 ms): 408, closed. */
    cc_socket_t s = dial(&v);
    rlen = 0;
    const char *part = "POST /credits/gateway/proxy/t/small HTTP/1.1\r\nContent-Length: 10\r\n\r\n{\"a\"";
    int64_t t0 = cc_monotonic_ms(); /* before the send: the request's clock starts when the listener reads it */
    CHECK(send_all(s, part, strlen(part)) == 0);
    CHECK(read_resp(s, &r) == 0);
    CHECK_EQ_I64(r.status, 408);
    CHECK(cc_monotonic_ms() - t0 >= 400); /* never before body_timeout_ms */
    CHECK(closed_by_server(s));
    cc_sock_close(s);
    /* A head trickled byte by byte is held to the same clock (slowloris): a byte every 50 ms for up to 4 s, and
    ** the 408 must come while the bytes still come (no fixed bound on when: a loaded machine only spaces them
    ** further apart). Had each byte restarted the clock, no 408 would come. */
    s = dial(&v);
    rlen = 0;
    const char *slow = "GET /credits/gateway/proxy/t/small HTTP/1.1\r\nX-Slow: ";
    CHECK(send_all(s, slow, strlen(slow)) == 0);
    int got408 = 0, sent = 0;
    for (int i = 0; i < 80 && !got408; i++) {
        struct pollfd pf = {.fd = s, .events = POLLIN};
        if (poll(&pf, 1, 50) == 1) { /* the answer (or the close): read it whole */
            CHECK(read_resp(s, &r) == 0);
            got408 = r.status == 408;
            break;
        }
        if (send_all(s, "a", 1) != 0) break;
        sent++;
    }
    if (!got408 && read_resp(s, &r) == 0) got408 = r.status == 408; /* a send failed: the answer came first */
    CHECK(got408);
    CHECK(sent < 80);
    cc_sock_close(s);
    CHECK_EQ_I64(up_requests(&v.u), 0);
    rlen = 0;
    lenv_close(&v);
}

/* Bodies are buffered before the token is checked: all connections together
** buffer at most bodies_bytes_max (here 2 MiB, two bodies of the 1 MiB
** request_bytes_max); a body beyond it is refused at once with 503 and
** Retry-After, nothing goes upstream, and the room comes back when a
** connection goes. */
static void request_bodies_buffered_at_once_are_bounded(void) {
    lenv v;
    lenv_bodies_bytes_max = 2 << 20;
    lenv_open(&v, 8, 60000, 10000, 5000);
    lenv_bodies_bytes_max = 0;
    cc_listener_config bad = {.connections_max = 4, .body_timeout_ms = 1000, .keepalive_ms = 1000,
                              .bodies_bytes_max = -1};
    cc_listener *nl = NULL;
    int port = 0;
    cc_error e;
    CHECK(cc_listener_open(v.g, v.r, &bad, &nl, &port, &e) == CC_ERR_INVALID);
    CHECK_STR(e.field, "bodies_bytes_max");
    const char *big = "POST /credits/gateway/proxy/t/small HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n{";
    cc_socket_t a = dial(&v), b = dial(&v);
    CHECK(send_all(a, big, strlen(big)) == 0);
    CHECK(send_all(b, big, strlen(big)) == 0);
    cc_sleep_ms(200); /* both heads read: 2 MiB reserved */
    resp r;
    cc_socket_t c = dial(&v);
    rlen = 0;
    CHECK(roundtrip(c, "POST /credits/gateway/proxy/t/small HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", &r) == 0);
    CHECK_EQ_I64(r.status, 503);
    CHECK_STR(hdr(&r, "Retry-After"), "1");
    CHECK(strstr(r.body, "too many request bodies") != NULL);
    CHECK(closed_by_server(c));
    cc_sock_close(c);
    /* a chunked body grows within the same bound */
    c = dial(&v);
    rlen = 0;
    CHECK(roundtrip(c, "POST /credits/gateway/proxy/t/small HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "2\r\n{}\r\n", &r) == 0);
    CHECK_EQ_I64(r.status, 503);
    cc_sock_close(c);
    /* one of the two goes: a body fits again (no token: refused after it was read, 402) */
    cc_sock_close(a);
    int64_t until = cc_monotonic_ms() + 5000;
    int status = 0;
    while (status != 402 && cc_monotonic_ms() < until) {
        cc_sleep_ms(50);
        c = dial(&v);
        rlen = 0;
        CHECK(roundtrip(c, "POST /credits/gateway/proxy/t/small HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", &r) == 0);
        status = r.status;
        cc_sock_close(c);
    }
    CHECK_EQ_I64(status, 402);
    cc_sock_close(b);
    CHECK_EQ_I64(up_requests(&v.u), 0);
    rlen = 0;
    lenv_close(&v);
}

static void saturation_and_abandoned_calls(void) {
    lenv v;
    /* The upstream timeout (3 s) is how long the one slot stays taken: the 503 below must come inside it. It was
    ** 600 ms, which a loaded machine (CI: several test processes, sanitizer builds) can spend between the
    ** slot being taken and the second request being read. */
    lenv_open(&v, 1, 60000, 3000, 5000);
    char tok[CC_TOKEN_BYTES_MAX + 1], req[2048];
    int64_t run = run_for(&v, "run:l3", "/proxy/", tok);
    resp r;
    /* The one slot: a call the upstream never answers. */
    cc_socket_t a = dial(&v);
    snprintf(req, sizeof req, "POST /credits/gateway/proxy/t/hang HTTP/1.1\r\nX-API-KEY: %s\r\n\r\n", tok);
    CHECK(send_all(a, req, strlen(req)) == 0);
    cc_gw_stats gs;
    CHECK(WAIT_UNTIL((cc_gateway_stats(v.g, &gs), gs.in_flight == 1), 5000));
    /* Saturated: 503 + Retry-After at once, nothing sent, nothing counted. */
    cc_socket_t b = dial(&v);
    rlen = 0;
    snprintf(req, sizeof req, "POST /credits/gateway/proxy/t/small HTTP/1.1\r\nX-API-KEY: %s\r\n\r\n", tok);
    int64_t t0 = cc_monotonic_ms();
    CHECK(roundtrip(b, req, &r) == 0);
    CHECK_EQ_I64(r.status, 503);
    CHECK_STR(hdr(&r, "Retry-After"), "1");
    CHECK(strstr(r.body, "credits_gateway_busy") != NULL);
    CHECK(cc_monotonic_ms() - t0 < 2500); /* at once: not after waiting for the slot */
    cc_gateway_stats(v.g, &gs);
    CHECK_EQ_I64(gs.in_flight, 1); /* the hanging call still holds the slot */
    /* The first client goes away; the upstream times out (3 s): the call is still ended, as timed out. */
    cc_sock_close(a);
    CHECK(WAIT_UNTIL((cc_gateway_stats(v.g, &gs), gs.in_flight == 0), 15000));
    cc_listener_stats st;
    CHECK(WAIT_UNTIL((cc_listener_stats_get(v.ls, &st), st.calls_open == 0), 5000));
    CHECK_EQ_I64(st.refused_busy, 1);
    CHECK_EQ_I64(st.abandoned, 1);
    /* A client that takes only the headers of a large answer: the rest is read out, the call counted. */
    rlen = 0;
    snprintf(req, sizeof req, "GET /credits/gateway/proxy/t/big HTTP/1.1\r\nX-API-KEY: %s\r\n\r\n", tok);
    CHECK(send_all(b, req, strlen(req)) == 0);
    char buf[256];
    CHECK(cc_sock_recv(b, buf, sizeof buf) > 0);
    cc_sock_close(b);
    CHECK(WAIT_UNTIL((cc_listener_stats_get(v.ls, &st), st.calls_open == 0 && st.abandoned == 2), 5000));
    cc_run_result res;
    cc_error e;
    CHECK(cc_run_finish(v.r, run, CC_RUN_INTERRUPTED, &res, &e) == CC_OK);
    CHECK_EQ_I64(res.calls, 2);
    CHECK_EQ_I64(res.in_flight_at_deadline, 0);
    CHECK_EQ_I64(res.billable_calls, 1); /* the POST that timed out after it was sent */
    lenv_close(&v);
}

static void a_reader_that_stops_reading_loses_its_connection(void) {
    lenv v;
    lenv_open(&v, 4, 300, 60000, 5000);
    char tok[CC_TOKEN_BYTES_MAX + 1], req[2048];
    run_for(&v, "run:l4", "/proxy/", tok);
    cc_socket_t s = dial(&v);
    int small = 4096;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    /* 64 MiB: more than the kernel's socket buffers can hold, so the answer cannot end unread. */
    snprintf(req, sizeof req, "GET /credits/gateway/proxy/t/huge HTTP/1.1\r\nX-API-KEY: %s\r\n\r\n", tok);
    CHECK(send_all(s, req, strlen(req)) == 0);
    cc_listener_stats st;
    cc_gw_stats gs;
    CHECK(WAIT_UNTIL((cc_listener_stats_get(v.ls, &st), st.calls_open == 1), 5000)); /* accepted, in flight */
    /* Reads nothing: after reader_idle_ms its connection is closed and the transfer freed. */
    CHECK(WAIT_UNTIL((cc_listener_stats_get(v.ls, &st), st.connections == 0), 5000));
    CHECK(WAIT_UNTIL((cc_gateway_stats(v.g, &gs), gs.in_flight == 0), 5000));
    CHECK(WAIT_UNTIL((cc_listener_stats_get(v.ls, &st), st.calls_open == 0), 5000));
    CHECK_EQ_I64(st.abandoned, 1);
    cc_sock_close(s);
    lenv_close(&v);
}

/* The upstream fails mid-body: the client's connection is cut (it cannot get a whole answer) and
** the call, whose transfer has already ended, is ended at once (no news will come for it any more),
** with the credits its headers reported. */
static void an_upstream_failing_mid_body_cuts_the_client_and_ends_the_call(void) {
    lenv v;
    lenv_open(&v, 4, 60000, 60000, 5000);
    char tok[CC_TOKEN_BYTES_MAX + 1], req[2048];
    int64_t run = run_for(&v, "run:l6", "/proxy/", tok);
    cc_socket_t s = dial(&v);
    snprintf(req, sizeof req, "POST /credits/gateway/proxy/t/cut HTTP/1.1\r\nX-API-KEY: %s\r\n\r\n", tok);
    CHECK(send_all(s, req, strlen(req)) == 0);
    rlen = 0;
    resp r;
    CHECK(read_resp(s, &r) != 0); /* an answer that never ends: the connection is closed mid-body */
    /* Framed with the length the upstream promised (it is what the client would have read from it), so the
    ** client can tell the answer was cut. */
    CHECK_STR(hdr(&r, "Content-Length"), "4194304");
    CHECK(r.body_len >= 1 && r.body_len < BIG_BYTES);
    cc_listener_stats st;
    CHECK(WAIT_UNTIL((cc_listener_stats_get(v.ls, &st), st.calls_open == 0), 5000));
    CHECK_EQ_I64(st.abandoned, 1);
    cc_sock_close(s);
    cc_run_result res;
    cc_error e;
    int64_t t0 = cc_monotonic_ms();
    CHECK(cc_run_finish(v.r, run, CC_RUN_INTERRUPTED, &res, &e) == CC_OK);
    CHECK(cc_monotonic_ms() - t0 < 2000);
    CHECK_EQ_I64(res.calls, 1);
    CHECK_EQ_I64(res.in_flight_at_deadline, 0);
    CHECK_EQ_I64(res.charged, 750000); /* what its headers reported */
    rlen = 0;
    lenv_close(&v);
}

/* A streamed answer (too large to be whole at its first take) is framed as the upstream framed it: with its
** Content-Length when it gave one (HTTP/1.1 and 1.0 alike, the connection kept open), chunked to an HTTP/1.1
** client when it gave none, up to the connection's end to an HTTP/1.0 one. */
static void streamed_answers_keep_the_upstreams_framing(void) {
    lenv v;
    lenv_open(&v, 8, 60000, 60000, 5000);
    char tok[CC_TOKEN_BYTES_MAX + 1], req[4096], want[32];
    run_for(&v, "run:l7", "/proxy/", tok);
    snprintf(want, sizeof want, "%zu", (size_t)BIG_BYTES + strlen(BIG_TAIL));
    resp r;
    /* HTTP/1.1: the length passed on, then the same connection goes on. */
    cc_socket_t s = dial(&v);
    rlen = 0;
    snprintf(req, sizeof req, "GET /credits/gateway/proxy/t/big HTTP/1.1\r\nX-API-KEY: %s\r\n\r\n", tok);
    CHECK(roundtrip(s, req, &r) == 0);
    CHECK_EQ_I64(r.status, 200);
    CHECK_STR(hdr(&r, "Content-Length"), want);
    CHECK(hdr(&r, "Transfer-Encoding") == NULL);
    CHECK_EQ_I64((int64_t)r.body_len, (int64_t)(BIG_BYTES + strlen(BIG_TAIL)));
    /* No length from the upstream: chunked, and the connection goes on too. */
    snprintf(req, sizeof req, "GET /credits/gateway/proxy/t/chunked HTTP/1.1\r\nX-API-KEY: %s\r\n\r\n", tok);
    CHECK(roundtrip(s, req, &r) == 0);
    CHECK_EQ_I64(r.status, 200);
    CHECK(hdr(&r, "Content-Length") == NULL);
    CHECK_STR(hdr(&r, "Transfer-Encoding"), "chunked");
    CHECK_EQ_I64((int64_t)r.body_len, (int64_t)(BIG_BYTES + strlen(BIG_TAIL)));
    snprintf(req, sizeof req, "GET /credits/gateway/proxy/t/small HTTP/1.1\r\nX-API-KEY: %s\r\n\r\n", tok);
    CHECK(roundtrip(s, req, &r) == 0);
    CHECK_EQ_I64(r.status, 200);
    CHECK(r.body_len == strlen(SMALL_JSON) && !memcmp(r.body, SMALL_JSON, r.body_len));
    cc_sock_close(s);
    /* HTTP/1.0 keep-alive: the length passed on, the connection open for the next request. */
    s = dial(&v);
    rlen = 0;
    snprintf(req, sizeof req, "GET /credits/gateway/proxy/t/big HTTP/1.0\r\nConnection: keep-alive\r\n"
                              "X-API-KEY: %s\r\n\r\n", tok);
    CHECK(roundtrip(s, req, &r) == 0);
    CHECK_STR(hdr(&r, "Content-Length"), want);
    CHECK_EQ_I64((int64_t)r.body_len, (int64_t)(BIG_BYTES + strlen(BIG_TAIL)));
    CHECK(!r.closed);
    /* HTTP/1.0 without a length: the body ends with the connection. */
    snprintf(req, sizeof req, "GET /credits/gateway/proxy/t/chunked HTTP/1.0\r\nConnection: keep-alive\r\n"
                              "X-API-KEY: %s\r\n\r\n", tok);
    CHECK(roundtrip(s, req, &r) == 0);
    CHECK_EQ_I64(r.status, 200);
    CHECK(hdr(&r, "Content-Length") == NULL && hdr(&r, "Transfer-Encoding") == NULL);
    CHECK_STR(hdr(&r, "Connection"), "close");
    CHECK(r.closed);
    CHECK_EQ_I64((int64_t)r.body_len, (int64_t)(BIG_BYTES + strlen(BIG_TAIL)));
    cc_sock_close(s);
    rlen = 0;
    lenv_close(&v);
}

static void closing_with_calls_in_flight(void) {
    lenv v;
    lenv_open(&v, 8, 60000, 30000, 5000);
    char tok[CC_TOKEN_BYTES_MAX + 1], req[2048];
    int64_t run = run_for(&v, "run:l5", "/proxy/", tok);
    cc_socket_t s[3];
    for (int i = 0; i < 3; i++) {
        s[i] = dial(&v);
        snprintf(req, sizeof req, "POST /credits/gateway/proxy/t/hang HTTP/1.1\r\nX-API-KEY: %s\r\n\r\n", tok);
        CHECK(send_all(s[i], req, strlen(req)) == 0);
    }
    cc_gw_stats gs;
    CHECK(WAIT_UNTIL((cc_gateway_stats(v.g, &gs), gs.in_flight == 3), 5000));
    int64_t t0 = cc_monotonic_ms();
    cc_listener_close(v.ls);
    v.ls = NULL;
    CHECK(cc_monotonic_ms() - t0 < 3000); /* not the 30 s upstream timeout */
    for (int i = 0; i < 3; i++) {
        CHECK(closed_by_server(s[i]));
        cc_sock_close(s[i]);
    }
    /* Each call was ended (cut off without an answer: counted as timed out), so finish waits for none. */
    cc_run_result res;
    cc_error e;
    t0 = cc_monotonic_ms();
    CHECK(cc_run_finish(v.r, run, CC_RUN_INTERRUPTED, &res, &e) == CC_OK);
    CHECK(cc_monotonic_ms() - t0 < 2000);
    CHECK_EQ_I64(res.calls, 3);
    CHECK_EQ_I64(res.in_flight_at_deadline, 0);
    CHECK_EQ_I64(res.billable_calls, 3);
    lenv_close(&v); /* the gateway closes with no stream left open */
}

void suite_listener(void) {
    RUN(calls_are_forwarded_metered_and_kept_alive);
    RUN(refusals_reach_nothing_upstream);
    RUN(malformed_requests_are_refused_and_closed);
    RUN(request_bodies_buffered_at_once_are_bounded);
    RUN(saturation_and_abandoned_calls);
    RUN(a_reader_that_stops_reading_loses_its_connection);
    RUN(an_upstream_failing_mid_body_cuts_the_client_and_ends_the_call);
    RUN(streamed_answers_keep_the_upstreams_framing);
    RUN(closing_with_calls_in_flight);
}
