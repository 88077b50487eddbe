/*
** gateway.c — streaming upstream client: one I/O thread drives libcurl's
** multi interface for every transfer. See gateway.h for the contract.
**
** Threads. Callers (the event loop, worker threads) only queue work and copy
** bytes under g->mu; the I/O thread is the only one that calls libcurl on
** transfers (add/remove handles, perform, pause/unpause). Callbacks run on
** the I/O thread and take g->mu for the few fields callers read. News for
** waiting streams is gathered during one loop turn and delivered at its end:
** one notify call (one event-loop wake-up) for every stream that got data.
**
** Ownership. A stream has up to three references: the caller's (until
** cc_gw_close), the I/O thread's (from submit until the transfer ended) and
** a short one while it is on the I/O thread's list of streams with news.
** The last one frees it. A transfer's slot (handles_max) is released when the
** transfer ends, not when the caller closes.
**
** Backpressure. The write callback copies into the stream's buffer (at most
** CC_GW_BUFFER_BYTES_MAX) and pauses the transfer when it is full; a take()
** that frees half of it asks the I/O thread to resume. A transfer paused for
** longer than reader_idle_ms is aborted.
*/
#include "gateway.h"
#include "curl_mem.h"
#include "gwsock.h"
#include "money.h"
#include "tls.h"

#include <curl/curl.h>
#include <string.h>

#define GW_BUF_FIRST_BYTES (32 * 1024)
#define GW_SCAN_MS_MAX 250 /* idle scans at least this often */
#define GW_IDLE_EASY_MAX 64
/* A request's header lines: Content-Type, Idempotency-Key, Comfy-Job-Id, the key, Expect. */
#define GW_REQ_LINES_MAX 5
/* A body larger than this gets "Expect:" (libcurl would send "Expect: 100-continue" above its threshold:
** 1 MiB in 7.88, 1 KiB in older versions); a smaller one never gets it, so the line is left out. */
#define GW_EXPECT_BODY_BYTES 1024
#define GW_REQ_VALUES_MAX 3
#define GW_REQ_LINE_BYTES 320  /* "Idempotency-Key: " + 255 bytes, the longest */
#define GW_HBUF_BYTES (CC_GW_HEADER_BYTES_MAX + CC_GW_HEADERS_MAX)
/* Streams are kept for reuse (with their buffers up to GW_SPARE_BUF_BYTES
** each, larger ones are freed): no allocation per call in the steady state. */
#define GW_SPARE_MAX 64
#define GW_SPARE_BUF_BYTES (64 * 1024)
/* libcurl's sockets: at most two per transfer (while connecting), one per idle connection it keeps
** (CURLMOPT_MAXCONNECTS = handles_max; kept registered, gwsock.h), and a few being closed. */
#define GW_SOCKS_MAX (3 * CC_GW_HANDLES_MAX + 64)
#define GW_WAIT_EVENTS 256      /* events taken per wait (level-triggered: the rest come with the next) */
/* Poller tags: libcurl's sockets are (fd << 1) | 1, the hook's tags are shifted left by one. */
#define GW_TAG_CURL(fd) (((uint64_t)(fd) << 1) | 1u)

struct cc_gw_stream {
    cc_gateway *g;
    CURL *easy;                 /* NULL once the transfer ended (handle back in the pool) */
    unsigned easy_gen;          /* the TLS generation easy was configured for */
    uint64_t id;
    /* --- under g->mu */
    int refs;
    int consumer_open;
    int io_owned;               /* pending or attached */
    int attached;
    int cancel;                 /* the caller closed before the end */
    int want_cont, in_ctl;
    int waiting, on_ready, touched;
    int detached;
    void *local;                /* news to the hook (set at submit) */
    int headers_done, done, paused, too_big, aborted_idle;
    CURLcode result;
    int64_t paused_since_ms;
    long status;
    int json;
    int64_t credits_used_micro;
    int64_t length, length_seen;  /* the answer's Content-Length (-1: none or chunked; set with headers_done) */
    char *buf;                  /* body bytes [off, len) not yet taken */
    size_t buf_cap, off, len;
    int64_t body_bytes;
    char *cap;                  /* capture for usage */
    size_t cap_len, cap_cap;
    int capturing;
    /* --- lists (g->mu), one link each */
    cc_gw_stream *p_next, *c_next, *r_next, *t_next;
    cc_gw_stream *a_prev, *a_next;
    /* --- set before submit, then I/O thread only */
    int nreq_lines, nreq_text;
    char *req_body;
    size_t req_body_cap;
    int nhdr;
    size_t hdr_bytes;
    char *hbuf;                 /* GW_HBUF_BYTES: the answer's header lines, NUL-terminated */
    cc_gw_stream *f_next;       /* on the gateway's spare list */
    /* --- from here on (STREAM_KEPT, ~1.8 KiB) stream_free does not clear a stream kept for reuse: each
    ** element is written before it is read (below the counts above, and errbuf[0] set at submit). */
    struct curl_slist req_lines[GW_REQ_LINES_MAX]; /* the request's headers: a list curl reads, never frees */
    char req_text[GW_REQ_VALUES_MAX][GW_REQ_LINE_BYTES];
    char errbuf[CURL_ERROR_SIZE];
    char *hdr[CC_GW_HEADERS_MAX]; /* complete (read-only) once headers_done; they point into hbuf */
};
#define STREAM_KEPT offsetof(cc_gw_stream, req_lines)

struct cc_gateway {
    char *base;                 /* without trailing '/' */
    /* The base parsed once (CURLOPT_CURLU on every handle) and the path each
    ** request's target starts with (CURLOPT_REQUEST_TARGET: prefix + path +
    ** query), when that is what libcurl would send for base + path (see
    ** base_plain_path); NULL: each request sets its whole URL (CURLOPT_URL),
    ** which libcurl parses and prints again for every transfer. */
    CURLU *url_base;
    const char *target_prefix;  /* into base */
    char *key_header;           /* "X-API-KEY: ..." */
    char *proxy, *noproxy;      /* the proxy environment as libcurl reads it, read once at open */
    cc_gateway_config cfg;
    void (*notify)(void *);
    void *notify_ud;
    CURLM *multi;
    cc_thread_t io;
    cc_mutex_t mu;
    cc_cond_t cv;
    /* --- under mu */
    int stop;
    int live;                   /* transfers holding a slot */
    int open_streams;           /* streams the callers have not closed */
    int blocking;               /* callers waiting on cv */
    int notified;               /* notify called since the last cc_gw_ready */
    uint64_t next_id;
    int64_t started, refused_busy, aborted_idle;
    int64_t sock_ctl;           /* socks.ctl as of the last transfer's end */
    cc_gw_stream *pending, *pending_tail;
    cc_gw_stream *ctl;
    cc_gw_stream *ready, *ready_tail;
    cc_gw_stream *active;       /* attached transfers */
    cc_gw_stream *spare;        /* freed streams kept for reuse (GW_SPARE_MAX) */
    int nspare;
    CURL *idle[GW_IDLE_EASY_MAX];  /* configured (easy_setup) for the TLS generation idle_gen[i] */
    unsigned idle_gen[GW_IDLE_EASY_MAX];
    int nidle;
    cc_gw_hook hook_next;       /* set_hook's request, applied by the I/O thread */
    int hook_next_on, hook_change, io_done;
    /* --- I/O thread only */
    cc_gw_stream *touched;
    int hook_submitted;         /* the hook queued a transfer this turn: no wait before it is added */
    cc_gw_hook hook;
    int hook_on;
    /* One readiness wait for libcurl's sockets, the hook's and wake-ups
    ** (cc_poller: epoll on Linux). libcurl tells which of its sockets to
    ** watch for what (CURLMOPT_SOCKETFUNCTION), the hook registers its own
    ** (cc_gw_watch); the registrations change only when the interest does,
    ** so a turn costs what happened in it, not a look at every socket or
    ** transfer. curl gets only its sockets that are ready
    ** (curl_multi_socket_action) and its timer (CURLMOPT_TIMERFUNCTION). */
    cc_poller *poller;
    gw_socks socks;             /* libcurl's sockets there, registered lazily (gwsock.h) */
    int64_t curl_due_ms;        /* -1: no timer */
    cc_poll_event ev[GW_WAIT_EVENTS];
    struct {
        curl_socket_t fd;
        int mask;
    } seen[GW_WAIT_EVENTS];     /* what the last wait saw on curl's sockets */
    int nseen, seen_next;       /* seen[seen_next, nseen): not handed to curl yet */
    cc_poll_event hev[GW_WAIT_EVENTS]; /* ... and on the hook's (tags as the hook gave them) */
    int nhev;
};

