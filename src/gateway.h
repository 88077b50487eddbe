/*
** gateway.h — the metering gateway's upstream client (libcurl).
**
** Contract:
**   - An API node's request (method, path, query, body, content type,
**     Idempotency-Key and a few Comfy headers) is sent to the configured
**     upstream with the OPERATOR's key as X-API-KEY. Nothing the user sent as
**     credentials (Authorization, X-API-KEY, cookies) is ever forwarded.
**   - One I/O thread per gateway drives every transfer (libcurl multi
**     interface driven by curl_multi_socket_action, one cc_poller wait for
**     every socket, woken by cc_poller_wake). Callers never
**     drive libcurl themselves: cc_gw_submit() queues a request and returns at
**     once; the status, headers and body chunks are then taken without
**     blocking (cc_gw_headers_ready, cc_gw_take). When nothing is there yet
**     the stream is marked waiting and, as soon as it has news (headers, data,
**     end, failure), its id goes on the ready list and the notify callback
**     runs (from the I/O thread, at most once until cc_gw_ready() drains the
**     list: an event loop turns it into one wake-up for many streams).
**     Blocking forms (cc_gw_start, cc_gw_read) wait on a condition variable
**     for threads and tests.
**   - Bounded everything. At most `handles_max` transfers are in flight: a
**     further submit fails AT ONCE with CC_ERR_LIMIT, field "busy" (nothing is
**     sent upstream; the caller answers 503 with Retry-After). A transfer's
**     slot is released as soon as it ends, succeeds or fails. Nothing waits
**     without a bound: every transfer has a connect timeout and a total
**     timeout, and a transfer whose reader took no data for `reader_idle_ms`
**     while its buffer was full is aborted (field "idle"), so a slow or
**     vanished reader cannot hold a slot forever.
**   - Memory is bounded: at most CC_GW_BUFFER_BYTES_MAX of body is buffered
**     per stream (the transfer is paused until the reader takes data); JSON
**     responses up to CC_GW_CAPTURE_BYTES_MAX are also kept whole so the
**     usage they report can be read (cc_gw_usage) once the body ended.
**   - cc_gw_detach(): the reader gives up the body (its client went away):
**     the I/O thread reads the rest and discards it (still capturing usage)
**     so the call can be counted when it ends; the stream reports its end on
**     the ready list like any other, whatever the end (done, timeout, error).
**   - Other work may share the I/O thread (cc_gateway_set_hook: the C
**     listener, listener.h): the hook's sockets are watched in the same
**     wait as libcurl's (cc_gw_watch), it runs once per loop turn, and gets the news of the
**     streams it submitted with `local` set right there (no ready list, no
**     notify, no thread hop). It must never block. What it submits (with
**     `local`) is handed to libcurl in the same loop turn: the turn's wait is
**     skipped, nothing wakes the thread up through its pipe.
**   - Thread-safe: any thread may submit; a stream is used by one thread at
**     a time. Non-blocking calls only take a short mutex (never held around
**     I/O), so a Python binding may keep the GIL for them.
*/
#ifndef CC_GATEWAY_H
#define CC_GATEWAY_H

#include "cc_common.h"
#include "gwpath.h"
#include "pricing.h"
#include "usage_json.h" /* cc_usage_from_json: what cc_gw_usage reads from the body */

#define CC_GW_BUFFER_BYTES_MAX (256 * 1024)
#define CC_GW_CAPTURE_BYTES_MAX (8 * 1024 * 1024)
#define CC_GW_HEADERS_MAX 48
#define CC_GW_HEADER_BYTES_MAX 8192
#define CC_GW_HANDLES_MAX 1024
#define CC_GW_READER_IDLE_MS_MAX (3600 * 1000)

typedef struct cc_gateway cc_gateway;
typedef struct cc_gw_stream cc_gw_stream;

