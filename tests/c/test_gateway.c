/*
** test_gateway.c — the gateway's upstream client (src/gateway.c) against a
** tiny HTTP/1.1 upstream on loopback that this file runs in its own threads.
**
** The upstream (tests/c/up_helper.h) answers by path and counts requests.
** This suite is not part of the Windows .exe (it needs libcurl); the gateway
** itself only uses cc_platform.h.
*/
#include "ctest.h"
#include "gateway.h"
#include "up_helper.h"

#include <stdlib.h>
#if defined(__linux__)
#include <dirent.h>
#include <sched.h>
#endif

/* ------------------------------------------------------------ helpers */

typedef struct notes {
    cc_mutex_t mu;
    int calls;
} notes;

static void on_notify(void *ud) {
    notes *n = ud;
    cc_mutex_lock(&n->mu);
    n->calls++;
    cc_mutex_unlock(&n->mu);
}

static int notify_calls(notes *n) {
    cc_mutex_lock(&n->mu);
    int c = n->calls;
    cc_mutex_unlock(&n->mu);
    return c;
}

static cc_gateway *gw_open(upstream *u, int handles_max, int reader_idle_ms, int timeout_ms, notes *n) {
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d/", u->port);
    cc_gateway_config cfg = {base, "op-key-123", 2000, timeout_ms, reader_idle_ms, 1 << 20, INT64_C(1) << 30,
                             handles_max, CC_GW_IO_BATCH};
    cc_gateway *g = NULL;
    cc_error err = {0};
    cc_rc rc = cc_gateway_open(&cfg, n ? on_notify : NULL, n, &g, &err);
    CHECK_EQ_I64(rc, CC_OK);
    return g;
}

static cc_gw_request req_for(const char *path) {
    cc_gw_request r;
    memset(&r, 0, sizeof r);
    r.method = "POST";
    r.path = path;
    r.content_type = "application/json";
    r.body = "{\"prompt\":\"a cat\"}";
    r.body_len = strlen(r.body);
    return r;
}

static const char *header(cc_gw_stream *s, const char *name) {
    size_t k = strlen(name);
    for (int i = 0; i < cc_gw_header_count(s); i++) {
        const char *h = cc_gw_header(s, i);
        if (cc_strncasecmp(h, name, k) == 0 && h[k] == ':') return h + k + 2;
    }
    return NULL;
}

static int64_t in_flight(cc_gateway *g) {
    cc_gw_stats st;
    cc_gateway_stats(g, &st);
    return st.in_flight;
}

/* Polls cond() for at most ms; 1 when it held. */
#define WAIT_UNTIL(cond, ms)                                                   \
    ({                                                                         \
        int64_t wu_end = cc_monotonic_ms() + (ms);                             \
        int wu_ok;                                                             \
        while (!(wu_ok = (cond)) && cc_monotonic_ms() < wu_end) cc_sleep_ms(5); \
        wu_ok;                                                                 \
    })

/* ------------------------------------------------------------ tests */

