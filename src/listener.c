/*
** listener.c — the gateway's loopback listener on the gateway's I/O thread.
** See listener.h for the contract.
**
** Threads. Everything below runs on the gateway's I/O thread (the hook's
** turn/news/detach), except cc_listener_open/close, the setters and getters
** (under l->mu) and the extender thread (hold extensions, which touch the
** ledger and may block).
**
** A connection (conn) reads one request at a time: HEAD -> BODY -> CALL ->
** back to HEAD (keep-alive) or closed. A call (call) is one upstream request;
** it belongs to its connection until the client goes away, then it is
** "abandoned": its transfer is read out (detached) and the call ended when
** the gateway says so (news). Connections live in a fixed array of slots;
** a socket is watched (cc_gw_watch) with a tag of slot and generation, so a
** connection closed meanwhile is never mistaken for a new one. What a socket
** is watched for changes only when the connection changed: a connection
** touched in a turn (an event, news, accepted) is looked at once at the end
** of the turn (its timers, its interest); all of them only when the soonest
** timer is due. A turn costs what happened in it, not the number of
** connections.
*/
#include "listener.h"

#include <stdarg.h>
#include <string.h>

#define PREFIX "/credits/gateway/"
#define PREFIX_API "/api/credits/gateway/"
#define IN_BYTES CC_H1_HEAD_BYTES_MAX
#define OUT_HEAD_BYTES_MAX (CC_GW_HEADER_BYTES_MAX + 2048)

enum { C_HEAD = 0, C_BODY, C_CALL, C_CLOSING };
enum { P_HEADERS = 0, P_FIRST, P_BODY };

typedef struct conn conn;

typedef struct call {
    cc_listener *l;
    conn *c;                    /* NULL once abandoned */
    cc_gw_stream *s;
    int64_t run_id;
    int kind, phase, status;
    int chunked_out;            /* the answer goes out chunked (HTTP/1.1, no length known) */
    int64_t length_left;        /* the upstream's Content-Length passed on: bytes still to send; -1: not framed so */
    char method[CC_H1_METHOD_BYTES_MAX + 1];
    char path[160];             /* for log lines */
    struct call *prev, *next;   /* all calls (for detach) */
} call;

struct conn {
    cc_socket_t fd;
    uint32_t gen;
    int live, state;
    char *in;                   /* IN_BYTES: heads and what follows them */
    size_t in_off, in_len;
    int peer_closed;
    /* the request being read */
    int minor, keep_alive, expect;
    char method[CC_H1_METHOD_BYTES_MAX + 1];
    char *target;               /* CC_H1_TARGET_BYTES_MAX + 1 */
    char token[CC_LS_TOKEN_BYTES_MAX + 1];
    char ctype[CC_LS_VALUE_BYTES_MAX + 1], idem[CC_LS_VALUE_BYTES_MAX + 1], job[CC_LS_VALUE_BYTES_MAX + 1];
    int has_token, has_ctype, has_idem, has_job, too_long;
    char *body;
    size_t body_len, body_cap;
    int64_t body_want;          /* Content-Length, or -1 when chunked */
    cc_h1_chunked ch;
    int64_t req_start_ms, idle_since_ms;
    /* output */
    char *out;
    size_t out_off, out_len, out_cap;
    int64_t blocked_since_ms;   /* output pending and the socket full since; 0: not blocked */
    int close_after;            /* close once the output is written */
    call *call;
    int reg;                    /* what the gateway's poller watches its socket for (CC_POLL_*; 0: nothing) */
    int dirty, dnext;           /* on the list of connections to look at this turn (kept across a close) */
};

struct cc_listener {
    cc_gateway *g;
    cc_runs *r;
    cc_listener_config cfg;
    int64_t reader_idle_ms, request_bytes_max;
    int handles_max;
    cc_socket_t lfd;
    /* --- I/O thread */
    conn *conns;
    int nconns;
    int slots_hi;               /* every live connection is in conns[0, slots_hi) */
    int dirty_head;             /* slot of the first connection touched this turn, -1: none */
    int64_t timers_due_ms;      /* the soonest timer of any connection (as last computed) */
    int lreg;                   /* the listening socket is watched (CC_POLL_IN) */
    int io_gone;                /* closing off the I/O thread (it stopped): no poller calls */
    call *calls;
    char *scratch;              /* CC_LS_CHUNK_BYTES */
    int64_t busy_last_ms, busy_count;
    int64_t body_bytes;         /* Σ body_cap of every connection, <= bodies_bytes_max */
    int64_t bodies_bytes_max;   /* >= request_bytes_max: one largest request always fits */
    int detached;
    /* --- under mu */
    cc_mutex_t mu;
    int upstream_configured;
    cc_listener_stats st;
    char *logs;                 /* CC_LS_LOG_LINES_MAX lines of CC_LS_LOG_LINE_BYTES */
    int log_head, log_n;
    int64_t log_dropped;
    /* --- the extender thread (under ext_mu) */
    cc_mutex_t ext_mu;
    cc_cond_t ext_cv;
    cc_thread_t ext;
    int64_t ext_q[CC_LS_EXTEND_QUEUE_MAX];
    int ext_head, ext_n, ext_stop;
};

/* ------------------------------------------------------------ logs, stats */

static void ls_log(cc_listener *l, const char *fmt, ...) CC_PRINTF_LIKE(2, 3);
static void ls_log(cc_listener *l, const char *fmt, ...) {
    cc_mutex_lock(&l->mu);
    if (l->log_n == CC_LS_LOG_LINES_MAX) {
        l->log_dropped++;
    } else {
        char *line = l->logs + (size_t)((l->log_head + l->log_n) % CC_LS_LOG_LINES_MAX) * CC_LS_LOG_LINE_BYTES;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, CC_LS_LOG_LINE_BYTES, fmt, ap);
        va_end(ap);
        for (char *p = line; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
        l->log_n++;
    }
    cc_mutex_unlock(&l->mu);
}

size_t cc_listener_logs(cc_listener *l, char *buf, size_t cap, int64_t *dropped) {
    size_t n = 0;
    cc_mutex_lock(&l->mu);
    while (l->log_n > 0) {
        const char *line = l->logs + (size_t)l->log_head * CC_LS_LOG_LINE_BYTES;
        size_t k = strlen(line);
        if (n + k + 1 > cap) break;
        memcpy(buf + n, line, k);
        buf[n + k] = '\n';
        n += k + 1;
        l->log_head = (l->log_head + 1) % CC_LS_LOG_LINES_MAX;
        l->log_n--;
    }
    if (dropped) *dropped = l->log_dropped;
    l->log_dropped = 0;
    cc_mutex_unlock(&l->mu);
    return n;
}

