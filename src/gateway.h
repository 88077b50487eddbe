/*
** gateway.h — the metering gateway's upstream client (libcurl).
**
** Contract:
**   - An API node's request (method, path, query, body, content type,
**     Idempotency-Key and a few Comfy headers) is sent to the configured
**     upstream with the OPERATOR's key as X-API-KEY. Nothing the user sent as
**     credentials (Authorization, X-API-KEY, cookies) is ever forwarded.
**   - The response is streamed: cc_gw_start() returns once the status line and
**     headers arrived; cc_gw_read() pulls the body in chunks. At most
**     CC_GW_BUFFER_BYTES_MAX of body is buffered per request (the transfer is
**     paused until the caller reads), so memory stays bounded however large
**     the response is.
**   - JSON responses up to CC_GW_CAPTURE_BYTES_MAX are also kept whole so the
**     usage they report can be read (cc_gw_usage) after the body was read.
**   - Every request has a connect timeout and a total timeout; bodies have
**     size limits. Failures are cc_errors with a clear message, never crashes.
**   - Thread-safe: any number of threads may run requests at once, up to
**     `handles_max` concurrent transfers (further callers wait). Idle curl
**     handles are pooled so connections to the upstream are kept alive.
**   - All functions block; Python callers release the GIL around them.
*/
#ifndef CC_GATEWAY_H
#define CC_GATEWAY_H

#include "cc_common.h"
#include "gwpath.h"
#include "pricing.h"

#define CC_GW_BUFFER_BYTES_MAX (256 * 1024)
#define CC_GW_CAPTURE_BYTES_MAX (8 * 1024 * 1024)
#define CC_GW_HEADERS_MAX 48
#define CC_GW_HEADER_BYTES_MAX 8192
#define CC_GW_HANDLES_MAX 256

typedef struct cc_gateway cc_gateway;
typedef struct cc_gw_stream cc_gw_stream;

typedef struct cc_gateway_config {
    const char *upstream_base;    /* e.g. "https://api.comfy.org" (http or https) */
    const char *upstream_key;     /* operator key sent as X-API-KEY; may be "" */
    int connect_timeout_ms;       /* 1..60000 */
    int timeout_ms;               /* whole transfer, 1..3600000 */
    int64_t request_bytes_max;    /* 0..1 GiB */
    int64_t response_bytes_max;   /* 1..16 GiB */
    int handles_max;              /* 1..CC_GW_HANDLES_MAX */
} cc_gateway_config;

cc_rc cc_gateway_open(const cc_gateway_config *cfg, cc_gateway **out, cc_error *err);
void cc_gateway_close(cc_gateway *g); /* no stream may be open */

typedef struct cc_gw_request {
    const char *method;           /* GET, POST, PUT, PATCH, DELETE */
    const char *path;             /* as the client sent it (percent-encoded); see gwpath.h */
    const char *query;            /* raw query without '?', or NULL */
    const char *content_type;     /* or NULL */
    const char *idempotency_key;  /* or NULL */
    const char *job_id;           /* Comfy-Job-Id (the prompt id), or NULL */
    const void *body;
    size_t body_len;
} cc_gw_request;

cc_rc cc_gw_start(cc_gateway *g, const cc_gw_request *req, cc_gw_stream **out, cc_error *err);
int cc_gw_status(const cc_gw_stream *s);
/* Response header i as "Name: value" (no CRLF), for i < count; hop-by-hop
** headers and Content-Length are left out. */
int cc_gw_header_count(const cc_gw_stream *s);
const char *cc_gw_header(const cc_gw_stream *s, int i);
/* Reads up to cap bytes; *n = 0 means the body is complete. */
cc_rc cc_gw_read(cc_gw_stream *s, void *buf, size_t cap, size_t *n, cc_error *err);
/* After the body was read: what the response reported. */
void cc_gw_usage(const cc_gw_stream *s, cc_usage *out);
int64_t cc_gw_body_bytes(const cc_gw_stream *s);
/* 1 when the whole body arrived and was read: a further read would return 0. */
int cc_gw_finished(const cc_gw_stream *s);
void cc_gw_close(cc_gw_stream *s);

/* Reads usage counters from a JSON body (OpenAI `usage`, Gemini
** `usageMetadata`, OpenAI image `data` count). Fields not present stay -1. */
void cc_usage_from_json(const char *json, size_t len, cc_usage *u);

#endif