static void test_gateway_small_call_blocking_and_nonblocking(void) {
    upstream u;
    CHECK(up_start(&u) == 0);
    notes nt = {.calls = 0};
    cc_mutex_init(&nt.mu);
    cc_gateway *g = gw_open(&u, 8, 5000, 10000, &nt);
    cc_error err = {0};

    /* Blocking form: headers, then the body, then usage from headers and body. */
    cc_gw_request r = req_for("/proxy/t/small");
    cc_gw_stream *s = NULL;
    CHECK_EQ_I64(cc_gw_start(g, &r, &s, &err), CC_OK);
    CHECK_EQ_I64(cc_gw_status(s), 200);
    CHECK_STR(header(s, "X-Seen-Key"), "op-key-123"); /* the operator's key went upstream */
    CHECK_STR(header(s, "X-Seen-Body"), "18");
    CHECK_STR(header(s, "X-Seen-Auth"), "0");
    CHECK(header(s, "Content-Length") == NULL); /* hop-by-hop and length are left out */
    CHECK_EQ_I64(cc_gw_content_length(s), (int64_t)strlen(SMALL_JSON)); /* the length, for a listener to pass on */
    char buf[4096];
    size_t got = 0, n;
    do {
        CHECK_EQ_I64(cc_gw_read(s, buf + got, sizeof buf - got, &n, &err), CC_OK);
        got += n;
    } while (n > 0 && got < sizeof buf);
    CHECK_EQ_I64(got, strlen(SMALL_JSON));
    CHECK(memcmp(buf, SMALL_JSON, got) == 0);
    CHECK(cc_gw_finished(s));
    cc_usage us;
    cc_gw_usage(s, &us);
    CHECK_EQ_I64(us.credits_used_micro, 1250000);
    CHECK_EQ_I64(us.input_tokens, 3);
    CHECK_EQ_I64(us.output_tokens, 5);
    cc_gw_close(s);

    /* Non-blocking form, the way the event loop drives it: submit, not ready,
    ** wait for notify, the id comes out of cc_gw_ready, then take. */
    s = NULL;
    CHECK_EQ_I64(cc_gw_submit(g, &r, &s, &err), CC_OK);
    int ready = 0;
    CHECK_EQ_I64(cc_gw_headers_ready(s, &ready, &err), CC_OK);
    uint64_t ids[8];
    size_t k = 0;
    if (!ready) {
        CHECK(WAIT_UNTIL(notify_calls(&nt) > 0, 5000));
        k = cc_gw_ready(g, ids, 8);
        CHECK_EQ_I64(k, 1);
        CHECK(ids[0] == cc_gw_id(s));
        CHECK_EQ_I64(cc_gw_headers_ready(s, &ready, &err), CC_OK);
    }
    CHECK(ready);
    CHECK_EQ_I64(cc_gw_status(s), 200);
    got = 0;
    for (int turns = 0; turns < 1000; turns++) {
        int again = 0;
        CHECK_EQ_I64(cc_gw_take(s, buf + got, sizeof buf - got, &n, &again, &err), CC_OK);
        got += n;
        if (n == 0 && !again) break;
        if (n == 0) CHECK(WAIT_UNTIL(cc_gw_ready(g, ids, 8) > 0, 5000));
    }
    CHECK_EQ_I64(got, strlen(SMALL_JSON));
    CHECK(cc_gw_finished(s));
    cc_gw_close(s);
    CHECK(WAIT_UNTIL(in_flight(g) == 0, 5000));
    cc_gw_stats st;
    cc_gateway_stats(g, &st);
    CHECK_EQ_I64(st.started, 2);
    CHECK_EQ_I64(up_requests(&u), 2);

    /* Bad input is refused before anything is sent (and takes no slot). */
    cc_gw_request bad = req_for("/customers/me"); /* not an API-node path */
    CHECK_EQ_I64(cc_gw_submit(g, &bad, &s, &err), CC_ERR_INVALID);
    CHECK(s == NULL);
    bad = req_for("/proxy/%2e%2e/customers");
    CHECK_EQ_I64(cc_gw_submit(g, &bad, &s, &err), CC_ERR_INVALID);
    bad = req_for("/proxy/t/small");
    bad.method = "TRACE";
    CHECK_EQ_I64(cc_gw_submit(g, &bad, &s, &err), CC_ERR_INVALID);
    bad = req_for("/proxy/t/small");
    bad.idempotency_key = "a\r\nX-API-KEY: stolen";
    CHECK_EQ_I64(cc_gw_submit(g, &bad, &s, &err), CC_ERR_INVALID);
    CHECK_EQ_I64(in_flight(g), 0);
    CHECK_EQ_I64(up_requests(&u), 2);
    /* No length when the upstream streams chunked, whatever the body. */
    cc_gw_request rc = req_for("/proxy/t/chunked");
    CHECK_EQ_I64(cc_gw_start(g, &rc, &s, &err), CC_OK);
    CHECK_EQ_I64(cc_gw_status(s), 200);
    CHECK_EQ_I64(cc_gw_content_length(s), -1);
    cc_gw_close(s);
    /* A CR inside an upstream's header value never reaches an answer's head: a space instead. */
    cc_gw_request rcr = req_for("/proxy/t/cr");
    CHECK_EQ_I64(cc_gw_start(g, &rcr, &s, &err), CC_OK);
    CHECK_EQ_I64(cc_gw_status(s), 200);
    CHECK_STR(header(s, "X-Odd"), "a b");
    CHECK_STR(header(s, "X-Plain"), "c");
    cc_gw_close(s);

    cc_gateway_close(g);
    up_stop(&u);
    cc_mutex_destroy(&nt.mu);
}

static void test_gateway_saturated_refuses_at_once(void) {
    upstream u;
    CHECK(up_start(&u) == 0);
    enum { H = 4 };
    cc_gateway *g = gw_open(&u, H, 5000, 30000, NULL);
    cc_error err = {0};
    cc_gw_request r = req_for("/proxy/t/hang");
    cc_gw_stream *s[H] = {0};
    for (int i = 0; i < H; i++) CHECK_EQ_I64(cc_gw_submit(g, &r, &s[i], &err), CC_OK);
    CHECK(WAIT_UNTIL(up_requests(&u) == H, 5000)); /* all four are upstream, hanging */
    CHECK_EQ_I64(in_flight(g), H);

    /* The fifth call is refused AT ONCE with "busy", and nothing reaches the upstream. */
    cc_gw_request small = req_for("/proxy/t/small");
    cc_gw_stream *x = NULL;
    int64_t t0 = cc_monotonic_ms();
    CHECK_EQ_I64(cc_gw_submit(g, &small, &x, &err), CC_ERR_LIMIT);
    CHECK_STR(err.field, "busy");
    CHECK(cc_monotonic_ms() - t0 < 1000); /* at once: a queued call would wait for the 30 s timeout */
    CHECK(x == NULL);
    /* The blocking form refuses at once as well (it never queues). */
    t0 = cc_monotonic_ms();
    CHECK_EQ_I64(cc_gw_start(g, &small, &x, &err), CC_ERR_LIMIT);
    CHECK(cc_monotonic_ms() - t0 < 1000); /* at once: a queued call would wait for the 30 s timeout */
    cc_gw_stats st;
    cc_gateway_stats(g, &st);
    CHECK_EQ_I64(st.refused_busy, 2);
    CHECK_EQ_I64(st.started, H);
    cc_sleep_ms(50);
    CHECK_EQ_I64(up_requests(&u), H);

    /* Closing one hanging call frees its slot: a small call then goes through. */
    cc_gw_close(s[0]);
    CHECK(WAIT_UNTIL(in_flight(g) == H - 1, 5000));
    CHECK_EQ_I64(cc_gw_start(g, &small, &x, &err), CC_OK);
    CHECK_EQ_I64(cc_gw_status(x), 200);
    cc_gw_close(x);
    for (int i = 1; i < H; i++) cc_gw_close(s[i]);
    CHECK(WAIT_UNTIL(in_flight(g) == 0, 5000));
    cc_gateway_close(g);
    up_stop(&u);
}