#define STAT_ADD(l, field, v)                                                  \
    do {                                                                       \
        cc_mutex_lock(&(l)->mu);                                               \
        (l)->st.field += (v);                                                  \
        cc_mutex_unlock(&(l)->mu);                                             \
    } while (0)

void cc_listener_stats_get(cc_listener *l, cc_listener_stats *out) {
    cc_mutex_lock(&l->mu);
    *out = l->st;
    cc_mutex_unlock(&l->mu);
}

void cc_listener_set_upstream_configured(cc_listener *l, int on) {
    cc_mutex_lock(&l->mu);
    l->upstream_configured = on;
    cc_mutex_unlock(&l->mu);
}

/* ------------------------------------------------------------ hold extensions (own thread) */

static void *ext_main(void *arg) {
    cc_listener *l = arg;
    cc_mutex_lock(&l->ext_mu);
    for (;;) {
        while (l->ext_n == 0 && !l->ext_stop) cc_cond_wait(&l->ext_cv, &l->ext_mu);
        if (l->ext_n == 0) break; /* stopping, nothing left */
        int64_t id = l->ext_q[l->ext_head];
        l->ext_head = (l->ext_head + 1) % CC_LS_EXTEND_QUEUE_MAX;
        l->ext_n--;
        cc_mutex_unlock(&l->ext_mu);
        cc_run_extend(l->r, id);
        cc_mutex_lock(&l->ext_mu);
    }
    cc_mutex_unlock(&l->ext_mu);
    return NULL;
}

static void ext_push(cc_listener *l, int64_t id) {
    cc_mutex_lock(&l->ext_mu);
    int dup = 0;
    for (int i = 0; i < l->ext_n; i++)
        if (l->ext_q[(l->ext_head + i) % CC_LS_EXTEND_QUEUE_MAX] == id) dup = 1;
    /* A full queue drops the request: the runtime's periodic keepalive extends holds too. */
    if (!dup && l->ext_n < CC_LS_EXTEND_QUEUE_MAX) {
        l->ext_q[(l->ext_head + l->ext_n) % CC_LS_EXTEND_QUEUE_MAX] = id;
        l->ext_n++;
        cc_cond_signal(&l->ext_cv);
    }
    cc_mutex_unlock(&l->ext_mu);
}

/* ------------------------------------------------------------ output */

static int out_reserve(conn *c, size_t more) {
    if (c->out_off > 0 && c->out_off == c->out_len) c->out_off = c->out_len = 0;
    if (c->out_len + more <= c->out_cap) return 1;
    if (c->out_off > 0) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_len + more <= c->out_cap) return 1;
    }
    size_t nc = c->out_cap ? c->out_cap : 4096;
    while (nc < c->out_len + more) nc *= 2;
    CC_ASSERT(nc <= 4 * (OUT_HEAD_BYTES_MAX + CC_LS_CHUNK_BYTES)); /* bounded: one head and one chunk at a time */
    char *no = realloc(c->out, nc);
    if (!no) return 0;
    c->out = no;
    c->out_cap = nc;
    return 1;
}

static int out_add(conn *c, const void *p, size_t n) {
    if (!out_reserve(c, n)) return 0;
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return 1;
}

static int out_fmt(conn *c, const char *fmt, ...) CC_PRINTF_LIKE(2, 3);
static int out_fmt(conn *c, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) return 0;
    return out_add(c, tmp, (size_t)n);
}

static size_t out_pending(const conn *c) { return c->out_len - c->out_off; }

static int out_str(conn *c, const char *z) { return out_add(c, z, strlen(z)); }

/* Decimal (or hex) digits of v, no printf on the answer path. */
static int out_num(conn *c, size_t v, unsigned base) {
    char tmp[24];
    int i = (int)sizeof tmp;
    do {
        tmp[--i] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    return out_add(c, tmp + i, sizeof tmp - (size_t)i);
}

static const char *reason(int status);

/* "HTTP/1.1 <status> <reason>\r\n" */
static int out_status(conn *c, int status) {
    return out_add(c, "HTTP/1.1 ", 9) && out_num(c, (size_t)(status < 100 || status > 999 ? 500 : status), 10) &&
           out_add(c, " ", 1) && out_str(c, reason(status)) && out_add(c, "\r\n", 2);
}

static const char *reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Request Entity Too Large";
    case 414: return "Request-URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Status";
    }
}

/* ------------------------------------------------------------ connections */

static void call_abandon(call *k);

/* The connection changed this turn: its timers and what its socket is watched for are looked at once the turn's work is done. */
static void conn_touch(cc_listener *l, conn *c) {
    if (c->dirty) return;
    c->dirty = 1;
    c->dnext = l->dirty_head;
    l->dirty_head = (int)(c - l->conns);
}

/* Request bodies are buffered before the run token is checked (the call is
** begun once the whole request is here), so what all connections buffer
** together is bounded, not only each one: CC_LS_CONNECTIONS_MAX bodies of
** request_bytes_max would be gigabytes for any local process to ask for. */
static void body_free(cc_listener *l, conn *c) {
    l->body_bytes -= (int64_t)c->body_cap;
    CC_ASSERT(l->body_bytes >= 0);
    free(c->body);
    c->body = NULL;
    c->body_len = c->body_cap = 0;
}

/* Grows (or allocates) the body buffer to cap bytes within the listener's
** total; 0 when the total or the allocator says no (the buffer is unchanged). */
static int body_grow(cc_listener *l, conn *c, size_t cap) {
    CC_ASSERT(cap > c->body_cap);
    int64_t more = (int64_t)(cap - c->body_cap);
    if (l->body_bytes + more > l->bodies_bytes_max) return 0;
    char *nb = realloc(c->body, cap);
    if (!nb) return 0;
    c->body = nb;
    c->body_cap = cap;
    l->body_bytes += more;
    return 1;
}

static void conn_close(cc_listener *l, conn *c) {
    if (!c->live) return;
    if (c->call) {
        call *k = c->call;
        c->call = NULL;
        k->c = NULL;
        call_abandon(k);
    }
    if (c->reg && !l->io_gone) cc_gw_watch(l->g, c->fd, c->reg, 0, 0);
    cc_sock_close(c->fd);
    c->fd = CC_SOCKET_INVALID;
    free(c->in);
    free(c->target);
    body_free(l, c);
    free(c->out);
    uint32_t gen = c->gen + 1;
    int dirty = c->dirty, dnext = c->dnext;
    memset(c, 0, sizeof *c);
    c->gen = gen;
    c->dirty = dirty;
    c->dnext = dnext;
    c->fd = CC_SOCKET_INVALID;
    l->nconns--;
    while (l->slots_hi > 0 && !l->conns[l->slots_hi - 1].live) l->slots_hi--;
    STAT_ADD(l, connections, -1);
}