static void *io_main(void *arg);
static void stream_destroy(cc_gw_stream *s);
static void proxy_from_env(cc_gateway *g);
static void url_base_setup(cc_gateway *g);

/* libcurl (on the I/O thread, from inside its calls): what to wait on for a socket. */
static int sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
    cc_gateway *g = userp;
    (void)easy;
    (void)socketp;
    int want = what == CURL_POLL_REMOVE ? 0 : ((what & CURL_POLL_IN) ? CC_POLL_IN : 0) |
                                              ((what & CURL_POLL_OUT) ? CC_POLL_OUT : 0);
    /* Not -1 when refused (cannot happen: bounded by handles_max): libcurl would
    ** give up on the whole multi handle; this transfer alone ends at its timeout. */
    gw_socks_want(&g->socks, (cc_socket_t)fd, want, GW_TAG_CURL(fd));
    return 0;
}

/* libcurl opens and closes its connections' sockets here, so the gateway knows
** when a descriptor it keeps registered goes away (gwsock.h). */
static curl_socket_t open_sock_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *a) {
    cc_gateway *g = clientp;
    (void)purpose;
    curl_socket_t fd = socket(a->family, a->socktype, a->protocol); /* what libcurl does without the hook */
    if (fd != CURL_SOCKET_BAD) gw_socks_opened(&g->socks, (cc_socket_t)fd);
    return fd;
}

static int close_sock_cb(void *clientp, curl_socket_t fd) {
    cc_gateway *g = clientp;
    gw_socks_closing(&g->socks, (cc_socket_t)fd);
    /* Events the last wait saw on this descriptor, not yet handed to curl, are
    ** about this socket: never about one that gets the number next. */
    for (int i = g->seen_next; i < g->nseen; i++)
        if (g->seen[i].fd == fd) g->seen[i].fd = CURL_SOCKET_BAD;
    cc_sock_close((cc_socket_t)fd);
    return 0;
}

int cc_gw_watch(cc_gateway *g, cc_socket_t fd, int had, int want, uint64_t tag) {
    CC_ASSERT(tag < (UINT64_C(1) << 62));
    if (want == had) return 0;
    if (!want) {
        cc_poller_del(g->poller, fd);
        return 0;
    }
    return had ? cc_poller_mod(g->poller, fd, want, tag << 1) : cc_poller_add(g->poller, fd, want, tag << 1);
}

/* libcurl: when to call curl_multi_socket_action(CURL_SOCKET_TIMEOUT) next (a one-shot timer). */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
    cc_gateway *g = userp;
    (void)multi;
    g->curl_due_ms = timeout_ms < 0 ? -1 : cc_monotonic_ms() + timeout_ms;
    return 0;
}