static void test_gateway_idle_reader_loses_its_slot(void) {
    upstream u;
    CHECK(up_start(&u) == 0);
    cc_gateway *g = gw_open(&u, 2, 200, 30000, NULL);
    cc_error err = {0};
    cc_gw_request r = req_for("/proxy/t/big");
    cc_gw_stream *s = NULL;
    int64_t t0 = cc_monotonic_ms();
    CHECK_EQ_I64(cc_gw_start(g, &r, &s, &err), CC_OK);
    CHECK_EQ_I64(cc_gw_status(s), 200);
    /* The reader takes nothing: the buffer fills (256 KiB), the transfer
    ** pauses, and after reader_idle_ms (200) the I/O thread aborts it. */
    CHECK(WAIT_UNTIL(in_flight(g) == 0, 5000));
    CHECK(cc_monotonic_ms() - t0 >= 195); /* never before the idle time */
    cc_gw_stats st;
    cc_gateway_stats(g, &st);
    CHECK_EQ_I64(st.aborted_idle, 1);
    /* What was buffered can still be read; then the reader learns why it ended. */
    char buf[65536];
    size_t n, total = 0;
    cc_rc rc;
    while ((rc = cc_gw_read(s, buf, sizeof buf, &n, &err)) == CC_OK && n > 0) total += n;
    CHECK_EQ_I64(rc, CC_ERR_STORAGE);
    CHECK_STR(err.field, "idle");
    CHECK(total > 0 && total <= CC_GW_BUFFER_BYTES_MAX);
    CHECK(!cc_gw_finished(s));
    int timed_out = 1;
    CHECK(cc_gw_ended(s, &timed_out));
    CHECK(!timed_out);
    cc_gw_close(s);

    cc_gateway_close(g);

    /* A reader that keeps reading is never aborted, however large the answer and however long it takes in all:
    ** it pauses 7 times for 250 ms (the buffer full each time), 1.75 s in all, longer than the idle time (1.5 s;
    ** not 200 ms here: a loaded machine can stall a reading thread that long and the abort would then be right). */
    g = gw_open(&u, 2, 1500, 30000, NULL);
    CHECK_EQ_I64(cc_gw_start(g, &r, &s, &err), CC_OK);
    total = 0;
    int pauses = 0;
    while ((rc = cc_gw_read(s, buf, sizeof buf, &n, &err)) == CC_OK && n > 0) {
        total += n;
        if (pauses < 7 && total >= (size_t)(pauses + 1) * 512 * 1024) {
            cc_sleep_ms(250);
            pauses++;
        }
    }
    CHECK_EQ_I64(rc, CC_OK);
    CHECK_EQ_I64(pauses, 7);
    CHECK(total > BIG_BYTES);
    CHECK(cc_gw_finished(s));
    cc_usage us;
    cc_gw_usage(s, &us);
    CHECK_EQ_I64(us.input_tokens, -1); /* not JSON: not captured */
    cc_gw_close(s);
    cc_gateway_stats(g, &st);
    CHECK_EQ_I64(st.aborted_idle, 0);
    cc_gateway_close(g);
    up_stop(&u);
}