/* Writes what it can. Returns 0 when the connection was closed. */
static int conn_flush(cc_listener *l, conn *c) {
    while (out_pending(c) > 0) {
        int64_t w = cc_sock_send(c->fd, c->out + c->out_off, out_pending(c));
        if (w == CC_SOCK_AGAIN) {
            if (!c->blocked_since_ms) c->blocked_since_ms = cc_monotonic_ms();
            return 1;
        }
        if (w <= 0) { /* the client went away */
            conn_close(l, c);
            return 0;
        }
        c->out_off += (size_t)w;
        c->blocked_since_ms = 0;
    }
    c->out_off = c->out_len = 0;
    c->blocked_since_ms = 0;
    if (c->close_after) {
        conn_close(l, c);
        return 0;
    }
    return 1;
}

static void json_escaped(conn *c, const char *s) {
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            out_add(c, e, 2);
        } else if (ch < 0x20 || ch == 0x7f) {
            out_fmt(c, "\\u%04x", ch);
        } else {
            out_add(c, s, 1);
        }
    }
}

/* A refusal in the shape ComfyUI's client reads: {"error": {"message", "type"}}. */
static void refuse(cc_listener *l, conn *c, int status, const char *type, const char *msg, int retry_after,
                   int close) {
    if (close || !c->keep_alive) c->close_after = 1;
    /* The body first, into the tail of the buffer, to know its length. */
    size_t head_at = c->out_len;
    out_fmt(c, "HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\n", status, reason(status));
    if (retry_after) out_fmt(c, "Retry-After: %d\r\n", retry_after);
    if (c->close_after) out_add(c, "Connection: close\r\n", 19);
    size_t cl_at = c->out_len;
    out_add(c, "Content-Length: 0000000000\r\n\r\n", 30);
    size_t body_at = c->out_len;
    out_add(c, "{\"error\": {\"message\": \"", 23);
    json_escaped(c, msg);
    out_add(c, "\", \"type\": \"", 12);
    json_escaped(c, type);
    out_add(c, "\"}}", 3);
    size_t blen = c->out_len - body_at;
    char num[16];
    snprintf(num, sizeof num, "%010zu", blen);
    memcpy(c->out + cl_at + 16, num, 10);
    (void)head_at;
    STAT_ADD(l, requests, 1);
}

/* ------------------------------------------------------------ calls */

static void call_unlink(cc_listener *l, call *k) {
    if (k->prev) k->prev->next = k->next;
    else l->calls = k->next;
    if (k->next) k->next->prev = k->prev;
    STAT_ADD(l, calls_open, -1);
    free(k);
}

/* Records how the call ended (usage when the body arrived whole) and releases the stream. */
static void call_end(call *k, int timed_out) {
    cc_listener *l = k->l;
    cc_usage u;
    int have = cc_gw_finished(k->s);
    if (have) {
        cc_gw_usage(k->s, &u);
        u.credits_used_micro = -1; /* recorded from the headers already */
    }
    /* The stream's status: an abandoned call's headers may have come after its client left. */
    cc_run_call_end(l->r, k->run_id, k->kind, cc_gw_status(k->s), timed_out, have ? &u : NULL);
    cc_gw_close(k->s);
    k->s = NULL;
    call_unlink(l, k);
}

/* Records the answer's status and X-Comfy-Credits-Used once its headers are here. */
static int call_headers(cc_listener *l, call *k, cc_error *e) {
    int ready = 0;
    cc_rc rc = cc_gw_headers_ready(k->s, &ready, e);
    if (rc != CC_OK) return -1;
    if (!ready) return 0;
    k->status = cc_gw_status(k->s);
    /* Only the headers' credits here: the body's usage is read once, when the call ends. */
    cc_run_call_headers(l->r, k->run_id, k->kind, k->status, cc_gw_credits_used(k->s));
    k->phase = P_FIRST;
    return 1;
}

/* The client went away (or stopped reading): the answer is still read to its
** end in the gateway (discarded) and the call counted when it ends, with the
** credits its headers report even when they come after the client left. */
static void call_abandon(call *k) {
    STAT_ADD(k->l, abandoned, 1);
    cc_error e;
    if (k->phase == P_HEADERS) call_headers(k->l, k, &e);
    cc_gw_detach(k->s);
    int timed_out = 0;
    if (cc_gw_ended(k->s, &timed_out)) call_end(k, timed_out && cc_gw_status(k->s) == 0);
    /* else: its end comes as news */
}

static void conn_next_request(cc_listener *l, conn *c);

/* The whole answer is queued for the client: the call ends (counted now) and
** the connection goes on with its next request once the output is written. */
static void answer_written(cc_listener *l, conn *c, call *k) {
    if (!c->keep_alive) c->close_after = 1;
    STAT_ADD(l, requests, 1);
    c->call = NULL;
    k->c = NULL;
    call_end(k, 0);
    c->state = C_HEAD;
    if (conn_flush(l, c)) conn_next_request(l, c);
}

static int add_upstream_headers(conn *c, cc_gw_stream *s) {
    int n = cc_gw_header_count(s);
    for (int i = 0; i < n; i++) {
        const char *h = cc_gw_header(s, i);
        /* The first letter first: most lines are neither. */
        char f = (char)(h[0] | 0x20);
        if ((f == 'd' && !cc_strncasecmp(h, "date:", 5)) || (f == 's' && !cc_strncasecmp(h, "server:", 7))) continue;
        if (!out_add(c, h, strlen(h)) || !out_add(c, "\r\n", 2)) return 0;
    }
    return 1;
}