typedef struct cc_gateway_config {
    const char *upstream_base;    /* e.g. "https://api.comfy.org" (http or https) */
    const char *upstream_key;     /* operator key sent as X-API-KEY; may be "" */
    int connect_timeout_ms;       /* 1..60000 */
    int timeout_ms;               /* whole transfer, 1..3600000 */
    int reader_idle_ms;           /* buffer full and untouched this long: abort; 1..CC_GW_READER_IDLE_MS_MAX */
    int64_t request_bytes_max;    /* 0..1 GiB */
    int64_t response_bytes_max;   /* 1..16 GiB */
    int handles_max;              /* transfers in flight, 1..CC_GW_HANDLES_MAX */
    int io_sched;                 /* CC_GW_IO_BATCH (0: the default) or CC_GW_IO_NORMAL, below */
} cc_gateway_config;
/* How the I/O thread is scheduled. CC_GW_IO_BATCH: as a throughput thread
** (cc_thread_batch_self: SCHED_BATCH on Linux, elsewhere the OS's default).
** Woken by a socket, it does not preempt the task running on the CPU: it
** runs when that task blocks or its time slice ends, and then handles what
** came meanwhile in one turn. Every call wakes it at least twice (the
** client's request, the upstream's answer): preempting ComfyUI or a local
** upstream there costs them context switches and cold caches on every call
** and the I/O thread more turns per call. What it costs: on a CPU that stays
** busy, a wake-up can wait up to the running task's slice (milliseconds),
** small beside an upstream call's own time. Measured (bench_gateway.py
** target "native", 2 cores, interleaved rounds): see the commit that made it
** the default. CC_GW_IO_NORMAL: the OS's default scheduling. */
#define CC_GW_IO_BATCH 0
#define CC_GW_IO_NORMAL 1

/* Starts the I/O thread. `notify(ud)` (may be NULL) is called from the I/O
** thread, under the gateway's mutex, when the ready list becomes non-empty;
** it must not block or call back into the gateway. */
cc_rc cc_gateway_open(const cc_gateway_config *cfg, void (*notify)(void *), void *notify_ud, cc_gateway **out,
                      cc_error *err);
/* Replaces the notify callback (NULL: none). When it returns, the old one
** is not running and will not be called again. */
void cc_gateway_set_notify(cc_gateway *g, void (*notify)(void *), void *notify_ud);
/* Stops the I/O thread; every stream must have been closed. */
void cc_gateway_close(cc_gateway *g);

typedef struct cc_gw_stats {
    int64_t in_flight;            /* transfers holding a slot now */
    int64_t handles_max;
    int64_t started, refused_busy, aborted_idle;
    /* Registration calls for libcurl's sockets (poller add/mod/del) as of the last transfer's end:
    ** a call on a kept-alive connection costs none (gwsock.h). */
    int64_t sock_ctl;
    int64_t reader_idle_ms, request_bytes_max; /* the configuration's */
} cc_gw_stats;
void cc_gateway_stats(cc_gateway *g, cc_gw_stats *out);

typedef struct cc_gw_request {
    const char *method;           /* GET, POST, PUT, PATCH, DELETE */
    const char *path;             /* as the client sent it (percent-encoded); see gwpath.h */
    const char *query;            /* raw query without '?', or NULL */
    const char *content_type;     /* or NULL */
    const char *idempotency_key;  /* or NULL */
    const char *job_id;           /* Comfy-Job-Id (the prompt id), or NULL */
    const void *body;
    size_t body_len;
    void *local;                  /* non-NULL: news goes to the hook's news() (see cc_gateway_set_hook);
                                  ** only the hook submits these, on the I/O thread (no wake-up needed) */
} cc_gw_request;

/* Queues the request; never blocks. CC_ERR_LIMIT field "busy" when saturated. */
cc_rc cc_gw_submit(cc_gateway *g, const cc_gw_request *req, cc_gw_stream **out, cc_error *err);
uint64_t cc_gw_id(const cc_gw_stream *s);
/* *ready = 1 once status and headers are there; 0: not yet (the stream is
** now waiting: its id will come out of cc_gw_ready). Fails when the
** transfer ended without an answer. */
cc_rc cc_gw_headers_ready(cc_gw_stream *s, int *ready, cc_error *err);
/* Takes up to cap buffered body bytes. *n > 0: data; *n = 0 and *again = 1:
** none yet (waiting, as above); *n = 0 and *again = 0: the body is complete. */
cc_rc cc_gw_take(cc_gw_stream *s, void *buf, size_t cap, size_t *n, int *again, cc_error *err);
/* cc_gw_read's first try: cc_gw_take without marking the stream waiting (a
** reader that then blocks in cc_gw_read gets its news there, not from
** cc_gw_ready). Never blocks: a binding may keep the GIL for it. */
cc_rc cc_gw_read_nowait(cc_gw_stream *s, void *buf, size_t cap, size_t *n, int *again, cc_error *err);
/* Ids of waiting streams that have news; returns how many (<= cap). */
size_t cc_gw_ready(cc_gateway *g, uint64_t *ids, size_t cap);