static void test_gateway_abandoned_streams_end_and_free_their_slot(void) {
    upstream u;
    CHECK(up_start(&u) == 0);
    notes nt = {.calls = 0};
    cc_mutex_init(&nt.mu);
    cc_gateway *g = gw_open(&u, 4, 60000, 30000, &nt);
    cc_error err = {0};
    char buf[1024];
    size_t n;

    /* 1. Detached after a first chunk: the I/O thread reads the rest and
    ** discards it (no reader, no idle abort), and the end comes out of the
    ** ready list. */
    cc_gw_request r = req_for("/proxy/t/big");
    cc_gw_stream *s = NULL;
    CHECK_EQ_I64(cc_gw_start(g, &r, &s, &err), CC_OK);
    CHECK_EQ_I64(cc_gw_read(s, buf, sizeof buf, &n, &err), CC_OK);
    CHECK(n > 0);
    cc_gw_detach(s);
    int timed_out = 1, ended = cc_gw_ended(s, &timed_out); /* marks it waiting for its end */
    int at_once = ended; /* on a loaded machine the 4 MiB may be read out before this line */
    uint64_t ids[8];
    int seen = 0;
    for (int64_t end = cc_monotonic_ms() + 10000; !ended && cc_monotonic_ms() < end;) {
        size_t k = cc_gw_ready(g, ids, 8);
        for (size_t i = 0; i < k; i++) seen |= ids[i] == cc_gw_id(s);
        if (seen) ended = cc_gw_ended(s, &timed_out);
        else cc_sleep_ms(5);
    }
    CHECK(ended);
    CHECK(seen || at_once);
    CHECK(!timed_out);
    CHECK(cc_gw_finished(s)); /* the whole body arrived (and was discarded) */
    CHECK_EQ_I64(cc_gw_body_bytes(s), BIG_BYTES + (int64_t)strlen(BIG_TAIL));
    CHECK_EQ_I64(in_flight(g), 0);
    cc_gw_close(s);

    /* 2. Closed mid-body: the transfer is cancelled and its slot freed. */
    CHECK_EQ_I64(cc_gw_start(g, &r, &s, &err), CC_OK);
    CHECK_EQ_I64(cc_gw_read(s, buf, sizeof buf, &n, &err), CC_OK);
    cc_gw_close(s);
    CHECK(WAIT_UNTIL(in_flight(g) == 0, 5000));

    /* 3. Closed before the headers (a hanging upstream). */
    cc_gw_request h = req_for("/proxy/t/hang");
    CHECK_EQ_I64(cc_gw_submit(g, &h, &s, &err), CC_OK);
    CHECK(WAIT_UNTIL(in_flight(g) == 1, 5000));
    cc_gw_close(s);
    CHECK(WAIT_UNTIL(in_flight(g) == 0, 5000));

    /* 4. Detached while hanging, then the upstream timeout ends it: the end
    ** (timed out) still comes out of the ready list. */
    cc_gateway_close(g);
    g = gw_open(&u, 4, 60000, 300, &nt);
    CHECK_EQ_I64(cc_gw_submit(g, &h, &s, &err), CC_OK);
    cc_gw_detach(s);
    ended = cc_gw_ended(s, &timed_out);
    seen = 0;
    for (int64_t end = cc_monotonic_ms() + 10000; !ended && cc_monotonic_ms() < end;) {
        size_t k = cc_gw_ready(g, ids, 8);
        for (size_t i = 0; i < k; i++) seen |= ids[i] == cc_gw_id(s);
        if (seen) ended = cc_gw_ended(s, &timed_out);
        else cc_sleep_ms(5);
    }
    CHECK(ended);
    CHECK(timed_out);
    int ready = 1;
    CHECK_EQ_I64(cc_gw_headers_ready(s, &ready, &err), CC_ERR_STORAGE);
    CHECK_STR(err.field, "timeout");
    CHECK_EQ_I64(in_flight(g), 0);
    cc_gw_close(s);
    cc_gateway_close(g);
    up_stop(&u);
    cc_mutex_destroy(&nt.mu);
}

typedef struct reader_arg {
    cc_gateway *g;
    int rc, status;
} reader_arg;

static void *blocked_starter(void *arg) {
    reader_arg *ra = arg;
    cc_gw_request r = req_for("/proxy/t/hang");
    cc_gw_stream *s = NULL;
    cc_error err = {0};
    ra->rc = cc_gw_start(ra->g, &r, &s, &err); /* blocks: the upstream never answers */
    if (s) cc_gw_close(s);
    return NULL;
}