/* Moves the answer along: headers, then chunks as the client takes them. */
static void call_pump(cc_listener *l, call *k) {
    conn *c = k->c;
    cc_error e;
    if (k->phase == P_HEADERS) {
        int got = call_headers(l, k, &e);
        if (got < 0) {
            cc_rc rc = e.rc;
            /* Unreachable upstream or timeout: a 502/504 lets the client's own retry logic work. */
            int timeout = rc == CC_ERR_STORAGE && !strcmp(e.field, "timeout");
            int status = rc == CC_ERR_STORAGE ? (timeout ? 504 : 502) : 502;
            cc_run_call_end(l->r, k->run_id, k->kind, 0, timeout, NULL);
            cc_gw_close(k->s);
            k->s = NULL;
            c->call = NULL;
            call_unlink(l, k);
            ls_log(l, "comfy-credits gateway: %s", e.message);
            char msg[460];
            snprintf(msg, sizeof msg, "comfy-credits: %s", e.message);
            refuse(l, c, status, "credits_upstream_unavailable", msg, 0, 0);
            c->state = C_HEAD;
            if (conn_flush(l, c)) conn_next_request(l, c);
            return;
        }
        if (!got) return; /* news will come */
    }
    for (int rounds = 0; rounds < 16; rounds++) {
        if (out_pending(c) > 0) return; /* the client has not taken the last chunk yet */
        size_t n = 0;
        int again = 0;
        cc_rc rc = cc_gw_take(k->s, l->scratch, CC_LS_CHUNK_BYTES, &n, &again, &e);
        if (rc != CC_OK) {
            ls_log(l, "comfy-credits gateway: %s %s failed mid-response: %s", k->method, k->path, e.message);
            conn_close(l, c); /* the client sees the connection reset; the call is counted as it ends */
            return;
        }
        if (again) return; /* news will come */
        int complete = n == 0;
        if (k->phase == P_FIRST) {
            if (cc_gw_finished(k->s)) {
                /* The whole answer is here (most API answers): one plain response. */
                if (!out_status(c, k->status) || !add_upstream_headers(c, k->s) ||
                    !out_add(c, "Content-Length: ", 16) || !out_num(c, n, 10) || !out_add(c, "\r\n", 2) ||
                    (!c->keep_alive && !out_add(c, "Connection: close\r\n", 19)) || !out_add(c, "\r\n", 2) ||
                    !out_add(c, l->scratch, n)) {
                    conn_close(l, c);
                    return;
                }
                answer_written(l, c, k);
                return;
            }
            /* Streamed: framed as the upstream framed it when it gave a length (what the client reads is
            ** then the same as from the upstream, and the connection stays open), else chunked (HTTP/1.1)
            ** or up to the connection's end (HTTP/1.0). */
            int64_t len = cc_gw_content_length(k->s);
            int ok = out_status(c, k->status) && add_upstream_headers(c, k->s);
            if (len >= (int64_t)n) {
                k->length_left = len;
                ok = ok && out_add(c, "Content-Length: ", 16) && out_num(c, (size_t)len, 10) && out_add(c, "\r\n", 2) &&
                     (c->keep_alive || out_add(c, "Connection: close\r\n", 19)) && out_add(c, "\r\n", 2);
            } else {
                k->chunked_out = c->minor == 1;
                if (!k->chunked_out) c->keep_alive = 0; /* HTTP/1.0: the end of the body is the connection's */
                ok = ok && out_str(c, k->chunked_out ? "Transfer-Encoding: chunked\r\n\r\n" : "Connection: close\r\n\r\n");
            }
            if (!ok) {
                conn_close(l, c);
                return;
            }
            k->phase = P_BODY;
        }
        /* These bytes were the last: the end (the 0-chunk) leaves with them, in the same send. */
        if (!complete && cc_gw_finished(k->s)) complete = 1;
        if (k->length_left >= 0) {
            /* Never more than announced (libcurl delivers no more than the length; checked all the same),
            ** and an end short of it cannot be framed: the client sees the connection close. */
            if ((int64_t)n > k->length_left || (complete && k->length_left != (int64_t)n)) {
                ls_log(l, "comfy-credits gateway: %s %s: the answer's length did not match its Content-Length",
                       k->method, k->path);
                conn_close(l, c);
                return;
            }
            k->length_left -= (int64_t)n;
        }
        if (n > 0) {
            int ok = 1;
            if (k->chunked_out) ok = out_num(c, n, 16) && out_add(c, "\r\n", 2);
            ok = ok && out_add(c, l->scratch, n);
            if (k->chunked_out) ok = ok && out_add(c, "\r\n", 2);
            if (!ok) {
                conn_close(l, c);
                return;
            }
        }
        if (complete) {
            if (k->chunked_out && !out_add(c, "0\r\n\r\n", 5)) {
                conn_close(l, c);
                return;
            }
            answer_written(l, c, k);
            return;
        }
        if (!conn_flush(l, c)) return;
    }
    cc_gateway_wake(l->g); /* more to take: another turn soon */
}

/* Gateway news for one of our streams (I/O thread). */
static void ls_news(void *ud, cc_gw_stream *s, void *local) {
    cc_listener *l = ud;
    call *k = local;
    (void)s;
    if (l->detached) return;
    if (!k->c) {
        cc_error e;
        if (k->phase == P_HEADERS) call_headers(l, k, &e); /* the credits of an answer that came after its client left */
        int timed_out = 0;
        if (cc_gw_ended(k->s, &timed_out)) call_end(k, timed_out && cc_gw_status(k->s) == 0);
        return;
    }
    conn *c = k->c;
    call_pump(l, k); /* may end k */
    conn_touch(l, c);
}

/* ------------------------------------------------------------ requests */

static int copy_value(const cc_h1_head *h, cc_h1_known name, char *out, size_t cap, int *too_long) {
    const cc_h1_span *v = cc_h1_known_value(h, name);
    if (!v) return 0;
    if (v->n >= cap) {
        *too_long = 1;
        return 0;
    }
    memcpy(out, v->p, v->n);
    out[v->n] = 0;
    return 1;
}

/* The run token: X-API-KEY, else Authorization: Bearer (trimmed). */
static void take_token(conn *c, const cc_h1_head *h) {
    const cc_h1_span *v = cc_h1_known_value(h, CC_H1_F_X_API_KEY);
    cc_h1_span t = {NULL, 0};
    if (v && v->n) t = *v;
    else {
        const cc_h1_span *a = cc_h1_known_value(h, CC_H1_F_AUTHORIZATION);
        if (a && a->n >= 7 && !cc_strncasecmp(a->p, "bearer ", 7)) {
            t.p = a->p + 7;
            t.n = a->n - 7;
            while (t.n && (*t.p == ' ' || *t.p == '\t')) t.p++, t.n--;
        }
    }
    c->has_token = t.n > 0;
    if (t.n > CC_LS_TOKEN_BYTES_MAX) t.n = CC_LS_TOKEN_BYTES_MAX; /* longer than any token: fails its check */
    memcpy(c->token, t.p ? t.p : "", t.n);
    c->token[t.n] = 0;
}

static int rate_limited_busy(cc_listener *l) {
    int64_t now = cc_monotonic_ms();
    l->busy_count++;
    if (now - l->busy_last_ms < 1000) return 0;
    l->busy_last_ms = now;
    return 1;
}