cc_rc cc_gateway_open(const cc_gateway_config *cfg, void (*notify)(void *), void *notify_ud, cc_gateway **out,
                      cc_error *err) {
    *out = NULL;
    if (cc_curl_init() != CURLE_OK) return cc_fail(err, CC_ERR_STORAGE, "", "libcurl failed to initialise");
    if (!cfg->upstream_base || (strncmp(cfg->upstream_base, "http://", 7) && strncmp(cfg->upstream_base, "https://", 8)))
        return cc_fail(err, CC_ERR_INVALID, "upstream_base", "upstream base must be an http:// or https:// URL");
    if (strlen(cfg->upstream_base) > 1024)
        return cc_fail(err, CC_ERR_INVALID, "upstream_base", "upstream base is too long");
    for (const char *p = cfg->upstream_base; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return cc_fail(err, CC_ERR_INVALID, "upstream_base", "upstream base contains spaces or control characters");
    const char *key = cfg->upstream_key ? cfg->upstream_key : "";
    if (strlen(key) > 1024) return cc_fail(err, CC_ERR_INVALID, "upstream_key", "upstream key is too long");
    for (const char *p = key; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return cc_fail(err, CC_ERR_INVALID, "upstream_key", "upstream key contains control characters");
    if (cfg->connect_timeout_ms < 1 || cfg->connect_timeout_ms > 60000)
        return cc_fail(err, CC_ERR_INVALID, "connect_timeout_ms", "connect timeout must be 1..60000 ms");
    if (cfg->timeout_ms < 1 || cfg->timeout_ms > 3600000)
        return cc_fail(err, CC_ERR_INVALID, "timeout_ms", "timeout must be 1..3600000 ms");
    if (cfg->reader_idle_ms < 1 || cfg->reader_idle_ms > CC_GW_READER_IDLE_MS_MAX)
        return cc_fail(err, CC_ERR_INVALID, "reader_idle_ms", "reader idle timeout must be 1..%d ms",
                       CC_GW_READER_IDLE_MS_MAX);
    if (cfg->request_bytes_max < 0 || cfg->request_bytes_max > (INT64_C(1) << 30))
        return cc_fail(err, CC_ERR_INVALID, "request_bytes_max", "request limit must be 0..1 GiB");
    if (cfg->response_bytes_max < 1 || cfg->response_bytes_max > (INT64_C(16) << 30))
        return cc_fail(err, CC_ERR_INVALID, "response_bytes_max", "response limit must be 1 B..16 GiB");
    if (cfg->handles_max < 1 || cfg->handles_max > CC_GW_HANDLES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "handles_max", "handles_max must be 1..%d", CC_GW_HANDLES_MAX);
    if (cfg->io_sched != CC_GW_IO_BATCH && cfg->io_sched != CC_GW_IO_NORMAL)
        return cc_fail(err, CC_ERR_INVALID, "io_sched", "io_sched must be CC_GW_IO_BATCH or CC_GW_IO_NORMAL");
    cc_gateway *g = calloc(1, sizeof *g);
    if (!g) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    g->cfg = *cfg;
    g->notify = notify;
    g->notify_ud = notify_ud;
    g->base = strdup(cfg->upstream_base);
    size_t kl = strlen(key) + 16;
    g->key_header = malloc(kl);
    g->multi = curl_multi_init();
    g->poller = cc_poller_open(CC_GW_HOOK_FDS_MAX + GW_SOCKS_MAX);
    /* Idle connections kept registered: at most one per connection libcurl keeps (CURLMOPT_MAXCONNECTS). */
    int socks_ok = g->poller && gw_socks_init(&g->socks, g->poller, GW_SOCKS_MAX, cfg->handles_max) == 0;
    if (!g->base || !g->key_header || !g->multi || !socks_ok) {
        if (g->multi) curl_multi_cleanup(g->multi);
        if (socks_ok) gw_socks_destroy(&g->socks);
        cc_poller_close(g->poller);
        free(g->base);
        free(g->key_header);
        free(g);
        return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    /* Keep one connection per concurrent transfer to the upstream. */
    curl_multi_setopt(g->multi, CURLMOPT_MAXCONNECTS, (long)cfg->handles_max);
    g->curl_due_ms = -1;
    curl_multi_setopt(g->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(g->multi, CURLMOPT_SOCKETDATA, g);
    curl_multi_setopt(g->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(g->multi, CURLMOPT_TIMERDATA, g);
    size_t bl = strlen(g->base);
    while (bl > 0 && g->base[bl - 1] == '/') g->base[--bl] = 0;
    proxy_from_env(g);
    url_base_setup(g);
    snprintf(g->key_header, kl, "X-API-KEY: %s", key);
    g->cfg.upstream_base = g->base;
    g->cfg.upstream_key = NULL; /* only key_header keeps it */
    cc_mutex_init(&g->mu);
    cc_cond_init(&g->cv);
    if (cc_thread_create(&g->io, io_main, g) != 0) {
        cc_mutex_destroy(&g->mu);
        cc_cond_destroy(&g->cv);
        curl_multi_cleanup(g->multi);
        gw_socks_destroy(&g->socks);
        cc_poller_close(g->poller);
        if (g->url_base) curl_url_cleanup(g->url_base);
        free(g->proxy);
        free(g->noproxy);
        free(g->base);
        free(g->key_header);
        free(g);
        return cc_fail(err, CC_ERR_NOMEM, "", "cannot start the gateway's I/O thread");
    }
    *out = g;
    return CC_OK;
}

void cc_gateway_close(cc_gateway *g) {
    if (!g) return;
    cc_gateway_set_hook(g, NULL);
    cc_mutex_lock(&g->mu);
    CC_ASSERT(g->open_streams == 0); /* every stream was closed */
    g->stop = 1;
    cc_mutex_unlock(&g->mu);
    cc_poller_wake(g->poller);
    cc_thread_join(g->io, NULL);
    CC_ASSERT(g->live == 0 && g->active == NULL && g->pending == NULL);
    for (int i = 0; i < g->nidle; i++) curl_easy_cleanup(g->idle[i]);
    curl_multi_cleanup(g->multi);
    if (g->url_base) curl_url_cleanup(g->url_base); /* after every handle that pointed at it */
    gw_socks_destroy(&g->socks); /* after libcurl closed its connections through it */
    cc_poller_close(g->poller);
    while (g->spare) {
        cc_gw_stream *s = g->spare;
        g->spare = s->f_next;
        stream_destroy(s);
    }
    memset(g->key_header, 0, strlen(g->key_header));
    free(g->key_header);
    free(g->base);
    free(g->proxy);
    free(g->noproxy);
    cc_mutex_destroy(&g->mu);
    cc_cond_destroy(&g->cv);
    free(g);
}

void cc_gateway_set_notify(cc_gateway *g, void (*notify)(void *), void *notify_ud) {
    cc_mutex_lock(&g->mu);
    g->notify = notify;
    g->notify_ud = notify_ud;
    g->notified = 0; /* the next news notifies the new receiver */
    cc_mutex_unlock(&g->mu);
}

void cc_gateway_stats(cc_gateway *g, cc_gw_stats *out) {
    cc_mutex_lock(&g->mu);
    out->in_flight = g->live;
    out->handles_max = g->cfg.handles_max;
    out->started = g->started;
    out->refused_busy = g->refused_busy;
    out->aborted_idle = g->aborted_idle;
    out->sock_ctl = g->sock_ctl;
    out->reader_idle_ms = g->cfg.reader_idle_ms;
    out->request_bytes_max = g->cfg.request_bytes_max;
    cc_mutex_unlock(&g->mu);
}

static void stream_destroy(cc_gw_stream *s) {
    free(s->req_body);
    free(s->hbuf);
    free(s->buf);
    free(s->cap);
    free(s);
}

/* The last reference went: the stream is kept for reuse (spare list) or freed. */
static void stream_free(cc_gw_stream *s) {
    CC_ASSERT(s->easy == NULL);
    cc_gateway *g = s->g;
    char *req_body = s->req_body, *hbuf = s->hbuf, *buf = s->buf, *cap = s->cap;
    size_t req_body_cap = s->req_body_cap, buf_cap = s->buf_cap, cap_cap = s->cap_cap;
    if (req_body_cap > GW_SPARE_BUF_BYTES) free(req_body), req_body = NULL, req_body_cap = 0;
    if (buf_cap > GW_SPARE_BUF_BYTES) free(buf), buf = NULL, buf_cap = 0;
    if (cap_cap > GW_SPARE_BUF_BYTES) free(cap), cap = NULL, cap_cap = 0;
    cc_mutex_lock(&g->mu);
    int keep = g->nspare < GW_SPARE_MAX && !g->stop;
    if (keep) {
        memset(s, 0, STREAM_KEPT); /* not the arrays after it (~1.8 KiB of stores per call) */
        s->req_body = req_body;
        s->req_body_cap = req_body_cap;
        s->hbuf = hbuf;
        s->buf = buf;
        s->buf_cap = buf_cap;
        s->cap = cap;
        s->cap_cap = cap_cap;
        s->f_next = g->spare;
        g->spare = s;
        g->nspare++;
    }
    cc_mutex_unlock(&g->mu);
    if (!keep) {
        s->req_body = req_body;
        s->buf = buf;
        s->cap = cap;
        stream_destroy(s);
    }
}

/* mu held: the stream has news; the I/O thread delivers it at the end of its turn. */
static void touch(cc_gw_stream *s) {
    if (s->touched) return;
    s->touched = 1;
    s->refs++;
    s->t_next = s->g->touched;
    s->g->touched = s;
}

/* mu held: hands news to a waiting caller. Returns 1 when notify must be called. */
static int deliver(cc_gateway *g, cc_gw_stream *s) {
    if (!s->waiting || !s->consumer_open || s->on_ready) return 0;
    s->waiting = 0;
    s->on_ready = 1;
    s->r_next = NULL;
    if (g->ready_tail) g->ready_tail->r_next = s;
    else g->ready = s;
    g->ready_tail = s;
    if (g->notified) return 0;
    g->notified = 1;
    return 1;
}

/* I/O thread: delivers every stream's news gathered this turn. */
static void deliver_touched(cc_gateway *g) {
    if (!g->touched) return;
    cc_gw_stream *dead = NULL, *local = NULL;
    int need = 0;
    cc_mutex_lock(&g->mu);
    cc_gw_stream *s = g->touched;
    g->touched = NULL;
    while (s) {
        cc_gw_stream *n = s->t_next;
        s->touched = 0;
        if (s->local && s->consumer_open) { /* to the hook, below (keeps the touch's reference) */
            s->t_next = local;
            local = s;
            s = n;
            continue;
        }
        need |= deliver(g, s);
        if (--s->refs == 0) {
            s->t_next = dead;
            dead = s;
        }
        s = n;
    }
    if (g->blocking) cc_cond_broadcast(&g->cv);
    /* Under mu, so cc_gateway_set_notify() is a barrier: no call after it returns. */
    if (need && g->notify) g->notify(g->notify_ud);
    cc_mutex_unlock(&g->mu);
    while (local) {
        cc_gw_stream *n = local->t_next;
        if (g->hook_on && g->hook.news) g->hook.news(g->hook.ud, local, local->local);
        cc_mutex_lock(&g->mu);
        int last = --local->refs == 0;
        cc_mutex_unlock(&g->mu);
        if (last) {
            local->t_next = dead;
            dead = local;
        }
        local = n;
    }
    while (dead) {
        cc_gw_stream *n = dead->t_next;
        stream_free(dead);
        dead = n;
    }
}

/* A handle back to the pool keeps its configuration (easy_setup), not the
** stream's pointers. */
static void easy_release(CURL *e) {
    curl_easy_setopt(e, CURLOPT_PRIVATE, NULL);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, NULL);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L); /* forgets the POST body pointer's use */
}

/* I/O thread: the transfer is over (done, cancelled, aborted, never added). */
static void end_transfer(cc_gateway *g, cc_gw_stream *s, CURLcode result) {
    CURL *e = s->easy;
    if (s->attached) curl_multi_remove_handle(g->multi, e);
    easy_release(e);
    cc_mutex_lock(&g->mu);
    if (s->attached) {
        if (s->a_prev) s->a_prev->a_next = s->a_next;
        else g->active = s->a_next;
        if (s->a_next) s->a_next->a_prev = s->a_prev;
        s->a_prev = s->a_next = NULL;
        s->attached = 0;
    }
    if (s->in_ctl) {
        for (cc_gw_stream **pp = &g->ctl; *pp; pp = &(*pp)->c_next)
            if (*pp == s) {
                *pp = s->c_next;
                break;
            }
        s->in_ctl = 0;
    }
    if (!s->done) {
        s->done = 1;
        s->result = result;
    }
    s->easy = NULL;
    s->io_owned = 0;
    g->sock_ctl = g->socks.ctl; /* published here: a lock the I/O thread takes anyway */
    g->live--;
    CC_ASSERT(g->live >= 0);
    if (g->nidle < GW_IDLE_EASY_MAX) {
        g->idle_gen[g->nidle] = s->easy_gen;
        g->idle[g->nidle++] = e;
        e = NULL;
    }
    touch(s);
    s->refs--; /* the I/O thread's; touch() holds one until delivered */
    cc_mutex_unlock(&g->mu);
    if (e) curl_easy_cleanup(e);
}

/* ------------------------------------------------------------ callbacks (I/O thread) */

#define HAS_PREFIX(line, n, lit) ((n) >= sizeof lit - 1 && cc_strncasecmp(line, lit, sizeof lit - 1) == 0)

/* Hop-by-hop headers, the length and cookies are not passed on (one look at the first letter first). */
static int hop_by_hop(const char *line, size_t n) {
    switch (line[0] | 0x20) {
    case 'c': return HAS_PREFIX(line, n, "connection:") || HAS_PREFIX(line, n, "content-length:");
    case 'k': return HAS_PREFIX(line, n, "keep-alive:");
    case 'p': return HAS_PREFIX(line, n, "proxy-");
    case 's': return HAS_PREFIX(line, n, "set-cookie:");
    case 't': return HAS_PREFIX(line, n, "transfer-encoding:") || HAS_PREFIX(line, n, "te:") ||
                     HAS_PREFIX(line, n, "trailer:");
    case 'u': return HAS_PREFIX(line, n, "upgrade:");
    default: return 0;
    }
}

static size_t header_cb(char *data, size_t size, size_t nitems, void *ud) {
    cc_gw_stream *s = ud;
    size_t n = size * nitems;
    size_t len = n;
    if (s->headers_done) return n; /* trailers: the caller may be reading hdr[] now */
    while (len > 0 && (data[len - 1] == '\r' || data[len - 1] == '\n')) len--;
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new header block (after 1xx): forget the previous one. */
        s->nhdr = 0;
        s->hdr_bytes = 0;
        s->json = 0;
        s->credits_used_micro = -1;
        s->length_seen = -1;
        return n;
    }
    if (len == 0) {
        long code = 0;
        curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 200) {
            cc_mutex_lock(&s->g->mu);
            s->status = code;
            s->length = code == 204 || code == 304 ? -1 : s->length_seen; /* no body, whatever it says */
            s->headers_done = 1;
            s->capturing = s->json;
            touch(s);
            cc_mutex_unlock(&s->g->mu);
        }
        return n;
    }
    /* The length, for a listener that passes it on (cc_gw_content_length): digits only; chunked wins.
    ** The first letter first, as hop_by_hop does: most lines are neither. */
    char first = (char)(data[0] | 0x20);
    if (first == 'c' && len > 15 && cc_strncasecmp(data, "content-length:", 15) == 0 && s->length_seen != -2) {
        const char *v = data + 15, *ve = data + len;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        int64_t cl = ve > v && ve - v <= 18 ? 0 : -2;
        for (const char *c = v; cl >= 0 && c < ve; c++) cl = *c >= '0' && *c <= '9' ? cl * 10 + (*c - '0') : -2;
        s->length_seen = s->length_seen >= 0 && s->length_seen != cl ? -2 : cl; /* two different: none */
    } else if (first == 't' && len > 18 && cc_strncasecmp(data, "transfer-encoding:", 18) == 0) {
        s->length_seen = -2;
    }
    if (hop_by_hop(data, len)) return n;
    if (s->nhdr >= CC_GW_HEADERS_MAX || s->hdr_bytes + len > CC_GW_HEADER_BYTES_MAX) return n; /* drop extras */
    if (!s->hbuf && !(s->hbuf = malloc(GW_HBUF_BYTES))) return 0; /* aborts the transfer: out of memory */
    char *line = s->hbuf + s->hdr_bytes + (size_t)s->nhdr; /* each earlier line and its NUL */
    CC_ASSERT(s->hdr_bytes + (size_t)s->nhdr + len + 1 <= GW_HBUF_BYTES);
    memcpy(line, data, len);
    line[len] = 0;
    /* Header values must not smuggle CR/LF into our response. (memchr first: a line almost never has one,
    ** and it looks at many bytes per step where the loop looks at one.) */
    if (memchr(line, '\r', len) || memchr(line, '\n', len))
        for (size_t i = 0; i < len; i++)
            if (line[i] == '\r' || line[i] == '\n') line[i] = ' ';
    s->hdr[s->nhdr++] = line;
    s->hdr_bytes += len;
    if ((line[0] | 0x20) == 'c' && HAS_PREFIX(line, len, "content-type:")) {
        const char *v = line + 13;
        while (*v == ' ') v++;
        s->json = cc_strncasecmp(v, "application/json", 16) == 0 || strstr(v, "+json") != NULL;
    } else if ((line[0] | 0x20) == 'x' && HAS_PREFIX(line, len, "x-comfy-credits-used:")) {
        const char *v = line + 21;
        while (*v == ' ' || *v == '\t') v++;
        char tmp[40];
        size_t k = strcspn(v, " \t");
        if (k > 0 && k < sizeof tmp) {
            memcpy(tmp, v, k);
            tmp[k] = 0;
            int64_t micro;
            if (cc_decimal_to_scaled(tmp, 6, &micro, "x-comfy-credits-used", NULL) == CC_OK && micro >= 0)
                s->credits_used_micro = micro;
        }
    }
    return n;
}

/* mu held. */
static void capture(cc_gw_stream *s, const char *data, size_t n) {
    if (!s->capturing) return;
    if (s->cap_len + n > CC_GW_CAPTURE_BYTES_MAX) {
        s->capturing = 0; /* too large to be a usage report: stop copying */
        free(s->cap);
        s->cap = NULL;
        s->cap_len = s->cap_cap = 0;
        return;
    }
    if (s->cap_len + n + 1 > s->cap_cap) {
        size_t want = s->cap_cap ? s->cap_cap : 1024;
        while (want < s->cap_len + n + 1) want *= 2;
        char *nc = realloc(s->cap, want);
        if (!nc) {
            s->capturing = 0;
            return;
        }
        s->cap = nc;
        s->cap_cap = want;
    }
    memcpy(s->cap + s->cap_len, data, n);
    s->cap_len += n;
    s->cap[s->cap_len] = 0;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ud) {
    cc_gw_stream *s = ud;
    cc_gateway *g = s->g;
    size_t n = size * nmemb;
    cc_mutex_lock(&g->mu);
    if (!s->headers_done) {
        long code = 0;
        curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code);
        s->status = code;
        s->headers_done = 1;
        s->capturing = s->json;
    }
    if (s->body_bytes + (int64_t)n > g->cfg.response_bytes_max) {
        s->too_big = 1;
        cc_mutex_unlock(&g->mu);
        return 0; /* aborts with CURLE_WRITE_ERROR */
    }
    if (!(s->detached || s->cancel)) {
        if (s->off == s->len) s->off = s->len = 0;
        if (s->len + n > s->buf_cap && s->off > 0) {
            memmove(s->buf, s->buf + s->off, s->len - s->off);
            s->len -= s->off;
            s->off = 0;
        }
        if (s->len + n > s->buf_cap && s->buf_cap < CC_GW_BUFFER_BYTES_MAX) {
            size_t nc = s->buf_cap ? s->buf_cap : GW_BUF_FIRST_BYTES;
            while (nc < s->len + n && nc < CC_GW_BUFFER_BYTES_MAX) nc *= 2;
            if (nc > CC_GW_BUFFER_BYTES_MAX) nc = CC_GW_BUFFER_BYTES_MAX;
            char *nb = realloc(s->buf, nc);
            if (!nb) {
                cc_mutex_unlock(&g->mu);
                return 0; /* out of memory: abort */
            }
            s->buf = nb;
            s->buf_cap = nc;
        }
        if (s->len + n > s->buf_cap) {
            if (s->len == 0) { /* a single delivery larger than the buffer: cannot happen with libcurl's sizes */
                cc_mutex_unlock(&g->mu);
                return 0;
            }
            s->paused = 1;
            s->paused_since_ms = cc_monotonic_ms();
            cc_mutex_unlock(&g->mu);
            return CURL_WRITEFUNC_PAUSE;
        }
        memcpy(s->buf + s->len, data, n);
        s->len += n;
        touch(s);
    }
    s->body_bytes += (int64_t)n;
    capture(s, data, n);
    cc_mutex_unlock(&g->mu);
    return n;
}