static void test_gateway_clean_shutdown_with_calls_in_flight(void) {
    upstream u;
    CHECK(up_start(&u) == 0);
    enum { N = 12 };
    notes nt = {.calls = 0};
    cc_mutex_init(&nt.mu);
    cc_gateway *g = gw_open(&u, 32, 60000, 30000, &nt);
    cc_error err = {0};
    cc_gw_stream *s[N] = {0};
    cc_gw_request hang = req_for("/proxy/t/hang"), big = req_for("/proxy/t/big"), small = req_for("/proxy/t/small");
    for (int i = 0; i < N; i++) {
        const cc_gw_request *r = i % 3 == 0 ? &hang : i % 3 == 1 ? &big : &small;
        CHECK_EQ_I64(cc_gw_submit(g, r, &s[i], &err), CC_OK);
        int ready;
        (void)cc_gw_headers_ready(s[i], &ready, &err); /* some wait on the ready list */
    }
    CHECK(WAIT_UNTIL(up_requests(&u) >= N, 5000));
    /* Some calls have answers, paused big bodies and hanging ones: close
    ** every stream and the gateway at once, without waiting for the I/O
    ** thread to see the cancels. */
    for (int i = 0; i < N; i++) cc_gw_close(s[i]);
    int64_t t0 = cc_monotonic_ms();
    cc_gateway_close(g);
    CHECK(cc_monotonic_ms() - t0 < 5000); /* not the 30 s transfer timeout */

    /* Submitted right before close, never attached: also cancelled cleanly. */
    g = gw_open(&u, 32, 60000, 30000, NULL);
    for (int i = 0; i < N; i++) CHECK_EQ_I64(cc_gw_submit(g, &big, &s[i], &err), CC_OK);
    for (int i = 0; i < N; i++) cc_gw_close(s[i]);
    cc_gateway_close(g);

    /* A thread blocked in cc_gw_start on a hanging upstream is released by
    ** the transfer timeout, then the gateway closes. */
    g = gw_open(&u, 32, 60000, 300, NULL);
    reader_arg ra = {g, -1, 0};
    cc_thread_t th;
    CHECK(cc_thread_create(&th, blocked_starter, &ra) == 0);
    cc_thread_join(th, NULL);
    CHECK_EQ_I64(ra.rc, CC_ERR_STORAGE);
    CHECK_EQ_I64(in_flight(g), 0);
    cc_gateway_close(g);
    up_stop(&u); /* the upstream saw every connection go away */
    CHECK_EQ_I64(u.open_conns, 0);
    cc_mutex_destroy(&nt.mu);
}

/* The proxy environment is read once, when the gateway opens, the way libcurl
** reads it (http_proxy for an http upstream, no_proxy exempting hosts). */
static void test_gateway_proxy_environment_read_at_open(void) {
    upstream u;
    CHECK(up_start(&u) == 0);
    cc_socket_t l;
    int dead_port = 0, en = 0;
    CHECK(cc_sock_listen_loopback(0, 1, &l, &dead_port, &en) == 0);
    cc_sock_close(l); /* nobody listens there: a proxy that refuses connections */
    char proxy[64];
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", dead_port);
    cc_error err = {0};
    cc_gw_request r = req_for("/proxy/t/small");
    cc_gw_stream *s = NULL;

    setenv("http_proxy", proxy, 1);
    unsetenv("no_proxy");
    unsetenv("NO_PROXY");
    cc_gateway *g = gw_open(&u, 4, 5000, 5000, NULL);
    CHECK_EQ_I64(cc_gw_start(g, &r, &s, &err), CC_ERR_STORAGE); /* through the (dead) proxy */
    CHECK_EQ_I64(up_requests(&u), 0);
    cc_gateway_close(g);

    setenv("no_proxy", "localhost,127.0.0.1", 1); /* the upstream's host is exempt */
    g = gw_open(&u, 4, 5000, 5000, NULL);
    CHECK_EQ_I64(cc_gw_start(g, &r, &s, &err), CC_OK);
    if (s) cc_gw_close(s);
    cc_gateway_close(g);

    unsetenv("http_proxy");
    unsetenv("no_proxy");
    g = gw_open(&u, 4, 5000, 5000, NULL);
    setenv("http_proxy", proxy, 1); /* after the open: not read again per transfer */
    s = NULL;
    CHECK_EQ_I64(cc_gw_start(g, &r, &s, &err), CC_OK);
    if (s) cc_gw_close(s);
    cc_gateway_close(g);
    unsetenv("http_proxy");
    CHECK_EQ_I64(up_requests(&u), 2);
    up_stop(&u);
}

/* One call through g to .../proxy/t/echo<suffix>; the upstream (or proxy) must have seen want_target. */
static void echo_call(cc_gateway *g, const char *method, const char *path, const char *query, size_t body_len,
                      const char *want_target, int want_nth) {
    static char body[4096];
    memset(body, 'b', sizeof body);
    cc_gw_request r = req_for(path);
    r.method = method;
    r.query = query;
    r.body = body;
    r.body_len = body_len;
    cc_error err = {0};
    cc_gw_stream *s = NULL;
    CHECK_EQ_I64(cc_gw_start(g, &r, &s, &err), CC_OK);
    if (!s) {
        fprintf(stderr, "  %s %s: %s\n", method, want_target, err.message);
        return;
    }
    CHECK_EQ_I64(cc_gw_status(s), 200);
    const char *t = header(s, "X-Seen-Target");
    if (!t || strcmp(t, want_target) != 0) fprintf(stderr, "  sent %s, seen %s\n", want_target, t ? t : "(none)");
    CHECK_STR(t, want_target);
    CHECK_STR(header(s, "X-Seen-Accept"), "*/*");
    CHECK_STR(header(s, "X-Seen-Expect"), "0");
    CHECK_STR(header(s, "X-Seen-Key"), "op-key-123");
    char want_body[32];
    snprintf(want_body, sizeof want_body, "%zu", strcmp(method, "GET") ? body_len : 0); /* a GET sends no body */
    CHECK_STR(header(s, "X-Seen-Body"), want_body);
    if (want_nth) {
        char nth[16];
        snprintf(nth, sizeof nth, "%d", want_nth);
        CHECK_STR(header(s, "X-Seen-Nth"), nth);
    }
    char buf[256];
    size_t n;
    while (cc_gw_read(s, buf, sizeof buf, &n, &err) == CC_OK && n > 0) {
    }
    cc_usage us;
    cc_gw_usage(s, &us);
    CHECK_EQ_I64(us.input_tokens, 3);
    cc_gw_close(s);
}

