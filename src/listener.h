/*
** listener.h — the gateway's private loopback listener, served from C: where
** ComfyUI's API-node client sends its calls (comfy_api_base points here).
**
** Contract:
**   - Listens on 127.0.0.1 (or ::1) on a port the kernel picks and serves
**     only "<prefix>/<API path>" for the prefixes /credits/gateway/ and
**     /api/credits/gateway/ (anything else: 404). It runs on the gateway's
**     I/O thread (gateway.h cc_gateway_set_hook): accepting, reading,
**     parsing (http1.h), admitting (run.h), forwarding (gateway.h) and
**     writing happen there, without Python, without a thread hop and
**     without blocking (sockets are non-blocking; a hold extension, which
**     touches the ledger, goes to the listener's own small thread).
**   - Each call is handled exactly as the Python route does
**     (comfy_credits_ext/gateway_route.py), in the same order and with the
**     same refusals {"error": {"message", "type"}}: upstream key not set 400
**     credits_upstream_not_configured; no run token (X-API-KEY, else
**     Authorization: Bearer) 402 credits_hold_missing; a path outside the
**     prefix 400 credits_gateway_bad_request; saturated gateway 503
**     credits_gateway_busy with Retry-After (nothing sent, nothing counted);
**     cc_run_call_begin's refusals 402 credits_hold_expired /
**     credits_hold_resolved / credits_hold_invalid, 403
**     credits_path_not_allowed / credits_calls_limit; a request the gateway
**     refuses 400; an unreachable upstream 502, its timeout 504
**     (credits_upstream_unavailable). The answer's credits are reported when
**     its headers arrive (cc_run_call_headers), its usage when it ends
**     (cc_run_call_end). A client that goes away mid-call is still counted:
**     the transfer is read to its end (cc_gw_detach) and then ended.
**   - The answer is framed as cheaply as the upstream's: an answer whose
**     whole body is already here goes out as one response with its
**     Content-Length (head and body in one send); a streamed one carries
**     the upstream's Content-Length when it gave one (cc_gw_content_length;
**     an end short of it closes the connection), else it is chunked
**     (HTTP/1.1) or ends with the connection (HTTP/1.0).
**   - Limits on everything: at most connections_max connections (more wait
**     in the kernel's backlog), a request head of CC_H1_HEAD_BYTES_MAX, a
**     body of request_bytes_max (Content-Length or chunked; 413), the whole
**     request within body_timeout_ms (408), an idle keep-alive connection
**     closed after keepalive_ms. Output is backpressured: at most one chunk
**     (CC_LS_CHUNK_BYTES) is buffered per connection and the stream is only
**     taken from when it was written; a client that takes nothing for the
**     gateway's reader_idle_ms loses its connection (the gateway's own idle
**     abort then frees the transfer). Requests on one connection are
**     answered in order (pipelining is served one request at a time).
**   - Log lines (saturation, rate-limited to one a second with a count;
**     upstream failures; idle readers) are queued (at most
**     CC_LS_LOG_LINES_MAX, then counted as dropped) for cc_listener_logs.
**   - cc_listener_close returns once the I/O thread let go of everything:
**     connections closed, calls in flight cancelled and ended (counted as
**     timed out when no answer had come: the upstream may have taken them).
**     The runs registry and the gateway must outlive the listener.
**   - Portable through cc_platform.h sockets (BSD sockets / Winsock 2) and
**     its cc_poller (epoll; poll/WSAPoll elsewhere), shared with libcurl's
**     sockets through the gateway (cc_gw_watch); checked with mingw-w64 (compile only: the listener
**     needs libcurl, so it is not in the wine-run suites).
*/
#ifndef CC_LISTENER_H
#define CC_LISTENER_H

#include "gateway.h"
#include "http1.h"
#include "run.h"

#define CC_LS_CONNECTIONS_MAX 1024
#define CC_LS_CHUNK_BYTES (64 * 1024)
#define CC_LS_LOG_LINES_MAX 64
#define CC_LS_LOG_LINE_BYTES 480
#define CC_LS_EXTEND_QUEUE_MAX 256
#define CC_LS_RETRY_AFTER_S 1
/* Request bodies buffered by all connections at once (bytes), by default:
** beyond it a new body is refused with 503 + Retry-After (see listener.c
** body_grow). At least request_bytes_max, so one largest request always fits. */
#define CC_LS_BODY_BYTES_TOTAL_MAX (256 * 1024 * 1024)
#define CC_LS_TOKEN_BYTES_MAX 1024
#define CC_LS_VALUE_BYTES_MAX 1024

typedef struct cc_listener cc_listener;

typedef struct cc_listener_config {
    int ipv6;                   /* 0: 127.0.0.1, 1: ::1 */
    int connections_max;        /* 1..CC_LS_CONNECTIONS_MAX */
    int body_timeout_ms;        /* a request's head and body within this, 1..3600000 */
    int keepalive_ms;           /* idle keep-alive connections closed after this, 1..3600000 */
    int upstream_configured;    /* 0: every call is refused (the operator set no upstream key) */
    int64_t bodies_bytes_max;   /* request bodies buffered by all connections at once; 0: the default
                                ** CC_LS_BODY_BYTES_TOTAL_MAX; never below request_bytes_max */
} cc_listener_config;

typedef struct cc_listener_stats {
    int64_t connections;        /* open now */
    int64_t accepted, requests, refused_busy, abandoned, calls_open;
} cc_listener_stats;

/* Starts listening and hooks into the gateway's I/O thread. */
cc_rc cc_listener_open(cc_gateway *g, cc_runs *r, const cc_listener_config *cfg, cc_listener **out, int *port,
                       cc_error *err);
void cc_listener_close(cc_listener *l);
void cc_listener_set_upstream_configured(cc_listener *l, int on);
void cc_listener_stats_get(cc_listener *l, cc_listener_stats *out);
/* Drains the queued log lines into buf, each ending in '\n' (cut at cap);
** returns the bytes written. *dropped: lines lost to a full queue since the
** last call. */
size_t cc_listener_logs(cc_listener *l, char *buf, size_t cap, int64_t *dropped);

#endif