/* ------------------------------------------------------------ the I/O thread */

/* Adds the transfers callers submitted; cancels and resumes what they asked. */
static void io_take_work(cc_gateway *g, int *stop) {
    cc_mutex_lock(&g->mu);
    *stop = g->stop;
    cc_gw_stream *pend = g->pending;
    g->pending = g->pending_tail = NULL;
    cc_gw_stream *ctl = g->ctl;
    g->ctl = NULL;
    for (cc_gw_stream *s = ctl; s; s = s->c_next) s->in_ctl = 0;
    cc_mutex_unlock(&g->mu);
    while (pend) {
        cc_gw_stream *s = pend;
        pend = s->p_next;
        cc_mutex_lock(&g->mu);
        int cancel = s->cancel || *stop;
        cc_mutex_unlock(&g->mu);
        if (cancel) {
            end_transfer(g, s, CURLE_ABORTED_BY_CALLBACK); /* never sent */
            continue;
        }
        CURLMcode mc = curl_multi_add_handle(g->multi, s->easy);
        if (mc != CURLM_OK) {
            snprintf(s->errbuf, sizeof s->errbuf, "libcurl: %s", curl_multi_strerror(mc));
            end_transfer(g, s, CURLE_FAILED_INIT);
            continue;
        }
        cc_mutex_lock(&g->mu);
        s->attached = 1;
        s->a_prev = NULL;
        s->a_next = g->active;
        if (g->active) g->active->a_prev = s;
        g->active = s;
        cc_mutex_unlock(&g->mu);
    }
    while (ctl) {
        cc_gw_stream *s = ctl;
        ctl = s->c_next;
        cc_mutex_lock(&g->mu);
        int cancel = s->cancel, cont = s->want_cont && s->paused, live = s->io_owned && s->attached;
        s->want_cont = 0;
        if (cont) s->paused = 0;
        cc_mutex_unlock(&g->mu);
        if (!live) continue;
        if (cancel) end_transfer(g, s, CURLE_ABORTED_BY_CALLBACK);
        else if (cont) curl_easy_pause(s->easy, CURLPAUSE_CONT); /* may call write_cb at once */
    }
}