static cc_gateway *gw_open_base(const char *base, int handles_max) {
    cc_gateway_config cfg = {base, "op-key-123", 2000, 10000, 5000, 1 << 20, INT64_C(1) << 30, handles_max,
                             CC_GW_IO_BATCH};
    cc_gateway *g = NULL;
    cc_error err = {0};
    CHECK_EQ_I64(cc_gateway_open(&cfg, NULL, NULL, &g, &err), CC_OK);
    return g;
}

/* Handles and connections are reused from call to call (and libcurl keeps the
** previous URL in a reused handle): every call must still reach its own path
** and query, on every way the gateway names its target: the parsed base with
** a request target of its own (a plain base), the whole URL per call (a base
** with dot segments or percent signs, which libcurl rewrites; a proxy, which
** needs the absolute URL), and a call libcurl retries on a fresh connection
** because the reused one died. */
static void test_gateway_each_call_sends_its_own_target(void) {
    upstream u;
    CHECK(up_start(&u) == 0);
    unsetenv("http_proxy");
    unsetenv("all_proxy");
    unsetenv("ALL_PROXY");
    static const char *const methods[] = {"POST", "GET", "PUT", "DELETE", "PATCH"};
    static const char *const bases[][2] = {
        /* base (after the authority), what the upstream sees before the path */
        {"/", ""},
        {"", ""},
        {"/base/v1", "/base/v1"},
        {"/base/../v1/", "/v1"},     /* libcurl resolves the dot segment: the whole URL per call */
        {"/b%41se", "/b%41se"},      /* and keeps a percent sign as it is */
    };
    for (size_t b = 0; b < sizeof bases / sizeof bases[0]; b++) {
        char base[128];
        snprintf(base, sizeof base, "http://127.0.0.1:%d%s", u.port, bases[b][0]);
        cc_gateway *g = gw_open_base(base, 2);
        for (int i = 0; i < 24; i++) {
            char path[64], query[64], want[256];
            snprintf(path, sizeof path, "/proxy/t/echo/%d", i);
            const char *q = NULL;
            if (i % 4 == 1) snprintf(query, sizeof query, "a=%d&b=x%%20y", i), q = query;
            if (i % 4 == 2) q = "";                 /* "?" alone */
            if (i % 4 == 3) q = "q=\xC3\xA9&u=%2F"; /* raw UTF-8 and an encoded slash: sent as they are */
            snprintf(want, sizeof want, "%s%s%s%s", bases[b][1], path, q ? "?" : "", q ? q : "");
            echo_call(g, methods[i % 5], path, q, (size_t)(i % 3 == 0 ? 0 : i % 3 == 1 ? 18 : 1500), want, 0);
        }
        cc_gateway_close(g);
    }

    /* Two at once on two handles, again and again: each answer is its own call's. */
    {
        char base[64];
        snprintf(base, sizeof base, "http://127.0.0.1:%d", u.port);
        cc_gateway *g = gw_open_base(base, 2);
        for (int i = 0; i < 20; i++) {
            cc_gw_request r1 = req_for("/proxy/t/echo/one"), r2 = req_for("/proxy/t/echo/two");
            char q1[32], q2[32];
            snprintf(q1, sizeof q1, "n=%d", 2 * i);
            snprintf(q2, sizeof q2, "n=%d", 2 * i + 1);
            r1.query = q1;
            r2.query = q2;
            cc_error err = {0};
            cc_gw_stream *s1 = NULL, *s2 = NULL;
            CHECK_EQ_I64(cc_gw_submit(g, &r1, &s1, &err), CC_OK);
            CHECK_EQ_I64(cc_gw_submit(g, &r2, &s2, &err), CC_OK);
            char buf[256];
            size_t n;
            if (s1 && s2) {
                CHECK_EQ_I64(cc_gw_read(s2, buf, sizeof buf, &n, &err), CC_OK);
                CHECK_EQ_I64(cc_gw_read(s1, buf, sizeof buf, &n, &err), CC_OK);
                char w1[64], w2[64];
                snprintf(w1, sizeof w1, "/proxy/t/echo/one?%s", q1);
                snprintf(w2, sizeof w2, "/proxy/t/echo/two?%s", q2);
                CHECK_STR(header(s1, "X-Seen-Target"), w1);
                CHECK_STR(header(s2, "X-Seen-Target"), w2);
            }
            cc_gw_close(s1);
            cc_gw_close(s2);
        }
        cc_gateway_close(g);
    }

    /* A reused connection that dies under a call: libcurl sends the call again on a fresh one, to its own
    ** target (not the previous call's). One handle, so the second call reuses the first one's connection. */
    {
        char base[64];
        snprintf(base, sizeof base, "http://127.0.0.1:%d", u.port);
        cc_gateway *g = gw_open_base(base, 1);
        int before = up_requests(&u);
        echo_call(g, "POST", "/proxy/t/echo/first", "x=1", 18, "/proxy/t/echo/first?x=1", 1);
        echo_call(g, "POST", "/proxy/t/echo/again", "drop=1", 18, "/proxy/t/echo/again?drop=1", 1);
        echo_call(g, "GET", "/proxy/t/echo/after", "drop=2", 0, "/proxy/t/echo/after?drop=2", 1);
        CHECK_EQ_I64(up_requests(&u) - before, 3); /* the dropped sends are not counted: each call answered once */
        cc_gateway_close(g);
    }

    /* Through a forward proxy (the helper answers as one): it gets the absolute URL of each call. */
    {
        char proxy[64];
        snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", u.port);
        setenv("http_proxy", proxy, 1);
        unsetenv("no_proxy");
        unsetenv("NO_PROXY");
        cc_gateway *g = gw_open_base("http://upstream.invalid:8080/v2", 2);
        unsetenv("http_proxy");
        for (int i = 0; i < 6; i++) {
            char path[64], query[32], want[256];
            snprintf(path, sizeof path, "/proxy/t/echo/p%d", i);
            snprintf(query, sizeof query, "i=%d", i);
            snprintf(want, sizeof want, "http://upstream.invalid:8080/v2%s?%s", path, query);
            echo_call(g, methods[i % 5], path, query, 18, want, 0);
        }
        cc_gateway_close(g);
    }
    up_stop(&u);
}

