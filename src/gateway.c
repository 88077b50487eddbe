/*
** gateway.c — streaming upstream client on libcurl's multi interface.
** See gateway.h for the contract.
**
** One transfer = one (multi, easy) pair taken from a pool. The caller pulls:
** cc_gw_start() and cc_gw_read() drive curl_multi_perform()/curl_multi_poll()
** until headers, body bytes or the end are there. When the per-transfer
** buffer is full the write callback pauses the transfer (CURL_WRITEFUNC_PAUSE)
** and cc_gw_read() resumes it after draining, so a 200 MB download never
** occupies more than CC_GW_BUFFER_BYTES_MAX here.
*/
#include "gateway.h"
#include "money.h"
#include "tls.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <string.h>

typedef struct gw_handle {
    CURLM *multi;
    CURL *easy;
    struct gw_handle *next;
} gw_handle;

struct cc_gateway {
    char *base;                 /* without trailing '/' */
    char *key_header;           /* "X-API-KEY: ..." */
    cc_gateway_config cfg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    gw_handle *idle;
    int live;                   /* handles in existence (idle + in use) */
};

struct cc_gw_stream {
    cc_gateway *g;
    gw_handle *h;
    struct curl_slist *req_headers;
    char *req_body;
    long status;
    int headers_done;
    int done;
    CURLcode result;
    char errbuf[CURL_ERROR_SIZE];
    /* response headers */
    char *hdr[CC_GW_HEADERS_MAX];
    int nhdr;
    size_t hdr_bytes;
    int json;
    int64_t credits_used_micro;
    /* body buffer: bytes [off, len) not yet read */
    char buf[CC_GW_BUFFER_BYTES_MAX];
    size_t off, len;
    int paused;
    int64_t body_bytes;
    int too_big;
    /* capture for usage */
    char *cap;
    size_t cap_len;
    int capturing;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

cc_rc cc_gateway_open(const cc_gateway_config *cfg, cc_gateway **out, cc_error *err) {
    *out = NULL;
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) return cc_fail(err, CC_ERR_STORAGE, "", "libcurl failed to initialise");
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
    if (cfg->request_bytes_max < 0 || cfg->request_bytes_max > (INT64_C(1) << 30))
        return cc_fail(err, CC_ERR_INVALID, "request_bytes_max", "request limit must be 0..1 GiB");
    if (cfg->response_bytes_max < 1 || cfg->response_bytes_max > (INT64_C(16) << 30))
        return cc_fail(err, CC_ERR_INVALID, "response_bytes_max", "response limit must be 1 B..16 GiB");
    if (cfg->handles_max < 1 || cfg->handles_max > CC_GW_HANDLES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "handles_max", "handles_max must be 1..%d", CC_GW_HANDLES_MAX);
    cc_gateway *g = calloc(1, sizeof *g);
    if (!g) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    g->cfg = *cfg;
    g->base = strdup(cfg->upstream_base);
    size_t kl = strlen(key) + 16;
    g->key_header = malloc(kl);
    if (!g->base || !g->key_header) {
        free(g->base);
        free(g->key_header);
        free(g);
        return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    size_t bl = strlen(g->base);
    while (bl > 0 && g->base[bl - 1] == '/') g->base[--bl] = 0;
    snprintf(g->key_header, kl, "X-API-KEY: %s", key);
    g->cfg.upstream_base = g->base;
    g->cfg.upstream_key = NULL; /* only key_header keeps it */
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    *out = g;
    return CC_OK;
}

static void handle_free(gw_handle *h) {
    if (!h) return;
    if (h->multi && h->easy) curl_multi_remove_handle(h->multi, h->easy);
    if (h->easy) curl_easy_cleanup(h->easy);
    if (h->multi) curl_multi_cleanup(h->multi);
    free(h);
}

void cc_gateway_close(cc_gateway *g) {
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    gw_handle *h = g->idle;
    g->idle = NULL;
    int live = g->live;
    pthread_mutex_unlock(&g->mu);
    int freed = 0;
    while (h) {
        gw_handle *n = h->next;
        handle_free(h);
        h = n;
        freed++;
    }
    CC_ASSERT(freed == live); /* every stream was closed */
    memset(g->key_header, 0, strlen(g->key_header));
    free(g->key_header);
    free(g->base);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
}

static gw_handle *handle_take(cc_gateway *g) {
    pthread_mutex_lock(&g->mu);
    while (!g->idle && g->live >= g->cfg.handles_max) pthread_cond_wait(&g->cv, &g->mu);
    gw_handle *h = g->idle;
    if (h) {
        g->idle = h->next;
        pthread_mutex_unlock(&g->mu);
        curl_easy_reset(h->easy);
        return h;
    }
    g->live++;
    pthread_mutex_unlock(&g->mu);
    h = calloc(1, sizeof *h);
    if (h) {
        h->multi = curl_multi_init();
        h->easy = curl_easy_init();
    }
    if (!h || !h->multi || !h->easy) {
        handle_free(h);
        pthread_mutex_lock(&g->mu);
        g->live--;
        pthread_cond_signal(&g->cv);
        pthread_mutex_unlock(&g->mu);
        return NULL;
    }
    return h;
}

static void handle_give(cc_gateway *g, gw_handle *h, int reusable) {
    if (!reusable) {
        handle_free(h);
        pthread_mutex_lock(&g->mu);
        g->live--;
    } else {
        pthread_mutex_lock(&g->mu);
        h->next = g->idle;
        g->idle = h;
    }
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* ------------------------------------------------------------ callbacks */

static int hop_by_hop(const char *line, size_t n) {
    static const char *const skip[] = {"connection:", "keep-alive:", "transfer-encoding:", "content-length:",
                                       "proxy-", "te:", "trailer:", "upgrade:", "set-cookie:", NULL};
    for (int i = 0; skip[i]; i++) {
        size_t k = strlen(skip[i]);
        if (n >= k && cc_strncasecmp(line, skip[i], k) == 0) return 1;
    }
    return 0;
}

static size_t header_cb(char *data, size_t size, size_t nitems, void *ud) {
    cc_gw_stream *s = ud;
    size_t n = size * nitems;
    size_t len = n;
    while (len > 0 && (data[len - 1] == '\r' || data[len - 1] == '\n')) len--;
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new header block (after 1xx): forget the previous one. */
        for (int i = 0; i < s->nhdr; i++) free(s->hdr[i]);
        s->nhdr = 0;
        s->hdr_bytes = 0;
        s->json = 0;
        s->credits_used_micro = -1;
        return n;
    }
    if (len == 0) {
        long code = 0;
        curl_easy_getinfo(s->h->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 200) {
            s->status = code;
            s->headers_done = 1;
        }
        return n;
    }
    if (hop_by_hop(data, len)) return n;
    if (s->nhdr >= CC_GW_HEADERS_MAX || s->hdr_bytes + len > CC_GW_HEADER_BYTES_MAX) return n; /* drop extras */
    char *line = malloc(len + 1);
    if (!line) return 0; /* aborts the transfer: out of memory */
    memcpy(line, data, len);
    line[len] = 0;
    /* Header values must not smuggle CR/LF into our response. */
    for (size_t i = 0; i < len; i++)
        if (line[i] == '\r' || line[i] == '\n') line[i] = ' ';
    s->hdr[s->nhdr++] = line;
    s->hdr_bytes += len;
    if (cc_strncasecmp(line, "content-type:", 13) == 0) {
        const char *v = line + 13;
        while (*v == ' ') v++;
        s->json = cc_strncasecmp(v, "application/json", 16) == 0 || strstr(v, "+json") != NULL;
    } else if (cc_strncasecmp(line, "x-comfy-credits-used:", 21) == 0) {
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

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ud) {
    cc_gw_stream *s = ud;
    size_t n = size * nmemb;
    if (!s->headers_done) {
        long code = 0;
        curl_easy_getinfo(s->h->easy, CURLINFO_RESPONSE_CODE, &code);
        s->status = code;
        s->headers_done = 1;
    }
    /* Compact, then pause if the caller has not read enough yet. */
    if (s->off > 0 && s->off == s->len) s->off = s->len = 0;
    if (s->len + n > sizeof s->buf) {
        if (s->off > 0) {
            memmove(s->buf, s->buf + s->off, s->len - s->off);
            s->len -= s->off;
            s->off = 0;
        }
        if (s->len + n > sizeof s->buf) {
            s->paused = 1;
            return CURL_WRITEFUNC_PAUSE;
        }
    }
    if (s->body_bytes + (int64_t)n > s->g->cfg.response_bytes_max) {
        s->too_big = 1;
        return 0; /* aborts with CURLE_WRITE_ERROR */
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    s->body_bytes += (int64_t)n;
    if (s->capturing) {
        if (s->cap_len + n > CC_GW_CAPTURE_BYTES_MAX) {
            s->capturing = 0; /* too large to be a usage report: stop copying */
            free(s->cap);
            s->cap = NULL;
            s->cap_len = 0;
        } else {
            char *nc = realloc(s->cap, s->cap_len + n + 1);
            if (!nc) {
                s->capturing = 0;
            } else {
                s->cap = nc;
                memcpy(s->cap + s->cap_len, data, n);
                s->cap_len += n;
                s->cap[s->cap_len] = 0;
            }
        }
    }
    return n;
}

/* Drives the transfer until `until(s)` holds or it ends. */
static cc_rc pump(cc_gw_stream *s, int (*until)(const cc_gw_stream *), cc_error *err) {
    while (!s->done && !until(s)) {
        int running = 0;
        CURLMcode mc = curl_multi_perform(s->h->multi, &running);
        if (mc != CURLM_OK) return cc_fail(err, CC_ERR_STORAGE, "", "libcurl: %s", curl_multi_strerror(mc));
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(s->h->multi, &left))) {
            if (msg->msg == CURLMSG_DONE) {
                s->done = 1;
                s->result = msg->data.result;
            }
        }
        if (s->done || until(s)) break;
        if (s->paused) break; /* the caller must read first */
        mc = curl_multi_poll(s->h->multi, NULL, 0, 200, NULL);
        if (mc != CURLM_OK) return cc_fail(err, CC_ERR_STORAGE, "", "libcurl: %s", curl_multi_strerror(mc));
    }
    if (s->done && s->result != CURLE_OK) {
        if (s->too_big)
            return cc_fail(err, CC_ERR_LIMIT, "response", "upstream response is larger than %lld bytes",
                           (long long)s->g->cfg.response_bytes_max);
        if (s->result == CURLE_OPERATION_TIMEDOUT)
            return cc_fail(err, CC_ERR_STORAGE, "timeout", "upstream did not answer within %d ms",
                           s->g->cfg.timeout_ms);
        if (s->result == CURLE_COULDNT_CONNECT || s->result == CURLE_COULDNT_RESOLVE_HOST)
            return cc_fail(err, CC_ERR_STORAGE, "upstream", "cannot reach the upstream API: %s",
                           s->errbuf[0] ? s->errbuf : curl_easy_strerror(s->result));
        return cc_fail(err, CC_ERR_STORAGE, "upstream", "upstream transfer failed: %s",
                       s->errbuf[0] ? s->errbuf : curl_easy_strerror(s->result));
    }
    return CC_OK;
}

static int have_headers(const cc_gw_stream *s) { return s->headers_done; }
static int have_data(const cc_gw_stream *s) { return s->len > s->off; }

/* ------------------------------------------------------------ requests */

static int valid_token(const char *v, size_t max) {
    size_t n = strnlen(v, max + 1);
    if (n == 0 || n > max) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) return 0;
    return 1;
}