static void io_reap(cc_gateway *g) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(g->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        cc_gw_stream *s = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
        CC_ASSERT(s && s->easy == msg->easy_handle);
        end_transfer(g, s, msg->data.result);
    }
}

/* Aborts transfers whose reader left a full buffer untouched too long. */
static void io_scan_idle(cc_gateway *g) {
    int64_t now = cc_monotonic_ms();
    cc_gw_stream *victims = NULL;
    cc_mutex_lock(&g->mu);
    for (cc_gw_stream *s = g->active; s; s = s->a_next)
        if (s->paused && !s->detached && !s->cancel && now - s->paused_since_ms >= g->cfg.reader_idle_ms) {
            s->aborted_idle = 1;
            g->aborted_idle++;
            s->p_next = victims; /* reused: an attached stream is off the pending list */
            victims = s;
        }
    cc_mutex_unlock(&g->mu);
    while (victims) {
        cc_gw_stream *s = victims;
        victims = s->p_next;
        end_transfer(g, s, CURLE_ABORTED_BY_CALLBACK);
    }
}

/* Installs or removes the hook set_hook asked for; the old one lets go here. */
static void io_apply_hook(cc_gateway *g, int force_off) {
    cc_mutex_lock(&g->mu);
    int change = g->hook_change;
    cc_gw_hook next = g->hook_next;
    int on = g->hook_next_on && !force_off;
    cc_mutex_unlock(&g->mu);
    if (!change && !force_off) return;
    if (g->hook_on && g->hook.detach) g->hook.detach(g->hook.ud);
    g->hook_on = 0;
    deliver_touched(g);
    g->hook = next;
    g->hook_on = on;
    g->nhev = 0;
    cc_mutex_lock(&g->mu);
    g->hook_change = 0;
    cc_cond_broadcast(&g->cv);
    cc_mutex_unlock(&g->mu);
}

void cc_gateway_set_hook(cc_gateway *g, const cc_gw_hook *hook) {
    cc_mutex_lock(&g->mu);
    while (g->hook_change && !g->io_done) cc_cond_timedwait_ms(&g->cv, &g->mu, 1000);
    if (g->io_done) {
        cc_mutex_unlock(&g->mu);
        return;
    }
    if (hook) g->hook_next = *hook;
    else memset(&g->hook_next, 0, sizeof g->hook_next);
    g->hook_next_on = hook != NULL;
    g->hook_change = 1;
    cc_mutex_unlock(&g->mu);
    cc_poller_wake(g->poller);
    cc_mutex_lock(&g->mu);
    while (g->hook_change && !g->io_done) cc_cond_timedwait_ms(&g->cv, &g->mu, 1000);
    cc_mutex_unlock(&g->mu);
}

void cc_gateway_wake(cc_gateway *g) { cc_poller_wake(g->poller); }

