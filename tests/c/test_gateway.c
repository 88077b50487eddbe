/*
** test_gateway.c — the gateway's upstream client (src/gateway.c) against a
** tiny HTTP/1.1 upstream on loopback that this file runs in its own threads.
**
** The upstream answers by path:
**   /proxy/t/small  200 JSON with usage and X-Comfy-Credits-Used: 1.25, and
**                   echoes the X-API-KEY it got (X-Seen-Key) and the body length
**   /proxy/t/hang   reads the request and never answers (until it is stopped
**                   or the client goes away)
**   /proxy/t/big    200 with a BIG_BYTES body, written as fast as the client
**                   takes it (usage JSON at its end)
** It counts the requests it received, so a test can show that a refused call
** never reached it. Sockets are POSIX here: this suite is not part of the
** Windows .exe (it needs libcurl); the gateway itself only uses cc_platform.h.
*/
#include "ctest.h"
#include "gateway.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define UP_CONNS_MAX 64
#define BIG_BYTES (4 * 1024 * 1024)
#define SMALL_JSON "{\"usage\":{\"input_tokens\":3,\"output_tokens\":5}}"
#define BIG_TAIL "{\"usage\":{\"input_tokens\":1,\"output_tokens\":2}}"

static char big_chunk[64 * 1024]; /* filled by up_start before any connection */

typedef struct upstream {
    int lfd, port;
    cc_thread_t acceptor;
    cc_mutex_t mu;
    int stop;                  /* under mu */
    int requests;              /* under mu: requests fully read */
    int open_conns;            /* under mu: connections not yet closed by either side */
    int nconn;
    cc_thread_t conn[UP_CONNS_MAX];
    int fds[UP_CONNS_MAX];
} upstream;

typedef struct conn_arg {
    upstream *u;
    int fd;
} conn_arg;

static int up_stopping(upstream *u) {
    cc_mutex_lock(&u->mu);
    int s = u->stop;
    cc_mutex_unlock(&u->mu);
    return s;
}

/* Waits until fd is readable/writable, the upstream stops (-1) or the peer hung up (-1). */
static int up_wait(upstream *u, int fd, short ev) {
    for (;;) {
        if (up_stopping(u)) return -1;
        struct pollfd p = {fd, ev, 0};
        int r = poll(&p, 1, 20);
        if (r < 0 && errno != EINTR) return -1;
        if (r > 0) {
            if (p.revents & (POLLERR | POLLNVAL)) return -1;
            if ((p.revents & POLLHUP) && !(p.revents & POLLIN)) return -1;
            return 0;
        }
    }
}