/* The whole request is here: the route's checks, admission, submit. */
static void serve(cc_listener *l, conn *c) {
    char msg[600];
    cc_error e;
    c->state = C_CALL;
    cc_mutex_lock(&l->mu);
    int configured = l->upstream_configured;
    cc_mutex_unlock(&l->mu);
    /* The path as the client sent it, split from the query. */
    char *q = strchr(c->target, '?');
    const char *query = NULL;
    if (q) {
        *q = 0;
        query = q[1] ? q + 1 : NULL;
    }
    const char *tail = NULL;
    if (!strncmp(c->target, PREFIX, strlen(PREFIX))) tail = c->target + strlen(PREFIX) - 1;
    else if (!strncmp(c->target, PREFIX_API, strlen(PREFIX_API))) tail = c->target + strlen(PREFIX_API) - 1;
    if (!tail) {
        refuse(l, c, 404, "not_found", "comfy-credits: this listener serves only the metering gateway", 0, 0);
        goto next;
    }
    if (!configured) {
        /* 400, not 5xx: ComfyUI's client would retry a 5xx for nothing. */
        refuse(l, c, 400, "credits_upstream_not_configured",
               "comfy-credits: this server's operator has not set COMFY_CREDITS_UPSTREAM_KEY, so API nodes cannot "
               "reach the provider. Nothing was charged.", 0, 0);
        goto next;
    }
    if (!c->has_token) {
        refuse(l, c, 402, "credits_hold_missing",
               "comfy-credits: this call carries no run token; API nodes must be run from a queued workflow", 0, 0);
        goto next;
    }
    if (c->too_long) {
        refuse(l, c, 400, "credits_gateway_bad_request", "comfy-credits: a request header is too long", 0, 0);
        goto next;
    }
    cc_gw_stats gs;
    cc_gateway_stats(l->g, &gs);
    if (gs.in_flight >= gs.handles_max) {
        /* Refused before the call is admitted: a 503 costs the run none of its creating calls. */
        STAT_ADD(l, refused_busy, 1);
        if (rate_limited_busy(l)) {
            ls_log(l, "comfy-credits gateway: saturated (%lld upstream calls in flight): %s %.200s answered 503 "
                      "(%lld refused since the last such line)",
                   (long long)gs.handles_max, c->method, tail, (long long)l->busy_count);
            l->busy_count = 0;
        }
        refuse(l, c, 503, "credits_gateway_busy",
               "comfy-credits: the gateway is saturated; retry shortly. Nothing was charged.", CC_LS_RETRY_AFTER_S, 0);
        goto next;
    }
    int64_t run_id = 0, extend_id = 0;
    int kind = 0;
    cc_rc rc = cc_run_call_begin_nowait(l->r, c->token, c->method, tail, &run_id, &kind, &extend_id, &e);
    memset(c->token, 0, sizeof c->token);
    if (rc != CC_OK) {
        if (rc == CC_ERR_STATE) {
            if (strstr(e.message, "expired"))
                refuse(l, c, 402, "credits_hold_expired", "comfy-credits: the run token has expired", 0, 0);
            else {
                snprintf(msg, sizeof msg, "comfy-credits: %s", e.message);
                refuse(l, c, 402, "credits_hold_resolved", msg, 0, 0);
            }
        } else if (!strcmp(e.field, "path")) {
            snprintf(msg, sizeof msg, "comfy-credits: %s; a run token only reaches the provider of the node it was "
                                      "made for", e.message);
            refuse(l, c, 403, "credits_path_not_allowed", msg, 0, 0);
        } else if (rc == CC_ERR_LIMIT) {
            snprintf(msg, sizeof msg, "comfy-credits: %s", e.message);
            refuse(l, c, 403, "credits_calls_limit", msg, 0, 0);
        } else {
            refuse(l, c, 402, "credits_hold_invalid", "comfy-credits: the run token is not valid", 0, 0);
        }
        goto next;
    }
    if (extend_id) ext_push(l, extend_id);
    /* malloc + memset, not calloc: glibc (2.36) serves calloc without its per-thread cache, so a block
    ** freed by the last call would not be the one this call gets (~300 instructions more per call). */
    call *k = malloc(sizeof *k);
    if (k) memset(k, 0, sizeof *k);
    if (!k) {
        cc_run_call_end(l->r, run_id, kind, 0, 0, NULL);
        refuse(l, c, 503, "credits_gateway_busy", "comfy-credits: out of memory; retry shortly. Nothing was charged.",
               CC_LS_RETRY_AFTER_S, 1);
        goto next;
    }
    k->l = l;
    k->length_left = -1;
    k->run_id = run_id;
    k->kind = kind;
    memcpy(k->method, c->method, sizeof k->method); /* NUL-terminated, same size */
    size_t tn = strnlen(tail, sizeof k->path - 1);
    memcpy(k->path, tail, tn);
    k->path[tn] = 0;
    cc_gw_request req = {.method = c->method, .path = tail, .query = query,
                         .content_type = c->has_ctype ? c->ctype : NULL,
                         .idempotency_key = c->has_idem ? c->idem : NULL, .job_id = c->has_job ? c->job : NULL,
                         .body = c->body, .body_len = c->body_len, .local = k};
    rc = cc_gw_submit(l->g, &req, &k->s, &e);
    body_free(l, c);
    if (rc != CC_OK) {
        free(k);
        cc_run_call_end(l->r, run_id, kind, 0, 0, NULL); /* nothing was sent */
        if (!strcmp(e.field, "busy")) {
            STAT_ADD(l, refused_busy, 1);
            if (rate_limited_busy(l)) {
                ls_log(l, "comfy-credits gateway: %s: %s %.200s answered 503 (%lld refused since the last such line)",
                       e.message, c->method, tail, (long long)l->busy_count);
                l->busy_count = 0;
            }
            snprintf(msg, sizeof msg, "comfy-credits: %s; retry shortly. Nothing was charged.", e.message);
            refuse(l, c, 503, "credits_gateway_busy", msg, CC_LS_RETRY_AFTER_S, 0);
        } else if (rc == CC_ERR_INVALID || rc == CC_ERR_LIMIT) {
            snprintf(msg, sizeof msg, "comfy-credits: %s", e.message);
            refuse(l, c, 400, "credits_gateway_bad_request", msg, 0, 0);
        } else {
            ls_log(l, "comfy-credits gateway: %s %.200s: %s", c->method, tail, e.message);
            snprintf(msg, sizeof msg, "comfy-credits: %s", e.message);
            refuse(l, c, 502, "credits_upstream_unavailable", msg, 0, 0);
        }
        goto next;
    }
    k->c = c;
    c->call = k;
    k->next = l->calls;
    if (l->calls) l->calls->prev = k;
    l->calls = k;
    STAT_ADD(l, calls_open, 1);
    return; /* the gateway's news moves it on */
next:
    body_free(l, c); /* refused before the gateway took it */
    c->state = C_HEAD; /* answered at once: conn_progress goes on with the next request */
}