/* Hands libcurl what the last wait saw on its sockets, then its timer if due. */
static void io_curl_actions(cc_gateway *g) {
    int running = 0;
    while (g->seen_next < g->nseen) {
        int i = g->seen_next++;
        if (g->seen[i].fd != CURL_SOCKET_BAD) /* CURL_SOCKET_BAD: closed since the wait (close_sock_cb) */
            curl_multi_socket_action(g->multi, g->seen[i].fd, g->seen[i].mask, &running);
    }
    g->nseen = g->seen_next = 0;
    if (g->curl_due_ms >= 0 && cc_monotonic_ms() >= g->curl_due_ms) {
        g->curl_due_ms = -1; /* one-shot; curl sets the next one */
        curl_multi_socket_action(g->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
}

/* The hook's turn (its events from the last wait), then one wait on every socket. */
static void io_wait(cc_gateway *g, int wait_ms) {
    if (g->hook_on && g->hook.turn) g->hook.turn(g->hook.ud, g->hev, g->nhev, &wait_ms);
    g->nhev = 0;
    if (g->hook_submitted) {
        /* Hand what the hook submitted to libcurl first; the sockets are waited on next turn. */
        g->hook_submitted = 0;
        return;
    }
    if (g->curl_due_ms >= 0) {
        int64_t left = g->curl_due_ms - cc_monotonic_ms();
        if (left < wait_ms) wait_ms = (int)(left < 0 ? 0 : left);
    }
    if (wait_ms < 0) wait_ms = 0;
    int n = cc_poller_wait(g->poller, g->ev, GW_WAIT_EVENTS, wait_ms);
    g->nseen = 0;
    for (int i = 0; i < n; i++) {
        uint64_t t = g->ev[i].tag;
        int e = g->ev[i].events;
        if (t & 1u) {
            if (!gw_socks_event(&g->socks, (cc_socket_t)(t >> 1))) continue; /* libcurl let go of it: unregistered */
            g->seen[g->nseen].fd = (curl_socket_t)(t >> 1);
            g->seen[g->nseen].mask = ((e & CC_POLL_IN) ? CURL_CSELECT_IN : 0) | ((e & CC_POLL_OUT) ? CURL_CSELECT_OUT : 0) |
                                     ((e & CC_POLL_ERR) ? CURL_CSELECT_ERR : 0);
            g->nseen++;
        } else {
            g->hev[g->nhev].tag = t >> 1;
            g->hev[g->nhev].events = e;
            g->nhev++;
        }
    }
}

static void *io_main(void *arg) {
    cc_gateway *g = arg;
    /* Where the OS has no batch class the thread keeps its default scheduling: nothing else changes. */
    if (g->cfg.io_sched == CC_GW_IO_BATCH) (void)cc_thread_batch_self();
    int scan_ms = g->cfg.reader_idle_ms / 4;
    if (scan_ms > GW_SCAN_MS_MAX) scan_ms = GW_SCAN_MS_MAX;
    if (scan_ms < 1) scan_ms = 1;
    int64_t next_scan = cc_monotonic_ms() + scan_ms;
    cc_curl_mem_cache_begin(); /* libcurl's blocks freed here are kept for its next transfers (curl_mem.h) */
    for (;;) {
        int stop;
        io_apply_hook(g, 0);
        io_take_work(g, &stop);
        if (stop) break;
        io_curl_actions(g);
        io_reap(g);
        int64_t now = cc_monotonic_ms();
        if (now >= next_scan) {
            io_scan_idle(g);
            next_scan = now + scan_ms;
        }
        deliver_touched(g);
        io_wait(g, (int)(next_scan - now));
    }
    io_apply_hook(g, 1); /* a hook still installed lets go (cc_gateway_close removed it already) */
    /* Stopping: every caller closed its streams; end what is left (cancelled). */
    for (;;) {
        cc_mutex_lock(&g->mu);
        cc_gw_stream *s = g->active;
        cc_mutex_unlock(&g->mu);
        if (!s) break;
        end_transfer(g, s, CURLE_ABORTED_BY_CALLBACK);
    }
    deliver_touched(g);
    cc_curl_mem_cache_end();
    cc_mutex_lock(&g->mu);
    g->io_done = 1;
    cc_cond_broadcast(&g->cv);
    cc_mutex_unlock(&g->mu);
    return NULL;
}

/* ------------------------------------------------------------ requests */

static int valid_token(const char *v, size_t max) {
    size_t n = strnlen(v, max + 1);
    if (n == 0 || n > max) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) return 0;
    return 1;
}

/* The request's header lines live in the stream (req_lines, req_text): a list curl only reads. */
static void add_line(cc_gw_stream *s, const char *line) {
    CC_ASSERT(s->nreq_lines < GW_REQ_LINES_MAX);
    struct curl_slist *l = &s->req_lines[s->nreq_lines];
    l->data = (char *)line; /* not modified: curl reads the list */
    l->next = NULL;
    if (s->nreq_lines > 0) s->req_lines[s->nreq_lines - 1].next = l;
    s->nreq_lines++;
}

static cc_rc add_header(cc_gw_stream *s, const char *name, const char *value, cc_error *err) {
    CC_ASSERT(s->nreq_text < GW_REQ_VALUES_MAX);
    char *line = s->req_text[s->nreq_text];
    size_t nn = strlen(name), vn = strlen(value);
    if (nn + 2 + vn >= GW_REQ_LINE_BYTES) return cc_fail(err, CC_ERR_INVALID, name, "%s is too long", name);
    memcpy(line, name, nn);
    line[nn] = ':';
    line[nn + 1] = ' ';
    memcpy(line + nn + 2, value, vn + 1);
    s->nreq_text++;
    add_line(s, line);
    return CC_OK;
}

/* What every transfer of a handle shares, set once per handle (and again
** after a reset): the handle is reused without curl_easy_reset. */
static void easy_setup(cc_gateway *g, CURL *e) {
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)g->cfg.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)g->cfg.timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* redirects go back to the client as they are */
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    cc_tls_apply(e); /* explicit CA bundle: the wheel's libcurl has the build machine's path */
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, NULL); /* pass bodies through unchanged */
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_sock_cb);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, g);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_sock_cb);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, g);
    /* Set, so libcurl does not read the environment again for every transfer. */
    curl_easy_setopt(e, CURLOPT_PROXY, g->proxy);
    curl_easy_setopt(e, CURLOPT_NOPROXY, g->noproxy);
    /* The one parsed base for every transfer; each sets its target (submit). */
    if (g->url_base) curl_easy_setopt(e, CURLOPT_CURLU, g->url_base);
}