static int up_open_conns(upstream *u) {
    cc_mutex_lock(&u->mu);
    int n = u->open_conns;
    cc_mutex_unlock(&u->mu);
    return n;
}

static int64_t sock_ctl(cc_gateway *g) {
    cc_gw_stats st;
    cc_gateway_stats(g, &st);
    return st.sock_ctl;
}

static double process_cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A call on a kept-alive connection costs no registration of its socket
** (gwsock.h: libcurl lets go of it at every transfer's end, the next takes it
** again); an idle connection the upstream closes is let go of without a busy
** loop on its readable EOF, and the next call goes out on a fresh one. */
static void test_gateway_kept_alive_connection_stays_registered(void) {
    upstream u;
    CHECK(up_start(&u) == 0);
    cc_gateway *g = gw_open(&u, 2, 5000, 10000, NULL);
    echo_call(g, "POST", "/proxy/t/echo", NULL, 18, "/proxy/t/echo", 1);
    int64_t c0 = sock_ctl(g);
    CHECK(c0 >= 1); /* the connection's socket was registered */
    for (int i = 2; i <= 21; i++) echo_call(g, "POST", "/proxy/t/echo", NULL, 18, "/proxy/t/echo", i);
    int64_t c1 = sock_ctl(g);
    if (c1 - c0 > 1) fprintf(stderr, "  20 calls on one connection: %lld registration calls\n", (long long)(c1 - c0));
    CHECK(c1 - c0 <= 1); /* following libcurl to the letter: 2 per call (del at the end, add at the next start) */
    /* The upstream closes the connection after this answer. */
    echo_call(g, "POST", "/proxy/t/echo/bye", NULL, 18, "/proxy/t/echo/bye", 22);
    CHECK(WAIT_UNTIL(up_open_conns(&u) == 0, 5000));
    cc_sleep_ms(50);
    double t0 = process_cpu_ms();
    cc_sleep_ms(300);
    double busy = process_cpu_ms() - t0;
    if (busy >= 100) fprintf(stderr, "  %.0f ms of CPU in 300 ms idle\n", busy);
    CHECK(busy < 100); /* an EOF handed to libcurl, which no longer knows the socket, would be reported on every wait */
    echo_call(g, "POST", "/proxy/t/echo", NULL, 18, "/proxy/t/echo", 1); /* a fresh connection */
    echo_call(g, "POST", "/proxy/t/echo", NULL, 18, "/proxy/t/echo", 2);
    cc_gateway_close(g);
    up_stop(&u);
}

/* Threads of this process scheduled as SCHED_BATCH (Linux; -1 elsewhere). */
static int batch_threads(void) {
#if defined(__linux__)
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && sched_getscheduler((pid_t)atoi(e->d_name)) == SCHED_BATCH) n++;
    closedir(d);
    return n;
#else
    return -1;
#endif
}