static cc_rc add_header(cc_gw_stream *s, const char *name, const char *value, cc_error *err) {
    char line[600];
    int n = snprintf(line, sizeof line, "%s: %s", name, value);
    if (n < 0 || (size_t)n >= sizeof line) return cc_fail(err, CC_ERR_INVALID, name, "%s is too long", name);
    struct curl_slist *l = curl_slist_append(s->req_headers, line);
    if (!l) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    s->req_headers = l;
    return CC_OK;
}

cc_rc cc_gw_start(cc_gateway *g, const cc_gw_request *req, cc_gw_stream **out, cc_error *err) {
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

    cc_gw_stream *s = calloc(1, sizeof *s);
    if (!s) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    s->g = g;
    s->credits_used_micro = -1;
    s->h = handle_take(g);
    if (!s->h) {
        free(s);
        return cc_fail(err, CC_ERR_NOMEM, "", "cannot create a libcurl handle");
    }
    cc_rc rc = CC_OK;
    size_t ul = strlen(g->base) + strlen(path) + (req->query ? strlen(req->query) + 1 : 0) + 1;
    char *url = malloc(ul);
    if (!url) rc = cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    else snprintf(url, ul, "%s%s%s%s", g->base, path, req->query ? "?" : "", req->query ? req->query : "");

    if (rc == CC_OK) rc = add_header(s, "Accept", "*/*", err);
    if (rc == CC_OK && req->content_type) rc = add_header(s, "Content-Type", req->content_type, err);
    if (rc == CC_OK && req->idempotency_key) rc = add_header(s, "Idempotency-Key", req->idempotency_key, err);
    if (rc == CC_OK && req->job_id) rc = add_header(s, "Comfy-Job-Id", req->job_id, err);
    if (rc == CC_OK) {
        struct curl_slist *l = curl_slist_append(s->req_headers, g->key_header);
        if (!l) rc = cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
        else s->req_headers = l;
    }
    /* Without a body curl would send "Expect: 100-continue" for large POSTs. */
    if (rc == CC_OK) {
        struct curl_slist *l = curl_slist_append(s->req_headers, "Expect:");
        if (!l) rc = cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
        else s->req_headers = l;
    }
    if (rc == CC_OK && req->body_len) {
        s->req_body = malloc(req->body_len);
        if (!s->req_body) rc = cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
        else memcpy(s->req_body, req->body, req->body_len);
    }
    if (rc != CC_OK) {
        free(url);
        cc_gw_close(s);
        return rc;
    }
    CURL *e = s->h->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->req_headers);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)g->cfg.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)g->cfg.timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* redirects go back to the client as they are */
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    cc_tls_apply(e); /* explicit CA bundle: the wheel's libcurl has the build machine's path */
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, NULL); /* pass bodies through unchanged */
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    if (mi == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, s->req_body ? s->req_body : "");
        if (mi != 1) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, methods[mi]);
    }
    free(url); /* curl copies the URL */
    CURLMcode mc = curl_multi_add_handle(s->h->multi, e);
    if (mc != CURLM_OK) {
        cc_gw_close(s);
        return cc_fail(err, CC_ERR_STORAGE, "", "libcurl: %s", curl_multi_strerror(mc));
    }
    rc = pump(s, have_headers, err);
    if (rc == CC_OK && !s->headers_done)
        rc = cc_fail(err, CC_ERR_STORAGE, "upstream", "upstream closed the connection without a response");
    if (rc != CC_OK) {
        cc_gw_close(s);
        return rc;
    }
    s->capturing = s->json;
    /* Bytes that arrived together with the headers were not captured yet. */
    if (s->capturing && s->len > 0) {
        s->cap = malloc(s->len + 1);
        if (!s->cap) s->capturing = 0;
        else {
            memcpy(s->cap, s->buf, s->len);
            s->cap_len = s->len;
            s->cap[s->cap_len] = 0;
        }
    }
    *out = s;
    return CC_OK;
}