static void conn_progress(cc_listener *l, conn *c);

/* After an answer: parse what the client already sent (pipelining), or wait. */
static void conn_next_request(cc_listener *l, conn *c) {
    if (!c->live || c->state != C_HEAD || c->close_after) return;
    c->idle_since_ms = cc_monotonic_ms();
    c->req_start_ms = 0;
    conn_progress(l, c);
}

static void conn_progress(cc_listener *l, conn *c) {
    cc_error e;
    int status;
    for (;;) {
        if (!c->live) return;
        if (c->state == C_HEAD) {
            /* One request at a time: the next is read once the last answer was written. */
            if (out_pending(c) > 0 || c->close_after) return;
            if (c->in_off == c->in_len) {
                c->in_off = c->in_len = 0;
                if (c->peer_closed) conn_close(l, c);
                return;
            }
            if (!c->req_start_ms) c->req_start_ms = cc_monotonic_ms(); /* the request's clock (408) */
            cc_h1_head h;
            cc_h1_rc rc = cc_h1_parse_head(c->in + c->in_off, c->in_len - c->in_off, IN_BYTES, l->request_bytes_max,
                                           &h, &status, &e);
            if (rc == CC_H1_MORE) {
                if (c->in_off > 0) { /* room for the rest of the head */
                    memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
                    c->in_len -= c->in_off;
                    c->in_off = 0;
                }
                if (c->peer_closed) conn_close(l, c);
                return;
            }
            if (rc == CC_H1_BAD) {
                char msg[460];
                snprintf(msg, sizeof msg, "comfy-credits: %s", e.message);
                c->keep_alive = 0;
                refuse(l, c, status, status == 413 ? "request_too_large" : "bad_request", msg, 0, 1);
                c->state = C_CLOSING;
                conn_flush(l, c);
                return;
            }
            /* Keep what the call needs (the spans point into c->in). */
            memcpy(c->method, h.method.p, h.method.n);
            c->method[h.method.n] = 0;
            memcpy(c->target, h.target.p, h.target.n);
            c->target[h.target.n] = 0;
            c->minor = h.version_minor;
            c->keep_alive = h.keep_alive;
            c->too_long = 0;
            take_token(c, &h);
            c->has_ctype = copy_value(&h, CC_H1_F_CONTENT_TYPE, c->ctype, sizeof c->ctype, &c->too_long);
            c->has_idem = copy_value(&h, CC_H1_F_IDEMPOTENCY_KEY, c->idem, sizeof c->idem, &c->too_long);
            c->has_job = copy_value(&h, CC_H1_F_COMFY_JOB_ID, c->job, sizeof c->job, &c->too_long);
            c->in_off += h.head_bytes;
            body_free(l, c);
            c->body_want = h.chunked ? -1 : (h.content_length > 0 ? h.content_length : 0);
            if (h.chunked) cc_h1_chunked_init(&c->ch, l->request_bytes_max);
            if (c->body_want > 0) {
                if (!body_grow(l, c, (size_t)c->body_want)) {
                    refuse(l, c, 503, "credits_gateway_busy",
                           "comfy-credits: the gateway is buffering too many request bodies; retry shortly. "
                           "Nothing was charged.", CC_LS_RETRY_AFTER_S, 1);
                    c->state = C_CLOSING;
                    conn_flush(l, c);
                    return;
                }
            }
            c->state = C_BODY;
            int body_here = c->body_want == 0 || (c->body_want > 0 && c->in_len - c->in_off >= (size_t)c->body_want);
            if (h.expect_continue && !body_here) {
                if (!out_add(c, "HTTP/1.1 100 Continue\r\n\r\n", 25) || !conn_flush(l, c)) return;
            }
        }
        if (c->state == C_BODY) {
            size_t avail = c->in_len - c->in_off;
            if (c->body_want >= 0) {
                size_t need = (size_t)c->body_want - c->body_len;
                size_t k = avail < need ? avail : need;
                if (k) memcpy(c->body + c->body_len, c->in + c->in_off, k);
                c->body_len += k;
                c->in_off += k;
                if (c->body_len < (size_t)c->body_want) {
                    c->in_off = c->in_len = 0; /* all input was body */
                    if (c->peer_closed) conn_close(l, c);
                    return;
                }
            } else {
                for (;;) {
                    size_t used = 0;
                    cc_h1_rc rc = cc_h1_chunked_feed(&c->ch, c->in + c->in_off, c->in_len - c->in_off, &used, c->body,
                                                     &c->body_len, c->body_cap, &status, &e);
                    c->in_off += used;
                    if (rc == CC_H1_BAD) {
                        char msg[460];
                        snprintf(msg, sizeof msg, "comfy-credits: %s", e.message);
                        refuse(l, c, status, status == 413 ? "request_too_large" : "bad_request", msg, 0, 1);
                        c->state = C_CLOSING;
                        conn_flush(l, c);
                        return;
                    }
                    if (rc == CC_H1_DONE) break;
                    if (c->in_off < c->in_len) { /* the body buffer is full: grow it (bounded by the decoder) */
                        size_t nc = c->body_cap ? c->body_cap * 2 : 16384;
                        if ((int64_t)nc > l->request_bytes_max) nc = (size_t)l->request_bytes_max;
                        if (nc <= c->body_cap) nc = c->body_cap + 1; /* the decoder refuses past the limit */
                        if (!body_grow(l, c, nc)) {
                            refuse(l, c, 503, "credits_gateway_busy",
                                   "comfy-credits: the gateway is buffering too many request bodies; retry shortly. "
                                   "Nothing was charged.", CC_LS_RETRY_AFTER_S, 1);
                            c->state = C_CLOSING;
                            conn_flush(l, c);
                            return;
                        }
                        continue;
                    }
                    c->in_off = c->in_len = 0;
                    if (c->peer_closed) conn_close(l, c);
                    return;
                }
            }
            serve(l, c);
            c->req_start_ms = 0;
            if (c->state != C_HEAD) return; /* a call in flight: the gateway's news moves it on */
            c->idle_since_ms = cc_monotonic_ms();
            if (!conn_flush(l, c)) return;
            continue;
        }
        return;
    }
}