static int up_send(upstream *u, int fd, const char *p, size_t n) {
    while (n > 0) {
        if (up_wait(u, fd, POLLOUT) != 0) return -1;
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static void *up_conn(void *arg) {
    conn_arg *ca = arg;
    upstream *u = ca->u;
    int fd = ca->fd;
    free(ca);
    char req[16384];
    size_t have = 0;
    for (;;) { /* keep-alive: one request after another */
        char *end = NULL;
        while (!(end = memmem(req, have, "\r\n\r\n", 4))) {
            if (have == sizeof req || up_wait(u, fd, POLLIN) != 0) goto out;
            ssize_t k = recv(fd, req + have, sizeof req - have, MSG_DONTWAIT);
            if (k < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (k <= 0) goto out;
            have += (size_t)k;
        }
        size_t head = (size_t)(end - req) + 4;
        req[head - 1] = 0;
        size_t body_len = 0;
        char *cl = strcasestr(req, "\r\ncontent-length:");
        if (cl) body_len = (size_t)strtoul(cl + 17, NULL, 10);
        char key[200] = "";
        char *kh = strcasestr(req, "\r\nx-api-key:");
        if (kh) {
            kh += 12;
            while (*kh == ' ') kh++;
            size_t kl = strcspn(kh, "\r");
            if (kl >= sizeof key) kl = sizeof key - 1;
            memcpy(key, kh, kl);
            key[kl] = 0;
        }
        int has_auth = strcasestr(req, "\r\nauthorization:") != NULL;
        char path[256] = "";
        sscanf(req, "%*s %255s", path);
        while (have < head + body_len) { /* the body */
            if (head + body_len > sizeof req || up_wait(u, fd, POLLIN) != 0) goto out;
            ssize_t k = recv(fd, req + have, sizeof req - have, MSG_DONTWAIT);
            if (k < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (k <= 0) goto out;
            have += (size_t)k;
        }
        cc_mutex_lock(&u->mu);
        u->requests++;
        cc_mutex_unlock(&u->mu);
        char hdr[1024];
        if (strcmp(path, "/proxy/t/small") == 0) {
            int n = snprintf(hdr, sizeof hdr,
                             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Comfy-Credits-Used: 1.25\r\n"
                             "X-Seen-Key: %s\r\nX-Seen-Body: %zu\r\nX-Seen-Auth: %d\r\nContent-Length: %zu\r\n\r\n%s",
                             key, body_len, has_auth, strlen(SMALL_JSON), SMALL_JSON);
            if (up_send(u, fd, hdr, (size_t)n) != 0) goto out;
        } else if (strcmp(path, "/proxy/t/big") == 0) {
            const char *tail = BIG_TAIL;
            size_t total = BIG_BYTES + strlen(tail);
            int n = snprintf(hdr, sizeof hdr,
                             "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %zu\r\n\r\n",
                             total);
            if (up_send(u, fd, hdr, (size_t)n) != 0) goto out;
            for (size_t sent = 0; sent < BIG_BYTES; sent += sizeof big_chunk)
                if (up_send(u, fd, big_chunk, sizeof big_chunk) != 0) goto out;
            if (up_send(u, fd, tail, strlen(tail)) != 0) goto out;
        } else if (strcmp(path, "/proxy/t/hang") == 0) {
            /* Never answers: waits for the stop or for the client to leave. */
            char c;
            while (up_wait(u, fd, POLLIN) == 0) {
                ssize_t k = recv(fd, &c, 1, MSG_DONTWAIT);
                if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) break;
            }
            goto out;
        } else {
            const char *nf = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
            if (up_send(u, fd, nf, strlen(nf)) != 0) goto out;
        }
        memmove(req, req + head + body_len, have - head - body_len);
        have -= head + body_len;
    }
out:
    close(fd);
    cc_mutex_lock(&u->mu);
    u->open_conns--;
    cc_mutex_unlock(&u->mu);
    return NULL;
}

static void *up_accept(void *arg) {
    upstream *u = arg;
    for (;;) {
        if (up_wait(u, u->lfd, POLLIN) != 0) return NULL;
        int fd = accept(u->lfd, NULL, NULL);
        if (fd < 0) continue;
        cc_mutex_lock(&u->mu);
        int full = u->nconn >= UP_CONNS_MAX;
        if (!full) u->open_conns++;
        cc_mutex_unlock(&u->mu);
        conn_arg *ca = full ? NULL : malloc(sizeof *ca);
        if (!ca) {
            close(fd);
            if (!full) {
                cc_mutex_lock(&u->mu);
                u->open_conns--;
                cc_mutex_unlock(&u->mu);
            }
            continue;
        }
        ca->u = u;
        ca->fd = fd;
        if (cc_thread_create(&u->conn[u->nconn], up_conn, ca) != 0) {
            free(ca);
            close(fd);
            cc_mutex_lock(&u->mu);
            u->open_conns--;
            cc_mutex_unlock(&u->mu);
            continue;
        }
        u->nconn++; /* only this thread writes nconn until up_stop joins it */
    }
}

static int up_start(upstream *u) {
    memset(u, 0, sizeof *u);
    memset(big_chunk, 'x', sizeof big_chunk);
    cc_mutex_init(&u->mu);
    u->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (u->lfd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (bind(u->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(u->lfd, 128) != 0 ||
        getsockname(u->lfd, (struct sockaddr *)&a, &al) != 0) {
        close(u->lfd);
        return -1;
    }
    u->port = ntohs(a.sin_port);
    if (cc_thread_create(&u->acceptor, up_accept, u) != 0) {
        close(u->lfd);
        return -1;
    }
    return 0;
}

static void up_stop(upstream *u) {
    cc_mutex_lock(&u->mu);
    u->stop = 1;
    cc_mutex_unlock(&u->mu);
    cc_thread_join(u->acceptor, NULL);
    for (int i = 0; i < u->nconn; i++) cc_thread_join(u->conn[i], NULL);
    close(u->lfd);
    cc_mutex_destroy(&u->mu);
}

static int up_requests(upstream *u) {
    cc_mutex_lock(&u->mu);
    int n = u->requests;
    cc_mutex_unlock(&u->mu);
    return n;
}

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
                             handles_max};
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

    /* A reader that keeps reading is never aborted, however large the answer. */
    CHECK_EQ_I64(cc_gw_start(g, &r, &s, &err), CC_OK);
    total = 0;
    while ((rc = cc_gw_read(s, buf, sizeof buf, &n, &err)) == CC_OK && n > 0) total += n;
    CHECK_EQ_I64(rc, CC_OK);
    CHECK(total > BIG_BYTES);
    CHECK(cc_gw_finished(s));
    cc_usage us;
    cc_gw_usage(s, &us);
    CHECK_EQ_I64(us.input_tokens, -1); /* not JSON: not captured */
    cc_gw_close(s);
    cc_gateway_stats(g, &st);
    CHECK_EQ_I64(st.aborted_idle, 1);
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
    uint64_t ids[8];
    int seen = 0;
    for (int64_t end = cc_monotonic_ms() + 10000; !ended && cc_monotonic_ms() < end;) {
        size_t k = cc_gw_ready(g, ids, 8);
        for (size_t i = 0; i < k; i++) seen |= ids[i] == cc_gw_id(s);
        if (seen) ended = cc_gw_ended(s, &timed_out);
        else cc_sleep_ms(5);
    }
    CHECK(ended);
    CHECK(seen);
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

static void test_gateway_config_is_checked(void) {
    cc_gateway *g = NULL;
    cc_error err = {0};
    cc_gateway_config ok = {"http://127.0.0.1:9", "k", 1000, 1000, 1000, 0, 1, 1};
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
}