int cc_gw_status(const cc_gw_stream *s) { return (int)s->status; }
int cc_gw_header_count(const cc_gw_stream *s) { return s->nhdr; }
const char *cc_gw_header(const cc_gw_stream *s, int i) { return (i >= 0 && i < s->nhdr) ? s->hdr[i] : NULL; }
int64_t cc_gw_body_bytes(const cc_gw_stream *s) { return s->body_bytes; }
int cc_gw_finished(const cc_gw_stream *s) { return s->done && s->result == CURLE_OK && s->off == s->len; }

cc_rc cc_gw_read(cc_gw_stream *s, void *buf, size_t cap, size_t *n, cc_error *err) {
    *n = 0;
    if (cap == 0) return cc_fail(err, CC_ERR_INVALID, "size", "read size must be positive");
    if (!have_data(s)) {
        if (s->paused) {
            s->paused = 0;
            curl_easy_pause(s->h->easy, CURLPAUSE_CONT);
        }
        cc_rc rc = pump(s, have_data, err);
        if (rc != CC_OK) return rc;
    }
    size_t avail = s->len - s->off;
    size_t k = avail < cap ? avail : cap;
    memcpy(buf, s->buf + s->off, k);
    s->off += k;
    *n = k;
    if (!s->done && !s->paused) {
        /* Let curl notice a transfer that already ended, without waiting, so a
        ** small response is known complete after one read. */
        int running = 0;
        curl_multi_perform(s->h->multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(s->h->multi, &left)))
            if (msg->msg == CURLMSG_DONE) {
                s->done = 1;
                s->result = msg->data.result;
            }
    }
    return CC_OK;
}