static void conn_readable(cc_listener *l, conn *c) {
    for (int rounds = 0; rounds < 64 && c->live; rounds++) {
        if (c->in_off > 0 && c->in_off == c->in_len) c->in_off = c->in_len = 0;
        if (c->in_len == IN_BYTES) {
            if (c->in_off == 0) return; /* full: wait until it is used (we stop polling) */
            memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
            c->in_len -= c->in_off;
            c->in_off = 0;
        }
        int64_t r = cc_sock_recv(c->fd, c->in + c->in_len, IN_BYTES - c->in_len);
        if (r == CC_SOCK_AGAIN) break;
        if (r <= 0) {
            c->peer_closed = 1;
            if (c->state == C_CALL || c->state == C_CLOSING || r < 0) {
                conn_close(l, c); /* gone mid-call: the call is abandoned (still counted) */
                return;
            }
            break;
        }
        c->in_len += (size_t)r;
        if (c->state == C_HEAD || c->state == C_BODY) {
            conn_progress(l, c);
            if (!c->live) return;
            /* A call went out: what the client sends next (or its leaving) waits for the next poll, not
            ** another recv now that would most likely find nothing. */
            if (c->state == C_CALL) break;
        }
    }
    if (c->live && (c->state == C_HEAD || c->state == C_BODY) && c->peer_closed) conn_progress(l, c);
}

static void accept_all(cc_listener *l) {
    while (l->nconns < l->cfg.connections_max) {
        cc_socket_t s;
        int a = cc_sock_accept(l->lfd, &s);
        if (a <= 0) {
            if (a < 0) ls_log(l, "comfy-credits gateway: accept failed");
            return;
        }
        conn *c = NULL;
        int slot = 0;
        for (; slot < l->cfg.connections_max; slot++)
            if (!l->conns[slot].live) {
                c = &l->conns[slot];
                break;
            }
        CC_ASSERT(c != NULL);
        c->in = malloc(IN_BYTES);
        c->target = malloc(CC_H1_TARGET_BYTES_MAX + 1);
        if (!c->in || !c->target) {
            free(c->in);
            free(c->target);
            c->in = c->target = NULL;
            cc_sock_close(s);
            return;
        }
        c->fd = s;
        c->live = 1;
        conn_touch(l, c);
        if (slot + 1 > l->slots_hi) l->slots_hi = slot + 1;
        c->state = C_HEAD;
        c->idle_since_ms = cc_monotonic_ms();
        l->nconns++;
        cc_mutex_lock(&l->mu);
        l->st.connections++;
        l->st.accepted++;
        cc_mutex_unlock(&l->mu);
    }
}

/* A connection's timers (reader idle, 408, keep-alive idle); 0 when it was closed. *due_ms: when to look again. */
static int check_timers(cc_listener *l, conn *c, int64_t now, int64_t *due_ms) {
    {
        int64_t due = -1;
        if (c->blocked_since_ms) {
            if (now - c->blocked_since_ms >= l->reader_idle_ms) {
                if (c->call)
                    ls_log(l, "comfy-credits gateway: %s %s: the client read nothing for %lld s; connection closed",
                           c->call->method, c->call->path, (long long)(l->reader_idle_ms / 1000));
                conn_close(l, c);
                return 0;
            }
            due = c->blocked_since_ms + l->reader_idle_ms;
        } else if ((c->state == C_HEAD && c->in_len > c->in_off) || c->state == C_BODY) {
            if (!c->req_start_ms) c->req_start_ms = now;
            if (now - c->req_start_ms >= l->cfg.body_timeout_ms) {
                char msg[200];
                snprintf(msg, sizeof msg, "comfy-credits: send the whole body within %d s. Nothing was charged.",
                         l->cfg.body_timeout_ms / 1000);
                refuse(l, c, 408, "request_timeout", msg, 0, 1);
                c->state = C_CLOSING;
                return conn_flush(l, c);
            }
            due = c->req_start_ms + l->cfg.body_timeout_ms;
        } else if (c->state == C_HEAD) {
            if (now - c->idle_since_ms >= l->cfg.keepalive_ms) {
                conn_close(l, c);
                return 0;
            }
            due = c->idle_since_ms + l->cfg.keepalive_ms;
        }
        if (due >= 0 && due < *due_ms) *due_ms = due;
    }
    return 1;
}

/* ------------------------------------------------------------ the hook */

/* Watches the connection's socket for what it waits on now; 0 when it was closed. */
static int conn_watch(cc_listener *l, conn *c) {
    int want = 0;
    if (out_pending(c) > 0) want |= CC_POLL_OUT;
    if (c->in_len < IN_BYTES && !c->peer_closed) want |= CC_POLL_IN;
    if (want == c->reg) return 1;
    uint64_t tag = ((uint64_t)(c - l->conns + 1) << 32) | c->gen;
    if (cc_gw_watch(l->g, c->fd, c->reg, want, tag) != 0) {
        ls_log(l, "comfy-credits gateway: cannot watch a connection's socket; connection closed");
        c->reg = want ? c->reg : 0;
        conn_close(l, c);
        return 0;
    }
    c->reg = want;
    return 1;
}

static void ls_turn(void *ud, const cc_poll_event *ev, int nev, int *timeout_ms) {
    cc_listener *l = ud;
    /* What the last wait saw. Tag 0: the listening socket; else (slot + 1) << 32 | generation. */
    for (int i = 0; i < nev; i++) {
        uint64_t t = ev[i].tag;
        if (t == 0) {
            accept_all(l);
            continue;
        }
        int slot = (int)(t >> 32) - 1;
        uint32_t gen = (uint32_t)t;
        if (slot < 0 || slot >= l->cfg.connections_max) continue;
        conn *c = &l->conns[slot];
        if (!c->live || c->gen != gen) continue; /* closed meanwhile */
        conn_touch(l, c);
        if (ev[i].events & CC_POLL_OUT) {
            if (!conn_flush(l, c)) continue;
            if (c->call) call_pump(l, c->call);
            else if (c->state == C_HEAD) conn_next_request(l, c);
            if (!c->live || c->gen != gen) continue;
        }
        if (ev[i].events & ~CC_POLL_OUT) conn_readable(l, c);
    }
    int64_t now = cc_monotonic_ms();
    /* Every connection's timers once the soonest is due; otherwise only the connections that changed. */
    if (now >= l->timers_due_ms) {
        l->timers_due_ms = INT64_MAX;
        for (int i = 0; i < l->slots_hi; i++)
            if (l->conns[i].live) conn_touch(l, &l->conns[i]);
    }
    while (l->dirty_head >= 0) {
        conn *c = &l->conns[l->dirty_head];
        l->dirty_head = c->dnext;
        c->dirty = 0;
        if (!c->live) continue;
        int64_t due = INT64_MAX;
        if (!check_timers(l, c, now, &due)) continue;
        if (due < l->timers_due_ms) l->timers_due_ms = due;
        conn_watch(l, c);
    }
    if (l->timers_due_ms != INT64_MAX) {
        int64_t left = l->timers_due_ms - now;
        if (left < *timeout_ms) *timeout_ms = (int)(left < 0 ? 0 : left);
    }
    /* The listening socket, while there is room for a connection. */
    int want = l->nconns < l->cfg.connections_max ? CC_POLL_IN : 0;
    if (want != l->lreg) {
        if (cc_gw_watch(l->g, l->lfd, l->lreg, want, 0) == 0) l->lreg = want;
        else ls_log(l, "comfy-credits gateway: cannot watch the listening socket");
    }
}