/* Blocking forms: submit + wait for the headers; wait for body bytes. */
cc_rc cc_gw_start(cc_gateway *g, const cc_gw_request *req, cc_gw_stream **out, cc_error *err);
cc_rc cc_gw_read(cc_gw_stream *s, void *buf, size_t cap, size_t *n, cc_error *err);

/* After the headers arrived. */
int cc_gw_status(const cc_gw_stream *s);
/* Response header i as "Name: value" (no CRLF), for i < count; hop-by-hop
** headers and Content-Length are left out. */
int cc_gw_header_count(const cc_gw_stream *s);
const char *cc_gw_header(const cc_gw_stream *s, int i);
/* What the response reported: the headers' credits at once, the body's
** counters once it ended. */
void cc_gw_usage(cc_gw_stream *s, cc_usage *out);
/* The answer's body length as the upstream's Content-Length gave it, once the headers are there;
** -1 when unknown (none, chunked, malformed or conflicting, or a 204/304). libcurl ends the transfer with an
** error when fewer bytes come, and never delivers more. Read by the I/O thread (the listener) or after
** cc_gw_headers_ready said ready. */
int64_t cc_gw_content_length(const cc_gw_stream *s);
/* X-Comfy-Credits-Used of the answer in micro-credits (-1: absent or no headers yet), without reading the body. */
int64_t cc_gw_credits_used(cc_gw_stream *s);
int64_t cc_gw_body_bytes(cc_gw_stream *s);
/* 1 when the whole body arrived and was taken (or discarded after detach). */
int cc_gw_finished(cc_gw_stream *s);
/* 1 when the transfer ended (any way); *timed_out says whether by timeout. */
int cc_gw_ended(cc_gw_stream *s, int *timed_out);
/* The reader gives up the body: see the contract. The stream stays open. */
void cc_gw_detach(cc_gw_stream *s);
/* Releases the stream; a transfer still running is cancelled. Never blocks. */
void cc_gw_close(cc_gw_stream *s);

/* ---- sharing the I/O thread */
#define CC_GW_HOOK_FDS_MAX 2048   /* sockets the hook may watch at once */
typedef struct cc_gw_hook {
    void *ud;
    /* Every loop turn, after the streams' news: ev[0, nev) is what the last
    ** wait saw on the hook's sockets (tags as given to cc_gw_watch; level-
    ** triggered, CC_POLL_IN/OUT/ERR); do the work, change what is watched
    ** (cc_gw_watch), and lower *timeout_ms if a timer is due sooner. */
    void (*turn)(void *ud, const cc_poll_event *ev, int nev, int *timeout_ms);
    /* A stream submitted with `local` has news (headers, data, end); it may be taken from or closed here. */
    void (*news)(void *ud, cc_gw_stream *s, void *local);
    /* The hook is being removed: close every stream it owns and let go of everything. */
    void (*detach)(void *ud);
} cc_gw_hook;
/* I/O thread only (the hook): watch fd for `want` (CC_POLL_IN|OUT) instead of
** `had` (what the last call asked; 0: not watched) with tag (< 2^62).
** want = 0 stops watching: do it before closing the socket. 0 on success. */
int cc_gw_watch(cc_gateway *g, cc_socket_t fd, int had, int want, uint64_t tag);
/* Installs (hook) or removes (NULL) the one hook; returns once the I/O thread
** applied it (the old hook's detach() ran there). Not from the I/O thread.
** cc_gateway_close removes it first. */
void cc_gateway_set_hook(cc_gateway *g, const cc_gw_hook *hook);
/* Makes the I/O thread run a turn soon (any thread). */
void cc_gateway_wake(cc_gateway *g);

#endif