/* What follows scheme://authority in the base when a request's target can
** be written here instead of libcurl parsing base + path for every transfer:
** then libcurl would send exactly prefix + path (+ '?' query). That holds
** when no proxy is configured (a forward proxy needs the absolute URL, which
** libcurl builds from the URL), the base has no user info, query or
** fragment, and its path is plain characters without dot segments (libcurl
** neither encodes nor resolves anything in it; the request's path is
** canonical, gwpath.h). NULL otherwise. */
static int plain_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-._~!$&'()*+,;=:@/", c);
}
static const char *base_plain_path(const cc_gateway *g) {
    if (*g->proxy) return NULL;
    const char *a = strstr(g->base, "://");
    if (!a) return NULL;
    a += 3;
    size_t al = strcspn(a, "/?#");
    if (al == 0 || memchr(a, '@', al)) return NULL;
    const char *p = a + al;
    if (*p && *p != '/') return NULL; /* a query or fragment */
    for (const char *q = p; *q; q++)
        if (!plain_char((unsigned char)*q)) return NULL;
    for (const char *q = p; *q;) { /* segments after each '/' */
        q++;
        size_t sl = strcspn(q, "/");
        if ((sl == 1 && q[0] == '.') || (sl == 2 && q[0] == '.' && q[1] == '.')) return NULL;
        q += sl;
    }
    return p;
}
static void url_base_setup(cc_gateway *g) {
    const char *prefix = base_plain_path(g);
    if (!prefix) return;
    CURLU *u = curl_url();
    /* The flags libcurl parses CURLOPT_URL with (url.c parseurlandfillconn). */
    if (u && curl_url_set(u, CURLUPART_URL, g->base, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK) {
        g->url_base = u;
        g->target_prefix = prefix;
    } else if (u) {
        curl_url_cleanup(u); /* the transfers will say what is wrong with it */
    }
}

/* The proxy libcurl would pick from the environment for the upstream's scheme
** (its detect_proxy: <scheme>_proxy, for https also HTTPS_PROXY but never
** HTTP_PROXY, then all_proxy / ALL_PROXY) and its no_proxy / NO_PROXY, which
** libcurl still applies to the host. "" when unset (no proxy, no exceptions). */
static char *env_dup(const char *a, const char *b) {
    const char *v = getenv(a);
    if ((!v || !*v) && b) v = getenv(b);
    return strdup(v ? v : "");
}
static void proxy_from_env(cc_gateway *g) {
    int https = strncmp(g->base, "https://", 8) == 0;
    char *p = https ? env_dup("https_proxy", "HTTPS_PROXY") : env_dup("http_proxy", NULL);
    if (p && !*p) {
        free(p);
        p = env_dup("all_proxy", "ALL_PROXY");
    }
    g->proxy = p;
    g->noproxy = env_dup("no_proxy", "NO_PROXY");
}

/* A stream that never reached the I/O thread. */
static void submit_undo(cc_gateway *g, cc_gw_stream *s) {
    CURL *e = s->easy;
    s->easy = NULL;
    cc_mutex_lock(&g->mu);
    g->live--;
    if (e && g->nidle < GW_IDLE_EASY_MAX) {
        easy_release(e);
        g->idle_gen[g->nidle] = s->easy_gen;
        g->idle[g->nidle++] = e;
        e = NULL;
    }
    cc_mutex_unlock(&g->mu);
    if (e) curl_easy_cleanup(e);
    stream_free(s);
}

cc_rc cc_gw_submit(cc_gateway *g, const cc_gw_request *req, cc_gw_stream **out, cc_error *err) {
    *out = NULL;
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};
    int mi = -1;
    for (int i = 0; req->method && methods[i]; i++)
        if (strcmp(req->method, methods[i]) == 0) mi = i;
    if (mi < 0) return cc_fail(err, CC_ERR_INVALID, "method", "method must be GET, POST, PUT, PATCH or DELETE");
    /* The one path check (gwpath.h): decoded once, plain segments, API-node paths only. */
    char path[CC_GW_PATH_BYTES_MAX + 1];
    cc_rc prc = cc_gw_path_canonical(req->path, req->path ? strnlen(req->path, CC_GW_PATH_BYTES_MAX + 1) : 0,
                                     path, sizeof path, err);
    if (prc != CC_OK) return prc;
    if (req->query && strnlen(req->query, CC_GW_PATH_BYTES_MAX + 1) > CC_GW_PATH_BYTES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "query", "query string is too long");
    if (req->query)
        for (const char *q = req->query; *q; q++)
            if ((unsigned char)*q <= 0x20 || *q == 0x7f || *q == '#')
                return cc_fail(err, CC_ERR_INVALID, "query", "query string contains invalid characters");
    if ((int64_t)req->body_len > g->cfg.request_bytes_max)
        return cc_fail(err, CC_ERR_LIMIT, "body", "request body is larger than %lld bytes",
                       (long long)g->cfg.request_bytes_max);
    if (req->content_type && !valid_token(req->content_type, 256))
        return cc_fail(err, CC_ERR_INVALID, "content_type", "invalid content type");
    if (req->idempotency_key && !valid_token(req->idempotency_key, 255))
        return cc_fail(err, CC_ERR_INVALID, "idempotency_key", "invalid Idempotency-Key");
    if (req->job_id && !valid_token(req->job_id, 128))
        return cc_fail(err, CC_ERR_INVALID, "job_id", "invalid Comfy-Job-Id");

    /* A slot, at once or never: a saturated gateway refuses, it does not queue. */
    CURL *e = NULL;
    cc_mutex_lock(&g->mu);
    if (g->stop) {
        cc_mutex_unlock(&g->mu);
        return cc_fail(err, CC_ERR_STATE, "", "the gateway is closing");
    }
    if (g->live >= g->cfg.handles_max) {
        g->refused_busy++;
        int live = g->live;
        cc_mutex_unlock(&g->mu);
        return cc_fail(err, CC_ERR_LIMIT, "busy", "the gateway is saturated: %d upstream calls in flight", live);
    }
    g->live++;
    unsigned egen = 0;
    if (g->nidle > 0) {
        e = g->idle[--g->nidle];
        egen = g->idle_gen[g->nidle];
    }
    uint64_t id = ++g->next_id;
    cc_gw_stream *s = g->spare; /* cleared by stream_free, its buffers kept */
    if (s) {
        g->spare = s->f_next;
        s->f_next = NULL;
        g->nspare--;
    }
    cc_mutex_unlock(&g->mu);

    if (!s) s = calloc(1, sizeof *s);
    unsigned tgen = cc_tls_generation();
    int fresh = !e;
    if (!e) e = curl_easy_init();
    else if (egen != tgen) curl_easy_reset(e), fresh = 1; /* the CA bundle changed since it was configured */
    if (!s || !e) {
        if (e) curl_easy_cleanup(e);
        free(s);
        cc_mutex_lock(&g->mu);
        g->live--;
        cc_mutex_unlock(&g->mu);
        return cc_fail(err, CC_ERR_NOMEM, "", "cannot create a libcurl handle");
    }
    s->g = g;
    s->easy = e;
    s->id = id;
    s->errbuf[0] = 0; /* read after a failure: what libcurl wrote there, if anything */
    if (fresh) easy_setup(g, e);
    s->easy_gen = tgen;
    s->local = req->local;
    s->credits_used_micro = -1;
    s->length = s->length_seen = -1;
    cc_rc rc = CC_OK;
    /* base (<= 1024) + path + '?' + query (each <= CC_GW_PATH_BYTES_MAX), checked above: the whole URL,
    ** or only the target (the base's path first) when the handle has the parsed base (url_base). */
    char url[1024 + 2 * CC_GW_PATH_BYTES_MAX + 2];
    const char *head = g->url_base ? g->target_prefix : g->base;
    size_t bl = strlen(head), pl = strlen(path), ql = req->query ? strlen(req->query) : 0;
    CC_ASSERT(bl + pl + ql + 2 <= sizeof url);
    memcpy(url, head, bl);
    memcpy(url + bl, path, pl);
    url[bl + pl] = 0;
    if (req->query) {
        url[bl + pl] = '?';
        memcpy(url + bl + pl + 1, req->query, ql + 1);
    }
    /* No Accept line: libcurl sends its own (any type) when none is given. */
    if (req->content_type) rc = add_header(s, "Content-Type", req->content_type, err);
    if (rc == CC_OK && req->idempotency_key) rc = add_header(s, "Idempotency-Key", req->idempotency_key, err);
    if (rc == CC_OK && req->job_id) rc = add_header(s, "Comfy-Job-Id", req->job_id, err);
    if (rc == CC_OK) {
        add_line(s, g->key_header);
        /* without it curl would send "Expect: 100-continue" for large POSTs */
        if (req->body_len > GW_EXPECT_BODY_BYTES) add_line(s, "Expect:");
    }
    if (rc == CC_OK && req->body_len) {
        if (req->body_len > s->req_body_cap) {
            free(s->req_body);
            s->req_body = malloc(req->body_len);
            s->req_body_cap = s->req_body ? req->body_len : 0;
        }
        if (!s->req_body) rc = cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
        else memcpy(s->req_body, req->body, req->body_len);
    }
    if (rc != CC_OK) {
        submit_undo(g, s);
        return rc;
    }
    /* Per request (the rest stays from easy_setup). */
    if (g->url_base) curl_easy_setopt(e, CURLOPT_REQUEST_TARGET, url); /* curl copies it */
    else curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)s);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, &s->req_lines[0]);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf);
    if (mi == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
    } else {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, s->req_body ? s->req_body : "");
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, mi != 1 ? methods[mi] : NULL);
    }
    cc_mutex_lock(&g->mu);
    s->refs = 2; /* the caller's and the I/O thread's */
    s->consumer_open = 1;
    s->io_owned = 1;
    g->open_streams++;
    g->started++;
    if (g->pending_tail) g->pending_tail->p_next = s;
    else g->pending = s;
    g->pending_tail = s;
    cc_mutex_unlock(&g->mu);
    if (req->local) g->hook_submitted = 1; /* the hook, on the I/O thread: io_wait skips its wait */
    else cc_poller_wake(g->poller);
    *out = s;
    return CC_OK;
}

uint64_t cc_gw_id(const cc_gw_stream *s) { return s->id; }

/* mu held, s->done: why the transfer failed. */
static cc_rc fail_from(cc_gw_stream *s, cc_error *err) {
    cc_gateway *g = s->g;
    if (s->too_big)
        return cc_fail(err, CC_ERR_LIMIT, "response", "upstream response is larger than %lld bytes",
                       (long long)g->cfg.response_bytes_max);
    if (s->aborted_idle)
        return cc_fail(err, CC_ERR_STORAGE, "idle", "the reader took no data for %d ms: transfer aborted",
                       g->cfg.reader_idle_ms);
    if (s->result == CURLE_OPERATION_TIMEDOUT)
        return cc_fail(err, CC_ERR_STORAGE, "timeout", "upstream did not answer within %d ms", g->cfg.timeout_ms);
    if (s->result == CURLE_COULDNT_CONNECT || s->result == CURLE_COULDNT_RESOLVE_HOST)
        return cc_fail(err, CC_ERR_STORAGE, "upstream", "cannot reach the upstream API: %s",
                       s->errbuf[0] ? s->errbuf : curl_easy_strerror(s->result));
    if (s->result == CURLE_ABORTED_BY_CALLBACK)
        return cc_fail(err, CC_ERR_STATE, "", "the transfer was cancelled");
    return cc_fail(err, CC_ERR_STORAGE, "upstream", "upstream transfer failed: %s",
                   s->errbuf[0] ? s->errbuf : curl_easy_strerror(s->result));
}

cc_rc cc_gw_headers_ready(cc_gw_stream *s, int *ready, cc_error *err) {
    cc_rc rc = CC_OK;
    *ready = 0;
    cc_mutex_lock(&s->g->mu);
    if (s->headers_done) *ready = 1;
    else if (s->done && s->result == CURLE_OK)
        rc = cc_fail(err, CC_ERR_STORAGE, "upstream", "upstream closed the connection without a response");
    else if (s->done) rc = fail_from(s, err);
    else s->waiting = 1;
    cc_mutex_unlock(&s->g->mu);
    return rc;
}