/* The hook is removed: close every connection; calls in flight are cancelled and ended. */
static void ls_detach(void *ud) {
    cc_listener *l = ud;
    for (int i = 0; i < l->cfg.connections_max; i++) {
        conn *c = &l->conns[i];
        if (!c->live) continue;
        if (c->call) { /* keep it for the loop below: not abandoned (no one would see its end) */
            c->call->c = NULL;
            c->call = NULL;
        }
        conn_close(l, c);
    }
    l->detached = 1;
    if (l->lreg && !l->io_gone) cc_gw_watch(l->g, l->lfd, l->lreg, 0, 0);
    l->lreg = 0;
    while (l->calls) {
        call *k = l->calls;
        /* Cut off at shutdown: with no answer yet it counts as timed out (the upstream may have taken it). */
        int status = cc_gw_status(k->s);
        cc_run_call_end(l->r, k->run_id, k->kind, status, status == 0, NULL);
        cc_gw_close(k->s);
        call_unlink(l, k);
    }
    cc_sock_close(l->lfd);
    l->lfd = CC_SOCKET_INVALID;
}

/* ------------------------------------------------------------ open / close */

cc_rc cc_listener_open(cc_gateway *g, cc_runs *r, const cc_listener_config *cfg, cc_listener **out, int *port,
                       cc_error *err) {
    *out = NULL;
    if (cfg->connections_max < 1 || cfg->connections_max > CC_LS_CONNECTIONS_MAX)
        return cc_fail(err, CC_ERR_INVALID, "connections_max", "connections_max must be 1..%d", CC_LS_CONNECTIONS_MAX);
    if (cfg->body_timeout_ms < 1 || cfg->body_timeout_ms > 3600000)
        return cc_fail(err, CC_ERR_INVALID, "body_timeout_ms", "body timeout must be 1..3600000 ms");
    if (cfg->keepalive_ms < 1 || cfg->keepalive_ms > 3600000)
        return cc_fail(err, CC_ERR_INVALID, "keepalive_ms", "keep-alive timeout must be 1..3600000 ms");
    if (cfg->bodies_bytes_max < 0 || cfg->bodies_bytes_max > (INT64_C(1) << 34))
        return cc_fail(err, CC_ERR_INVALID, "bodies_bytes_max", "bodies_bytes_max must be 0 (default)..16 GiB");
    cc_listener *l = calloc(1, sizeof *l);
    if (!l) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    l->g = g;
    l->r = r;
    l->cfg = *cfg;
    l->upstream_configured = cfg->upstream_configured;
    cc_gw_stats gs;
    cc_gateway_stats(g, &gs);
    l->reader_idle_ms = gs.reader_idle_ms;
    l->request_bytes_max = gs.request_bytes_max;
    l->bodies_bytes_max = cfg->bodies_bytes_max ? cfg->bodies_bytes_max : CC_LS_BODY_BYTES_TOTAL_MAX;
    if (l->bodies_bytes_max < l->request_bytes_max) l->bodies_bytes_max = l->request_bytes_max;
    l->conns = calloc((size_t)cfg->connections_max, sizeof *l->conns);
    l->scratch = malloc(CC_LS_CHUNK_BYTES);
    l->logs = calloc(CC_LS_LOG_LINES_MAX, CC_LS_LOG_LINE_BYTES);
    if (!l->conns || !l->scratch || !l->logs) {
        free(l->conns);
        free(l->scratch);
        free(l->logs);
        free(l);
        return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    for (int i = 0; i < cfg->connections_max; i++) l->conns[i].fd = CC_SOCKET_INVALID;
    l->dirty_head = -1;
    int en = 0;
    if (cc_sock_listen_loopback(cfg->ipv6, 512, &l->lfd, port, &en) != 0) {
        free(l->conns);
        free(l->scratch);
        free(l->logs);
        free(l);
        return cc_fail(err, CC_ERR_STORAGE, "listen", "cannot listen on the %s loopback address (error %d)",
                       cfg->ipv6 ? "IPv6" : "IPv4", en);
    }
    cc_mutex_init(&l->mu);
    cc_mutex_init(&l->ext_mu);
    cc_cond_init(&l->ext_cv);
    if (cc_thread_create(&l->ext, ext_main, l) != 0) {
        cc_sock_close(l->lfd);
        cc_mutex_destroy(&l->mu);
        cc_mutex_destroy(&l->ext_mu);
        cc_cond_destroy(&l->ext_cv);
        free(l->conns);
        free(l->scratch);
        free(l->logs);
        free(l);
        return cc_fail(err, CC_ERR_NOMEM, "", "cannot start the listener's thread");
    }
    cc_gw_hook hook = {.ud = l, .turn = ls_turn, .news = ls_news, .detach = ls_detach};
    cc_gateway_set_hook(g, &hook);
    *out = l;
    return CC_OK;
}

void cc_listener_close(cc_listener *l) {
    if (!l) return;
    cc_gateway_set_hook(l->g, NULL); /* ls_detach runs on the I/O thread before this returns */
    if (!l->detached) { /* the I/O thread had already stopped */
        l->io_gone = 1;
        ls_detach(l);
    }
    cc_mutex_lock(&l->ext_mu);
    l->ext_stop = 1;
    cc_cond_signal(&l->ext_cv);
    cc_mutex_unlock(&l->ext_mu);
    cc_thread_join(l->ext, NULL);
    cc_mutex_destroy(&l->mu);
    cc_mutex_destroy(&l->ext_mu);
    cc_cond_destroy(&l->ext_cv);
    free(l->conns);
    free(l->scratch);
    free(l->logs);
    free(l);
}