void cc_gw_usage(const cc_gw_stream *s, cc_usage *out) {
    cc_usage_init(out);
    if (s->capturing && s->cap && s->done) cc_usage_from_json(s->cap, s->cap_len, out);
    out->credits_used_micro = s->credits_used_micro;
}

void cc_gw_close(cc_gw_stream *s) {
    if (!s) return;
    int reusable = s->done && s->result == CURLE_OK;
    if (s->h) {
        curl_multi_remove_handle(s->h->multi, s->h->easy);
        handle_give(s->g, s->h, reusable);
    }
    curl_slist_free_all(s->req_headers);
    free(s->req_body);
    for (int i = 0; i < s->nhdr; i++) free(s->hdr[i]);
    free(s->cap);
    free(s);
}

/* ------------------------------------------------------------ usage */

static int64_t num_at(const cJSON *root, const char *a, const char *b) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, a);
    if (!cJSON_IsObject(o)) return -1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, b);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e15) return -1;
    return (int64_t)v->valuedouble; /* token counts are integers; not money */
}

static int64_t add_known(int64_t a, int64_t b) {
    if (a < 0) return b;
    if (b < 0) return a;
    return a + b;
}

void cc_usage_from_json(const char *json, size_t len, cc_usage *u) {
    cc_usage_init(u);
    if (!json || len == 0) return;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return;
    if (cJSON_IsObject(root)) {
        /* OpenAI Responses / Images: usage.input_tokens / output_tokens;
        ** Chat Completions: prompt_tokens / completion_tokens. */
        u->input_tokens = add_known(num_at(root, "usage", "input_tokens"), num_at(root, "usage", "prompt_tokens"));
        u->output_tokens =
            add_known(num_at(root, "usage", "output_tokens"), num_at(root, "usage", "completion_tokens"));
        /* Gemini: usageMetadata.promptTokenCount / candidatesTokenCount (+ thoughts). */
        int64_t gi = num_at(root, "usageMetadata", "promptTokenCount");
        int64_t go = add_known(num_at(root, "usageMetadata", "candidatesTokenCount"),
                               num_at(root, "usageMetadata", "thoughtsTokenCount"));
        u->input_tokens = add_known(u->input_tokens, gi);
        u->output_tokens = add_known(u->output_tokens, go);
        /* OpenAI images: one element of data[] per image. */
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
        if (cJSON_IsArray(data) && (num_at(root, "usage", "input_tokens") >= 0 || cJSON_GetArraySize(data) > 0)) {
            const cJSON *first = cJSON_GetArrayItem(data, 0);
            if (cJSON_IsObject(first) && (cJSON_GetObjectItemCaseSensitive(first, "b64_json") ||
                                          cJSON_GetObjectItemCaseSensitive(first, "url")))
                u->images = cJSON_GetArraySize(data);
        }
    }
    cJSON_Delete(root);
}