/* mu held. Returns 1 when the I/O thread must be woken to resume the transfer. */
static int take_locked(cc_gw_stream *s, void *buf, size_t cap, size_t *n) {
    size_t avail = s->len - s->off;
    size_t k = avail < cap ? avail : cap;
    memcpy(buf, s->buf + s->off, k);
    s->off += k;
    *n = k;
    if (s->paused && !s->want_cont && s->len - s->off <= s->buf_cap / 2) {
        s->want_cont = 1;
        if (s->io_owned && !s->in_ctl) {
            s->in_ctl = 1;
            s->c_next = s->g->ctl;
            s->g->ctl = s;
            return 1;
        }
    }
    return 0;
}

static cc_rc take(cc_gw_stream *s, void *buf, size_t cap, size_t *n, int *again, int mark_waiting, cc_error *err) {
    *n = 0;
    *again = 0;
    if (cap == 0) return cc_fail(err, CC_ERR_INVALID, "size", "read size must be positive");
    cc_rc rc = CC_OK;
    int wake = 0;
    cc_mutex_lock(&s->g->mu);
    if (s->len > s->off) wake = take_locked(s, buf, cap, n);
    else if (s->done && s->result != CURLE_OK) rc = fail_from(s, err);
    else if (!s->done || !s->headers_done) {
        if (s->done) rc = cc_fail(err, CC_ERR_STORAGE, "upstream", "upstream closed the connection without a response");
        else {
            *again = 1;
            if (mark_waiting) s->waiting = 1;
        }
    }
    cc_mutex_unlock(&s->g->mu);
    if (wake) cc_poller_wake(s->g->poller);
    return rc;
}

cc_rc cc_gw_take(cc_gw_stream *s, void *buf, size_t cap, size_t *n, int *again, cc_error *err) {
    return take(s, buf, cap, n, again, 1, err);
}

cc_rc cc_gw_read_nowait(cc_gw_stream *s, void *buf, size_t cap, size_t *n, int *again, cc_error *err) {
    return take(s, buf, cap, n, again, 0, err);
}

size_t cc_gw_ready(cc_gateway *g, uint64_t *ids, size_t cap) {
    size_t k = 0;
    cc_mutex_lock(&g->mu);
    while (g->ready && k < cap) {
        cc_gw_stream *s = g->ready;
        g->ready = s->r_next;
        s->on_ready = 0;
        ids[k++] = s->id;
    }
    if (!g->ready) {
        g->ready_tail = NULL;
        g->notified = 0;
    }
    cc_mutex_unlock(&g->mu);
    return k;
}

/* Waits (bounded) until pred holds or the transfer ended. */
static void wait_for(cc_gw_stream *s, int (*pred)(const cc_gw_stream *)) {
    cc_gateway *g = s->g;
    cc_mutex_lock(&g->mu);
    g->blocking++;
    while (!pred(s) && !s->done) {
        /* curl's own timeouts end every transfer; the timed wait only guards against a lost wake-up. */
        cc_cond_timedwait_ms(&g->cv, &g->mu, 1000);
    }
    g->blocking--;
    cc_mutex_unlock(&g->mu);
}

static int have_headers(const cc_gw_stream *s) { return s->headers_done; }
static int have_data(const cc_gw_stream *s) { return s->len > s->off; }

cc_rc cc_gw_start(cc_gateway *g, const cc_gw_request *req, cc_gw_stream **out, cc_error *err) {
    cc_gw_stream *s;
    cc_rc rc = cc_gw_submit(g, req, &s, err);
    if (rc != CC_OK) return rc;
    wait_for(s, have_headers);
    int ready;
    rc = cc_gw_headers_ready(s, &ready, err);
    if (rc == CC_OK && !ready) rc = cc_fail(err, CC_ERR_STORAGE, "upstream", "no response"); /* unreachable */
    if (rc != CC_OK) {
        cc_mutex_lock(&g->mu);
        s->waiting = 0;
        cc_mutex_unlock(&g->mu);
        cc_gw_close(s);
        return rc;
    }
    *out = s;
    return CC_OK;
}

cc_rc cc_gw_read(cc_gw_stream *s, void *buf, size_t cap, size_t *n, cc_error *err) {
    for (;;) {
        int again;
        cc_rc rc = take(s, buf, cap, n, &again, 0, err);
        if (rc != CC_OK || !again) return rc;
        wait_for(s, have_data);
    }
}

int cc_gw_status(const cc_gw_stream *s) { return (int)s->status; }
int cc_gw_header_count(const cc_gw_stream *s) { return s->headers_done ? s->nhdr : 0; }
const char *cc_gw_header(const cc_gw_stream *s, int i) {
    return (s->headers_done && i >= 0 && i < s->nhdr) ? s->hdr[i] : NULL;
}

int64_t cc_gw_body_bytes(cc_gw_stream *s) {
    cc_mutex_lock(&s->g->mu);
    int64_t b = s->body_bytes;
    cc_mutex_unlock(&s->g->mu);
    return b;
}

int cc_gw_finished(cc_gw_stream *s) {
    cc_mutex_lock(&s->g->mu);
    int f = s->done && s->result == CURLE_OK && s->off == s->len;
    cc_mutex_unlock(&s->g->mu);
    return f;
}

int cc_gw_ended(cc_gw_stream *s, int *timed_out) {
    cc_mutex_lock(&s->g->mu);
    int d = s->done;
    if (timed_out) *timed_out = d && s->result == CURLE_OPERATION_TIMEDOUT;
    if (d) s->waiting = 0;
    else s->waiting = 1; /* its end will come out of cc_gw_ready */
    cc_mutex_unlock(&s->g->mu);
    return d;
}

int64_t cc_gw_content_length(const cc_gw_stream *s) {
    return s->headers_done && s->length >= 0 ? s->length : -1;
}

int64_t cc_gw_credits_used(cc_gw_stream *s) {
    cc_mutex_lock(&s->g->mu);
    int64_t c = s->headers_done ? s->credits_used_micro : -1;
    cc_mutex_unlock(&s->g->mu);
    return c;
}

void cc_gw_usage(cc_gw_stream *s, cc_usage *out) {
    cc_usage_init(out);
    cc_mutex_lock(&s->g->mu);
    if (s->headers_done) {
        if (s->capturing && s->cap && s->done && s->result == CURLE_OK) cc_usage_from_json(s->cap, s->cap_len, out);
        out->credits_used_micro = s->credits_used_micro;
    }
    cc_mutex_unlock(&s->g->mu);
}

void cc_gw_detach(cc_gw_stream *s) {
    cc_gateway *g = s->g;
    int wake = 0;
    cc_mutex_lock(&g->mu);
    s->detached = 1;
    s->off = s->len = 0;
    if (s->paused && s->io_owned && !s->in_ctl) {
        s->want_cont = 1;
        s->in_ctl = 1;
        s->c_next = g->ctl;
        g->ctl = s;
        wake = 1;
    }
    cc_mutex_unlock(&g->mu);
    if (wake) cc_poller_wake(g->poller);
}

void cc_gw_close(cc_gw_stream *s) {
    if (!s) return;
    cc_gateway *g = s->g;
    int wake = 0, free_now = 0;
    cc_mutex_lock(&g->mu);
    CC_ASSERT(s->consumer_open);
    s->consumer_open = 0;
    s->waiting = 0;
    g->open_streams--;
    if (s->on_ready) {
        cc_gw_stream *prev = NULL;
        for (cc_gw_stream *r = g->ready; r; prev = r, r = r->r_next)
            if (r == s) {
                if (prev) prev->r_next = s->r_next;
                else g->ready = s->r_next;
                if (g->ready_tail == s) g->ready_tail = prev;
                break;
            }
        s->on_ready = 0;
    }
    if (s->io_owned) {
        s->cancel = 1;
        if (!s->in_ctl) {
            s->in_ctl = 1;
            s->c_next = g->ctl;
            g->ctl = s;
        }
        wake = 1;
    }
    free_now = --s->refs == 0;
    cc_mutex_unlock(&g->mu);
    if (wake) cc_poller_wake(g->poller);
    if (free_now) stream_free(s);
}