/* The I/O thread runs as SCHED_BATCH by default (gateway.h: CC_GW_IO_BATCH) and with the OS's default
** scheduling when asked (CC_GW_IO_NORMAL); calls go through either way. */
static void test_gateway_io_thread_scheduling(void) {
    if (batch_threads() < 0) return; /* not Linux: no batch class, nothing to see */
    upstream u;
    CHECK(up_start(&u) == 0);
    CHECK_EQ_I64(batch_threads(), 0);
    cc_gateway *g = gw_open(&u, 2, 5000, 10000, NULL); /* io_sched 0: the default */
    CHECK(WAIT_UNTIL(batch_threads() == 1, 5000));
    echo_call(g, "POST", "/proxy/t/echo", NULL, 18, "/proxy/t/echo", 1);
    cc_gateway_close(g);
    CHECK_EQ_I64(batch_threads(), 0);
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d/", u.port);
    cc_gateway_config cfg = {base, "op-key-123", 2000, 10000, 5000, 1 << 20, INT64_C(1) << 30, 2, CC_GW_IO_NORMAL};
    cc_error err = {0};
    CHECK_EQ_I64(cc_gateway_open(&cfg, NULL, NULL, &g, &err), CC_OK);
    echo_call(g, "POST", "/proxy/t/echo", NULL, 18, "/proxy/t/echo", 1); /* the I/O thread has started */
    CHECK_EQ_I64(batch_threads(), 0);
    cc_gateway_close(g);
    up_stop(&u);
}

static void test_gateway_config_is_checked(void) {
    cc_gateway *g = NULL;
    cc_error err = {0};
    cc_gateway_config ok = {"http://127.0.0.1:9", "k", 1000, 1000, 1000, 0, 1, 1, CC_GW_IO_BATCH};
    cc_gateway_config c = ok;
    c.upstream_base = "ftp://x";
    CHECK_EQ_I64(cc_gateway_open(&c, NULL, NULL, &g, &err), CC_ERR_INVALID);
    c = ok;
    c.upstream_key = "a\nb";
    CHECK_EQ_I64(cc_gateway_open(&c, NULL, NULL, &g, &err), CC_ERR_INVALID);
    c = ok;
    c.handles_max = 0;
    CHECK_EQ_I64(cc_gateway_open(&c, NULL, NULL, &g, &err), CC_ERR_INVALID);
    CHECK_STR(err.field, "handles_max");
    c.handles_max = CC_GW_HANDLES_MAX + 1;
    CHECK_EQ_I64(cc_gateway_open(&c, NULL, NULL, &g, &err), CC_ERR_INVALID);
    c = ok;
    c.io_sched = 2;
    CHECK_EQ_I64(cc_gateway_open(&c, NULL, NULL, &g, &err), CC_ERR_INVALID);
    CHECK_STR(err.field, "io_sched");
    c = ok;
    c.reader_idle_ms = 0;
    CHECK_EQ_I64(cc_gateway_open(&c, NULL, NULL, &g, &err), CC_ERR_INVALID);
    CHECK(g == NULL);
    /* A body over request_bytes_max (0 here) is refused before anything is sent. */
    CHECK_EQ_I64(cc_gateway_open(&ok, NULL, NULL, &g, &err), CC_OK);
    cc_gw_request r = req_for("/proxy/t/small");
    cc_gw_stream *s = NULL;
    CHECK_EQ_I64(cc_gw_submit(g, &r, &s, &err), CC_ERR_LIMIT);
    CHECK_STR(err.field, "body");
    CHECK_EQ_I64(in_flight(g), 0);
    cc_gateway_close(g);
    /* An unreachable upstream: the call fails with a clear error, slot freed. */
    ok.request_bytes_max = 1 << 20;
    CHECK_EQ_I64(cc_gateway_open(&ok, NULL, NULL, &g, &err), CC_OK);
    cc_rc rc = cc_gw_start(g, &r, &s, &err);
    if (rc != CC_ERR_STORAGE) fprintf(stderr, "unreachable upstream: rc %d field %s: %s\n", rc, err.field, err.message);
    CHECK(rc == CC_ERR_STORAGE);
    CHECK(strcmp(err.field, "upstream") == 0 || strcmp(err.field, "timeout") == 0);
    CHECK(s == NULL);
    CHECK(WAIT_UNTIL(in_flight(g) == 0, 5000));
    cc_gateway_close(g);
}

void suite_gateway(void) {
    RUN(test_gateway_config_is_checked);
    RUN(test_gateway_small_call_blocking_and_nonblocking);
    RUN(test_gateway_saturated_refuses_at_once);
    RUN(test_gateway_idle_reader_loses_its_slot);
    RUN(test_gateway_abandoned_streams_end_and_free_their_slot);
    RUN(test_gateway_clean_shutdown_with_calls_in_flight);
    RUN(test_gateway_proxy_environment_read_at_open);
    RUN(test_gateway_each_call_sends_its_own_target);
    RUN(test_gateway_kept_alive_connection_stays_registered);
    RUN(test_gateway_io_thread_scheduling);
}
