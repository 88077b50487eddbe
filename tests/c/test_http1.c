/* test_http1.c — the HTTP/1.1 request parser: heads, framing, chunked bodies, limits. */
#include "ctest.h"
#include "http1.h"

#include <ctype.h>

#define MAXB (1 << 20)

static cc_h1_rc head(const char *s, cc_h1_head *h, int *status) {
    cc_error e;
    return cc_h1_parse_head(s, strlen(s), CC_H1_HEAD_BYTES_MAX, MAXB, h, status, &e);
}

static int refused_with(const char *s) {
    cc_h1_head h;
    int st = 0;
    cc_h1_rc rc = head(s, &h, &st);
    if (rc != CC_H1_BAD) fprintf(stderr, "not refused (rc %d): %s\n", (int)rc, s);
    return rc == CC_H1_BAD ? st : 0;
}

static int span_eq(cc_h1_span s, const char *lit) { return s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0; }

static void a_plain_request(void) {
    const char *req = "POST /credits/gateway/proxy/x?a=1 HTTP/1.1\r\nHost: 127.0.0.1:5\r\n"
                      "X-API-KEY:  tok \t\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}NEXT";
    cc_h1_head h;
    int st;
    CHECK(head(req, &h, &st) == CC_H1_DONE);
    CHECK(span_eq(h.method, "POST"));
    CHECK(span_eq(h.target, "/credits/gateway/proxy/x?a=1"));
    CHECK_EQ_I64(h.version_minor, 1);
    CHECK_EQ_I64(h.nfields, 4);
    CHECK(span_eq(*cc_h1_field_value(&h, "x-api-key"), "tok")); /* trimmed, case-insensitive */
    CHECK_EQ_I64(h.content_length, 2);
    CHECK(!h.chunked && h.keep_alive && !h.expect_continue);
    CHECK_EQ_I64(h.head_bytes, strlen(req) - 6);
    CHECK(cc_h1_field_value(&h, "cookie") == NULL);
    /* Every proper prefix is incomplete, never refused. */
    for (size_t k = 0; k + 6 < strlen(req); k++) {
        cc_error e;
        cc_h1_rc rc = cc_h1_parse_head(req, k, CC_H1_HEAD_BYTES_MAX, MAXB, &h, &st, &e);
        if (rc != CC_H1_MORE) fprintf(stderr, "prefix %zu: rc %d\n", k, (int)rc);
        CHECK(rc == CC_H1_MORE);
    }
}

/* The names the framing and the listener read are recognised in the parse's pass: the first of each (any
** case), how many; names that only look alike (same length, one letter off; a prefix) are not them. */
static void recognised_fields(void) {
    static const struct {
        cc_h1_known k;
        const char *name;
    } names[] = {{CC_H1_F_CONTENT_LENGTH, "content-length"}, {CC_H1_F_TRANSFER_ENCODING, "transfer-encoding"},
                 {CC_H1_F_CONNECTION, "connection"},         {CC_H1_F_EXPECT, "expect"},
                 {CC_H1_F_X_API_KEY, "x-api-key"},           {CC_H1_F_AUTHORIZATION, "authorization"},
                 {CC_H1_F_CONTENT_TYPE, "content-type"},     {CC_H1_F_IDEMPOTENCY_KEY, "idempotency-key"},
                 {CC_H1_F_COMFY_JOB_ID, "comfy-job-id"}};
    CHECK_EQ_I64((int64_t)(sizeof names / sizeof names[0]), CC_H1_F_KNOWN_COUNT);
    cc_h1_head h;
    int st;
    char req[2048], upper[64], near[64];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *n = names[i].name;
        size_t len = strlen(n);
        for (size_t j = 0; j <= len; j++) upper[j] = (char)(j % 2 ? toupper((unsigned char)n[j]) : n[j]);
        memcpy(near, n, len + 1);
        near[len - 1] = (char)(near[len - 1] == 'z' ? 'y' : near[len - 1] + 1); /* same length, one letter off */
        /* Values that pass the framing checks for each name. */
        const char *v1 = names[i].k == CC_H1_F_CONTENT_LENGTH ? "0" : names[i].k == CC_H1_F_TRANSFER_ENCODING ?
                         "chunked" : names[i].k == CC_H1_F_EXPECT ? "100-continue" : "first";
        snprintf(req, sizeof req, "POST / HTTP/1.1\r\n%s: x\r\n%.*s: x\r\n%s: %s\r\nA: b\r\n%s: second\r\n\r\n",
                 near, (int)(len - 1), n, upper, v1, n);
        cc_h1_rc rc = head(req, &h, &st);
        if (names[i].k == CC_H1_F_CONTENT_LENGTH || names[i].k == CC_H1_F_TRANSFER_ENCODING ||
            names[i].k == CC_H1_F_EXPECT) {
            CHECK(rc == CC_H1_BAD); /* two of them: refused (the count is what refuses) */
            snprintf(req, sizeof req, "POST / HTTP/1.1\r\n%s: x\r\n%.*s: x\r\n%s: %s\r\nA: b\r\n\r\n", near,
                     (int)(len - 1), n, upper, v1);
            rc = head(req, &h, &st);
            CHECK(rc == CC_H1_DONE);
            CHECK_EQ_I64(cc_h1_known_count(&h, names[i].k), 1);
        } else {
            CHECK(rc == CC_H1_DONE);
            CHECK_EQ_I64(cc_h1_known_count(&h, names[i].k), 2);
        }
        if (rc != CC_H1_DONE) continue;
        const cc_h1_span *v = cc_h1_known_value(&h, names[i].k);
        CHECK(v != NULL && span_eq(*v, v1));
        CHECK(v == cc_h1_field_value(&h, n)); /* the same field as the lookup by name */
        for (size_t j = 0; j < sizeof names / sizeof names[0]; j++)
            if (j != i) CHECK(cc_h1_known_value(&h, names[j].k) == NULL && cc_h1_known_count(&h, names[j].k) == 0);
    }
    CHECK(head("GET / HTTP/1.1\r\nHost: x\r\n\r\n", &h, &st) == CC_H1_DONE);
    for (int k = 0; k < CC_H1_F_KNOWN_COUNT; k++) CHECK(cc_h1_known_value(&h, (cc_h1_known)k) == NULL);
}

static void connection_and_versions(void) {
    cc_h1_head h;
    int st;
    CHECK(head("GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n", &h, &st) == CC_H1_DONE && !h.keep_alive);
    CHECK(head("GET / HTTP/1.0\r\n\r\n", &h, &st) == CC_H1_DONE && !h.keep_alive && h.version_minor == 0);
    CHECK(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &h, &st) == CC_H1_DONE && h.keep_alive);
    CHECK(head("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", &h, &st) == CC_H1_DONE &&
          !h.keep_alive);
    CHECK(head("\r\n\r\nGET / HTTP/1.1\r\n\r\n", &h, &st) == CC_H1_DONE && h.head_bytes == 22);
    CHECK(head("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", &h, &st) == CC_H1_DONE &&
          h.expect_continue);
    CHECK(head("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n", &h, &st) == CC_H1_DONE && h.chunked &&
          h.content_length == -1);
    CHECK_EQ_I64(refused_with("GET / HTTP/2.0\r\n\r\n"), 505);
    CHECK_EQ_I64(refused_with("GET / HTTP/1.2\r\n\r\n"), 505);
    CHECK_EQ_I64(refused_with("GET / HTTP/1.1\r\nExpect: something\r\n\r\n"), 417);
}

static void malformed_heads(void) {
    const char *bad400[] = {
        "GET / HTTP/1.1\nHost: x\r\n\r\n",              /* bare LF */
        "GET / HTTP/1.1\r\nHost: x\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\r\n\r\n",          /* bare CR */
        "GET  / HTTP/1.1\r\n\r\n",                      /* two spaces */
        "GET /x HTTP/1.1 \r\n\r\n",
        "GET x HTTP/1.1\r\n\r\n",                       /* not origin-form */
        "GET http://evil/ HTTP/1.1\r\n\r\n",
        "GET /a#b HTTP/1.1\r\n\r\n",
        "GET /a\x01 HTTP/1.1\r\n\r\n",
        "GET /\xc3\xa9 HTTP/1.1\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\n Folded: x\r\n\r\n",          /* obs-fold */
        "GET / HTTP/1.1\r\nHost : x\r\n\r\n",             /* space before the colon */
        "GET / HTTP/1.1\r\n: x\r\n\r\n",
        "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.x\r\n\r\n",
        "GET / FTP/1.1\r\n\r\n",
        "GET /\r\n\r\n",
        NULL};
    for (int i = 0; bad400[i]; i++) {
        int st = refused_with(bad400[i]);
        if (st != 400) fprintf(stderr, "case %d: status %d\n", i, st);
        CHECK_EQ_I64(st, 400);
    }
    /* A NUL inside the request line (strlen would stop there: pass the length). */
    cc_h1_head h;
    int st;
    cc_error e;
    CHECK(cc_h1_parse_head("GET /a\0b HTTP/1.1\r\n\r\n", 21, CC_H1_HEAD_BYTES_MAX, MAXB, &h, &st, &e) == CC_H1_BAD);
    CHECK_EQ_I64(refused_with("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501);
    CHECK_EQ_I64(refused_with("POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n"), 501);
    CHECK_EQ_I64(refused_with("VERYLONGMETHODNAMEXYZ / HTTP/1.1\r\n\r\n"), 501);
    /* Garbage is refused before the line ends (no waiting for a CRLF that never comes). */
    CHECK(cc_h1_parse_head("\x16\x03\x01\x02", 4, CC_H1_HEAD_BYTES_MAX, MAXB, &h, &st, &e) == CC_H1_BAD);
}

static void limits(void) {
    static char big[CC_H1_HEAD_BYTES_MAX + 512];
    cc_h1_head h;
    int st;
    cc_error e;
    /* The body limit. */
    CHECK_EQ_I64(refused_with("POST / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n"), 413);
    CHECK(head("POST / HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n", &h, &st) == CC_H1_DONE &&
          h.content_length == MAXB);
    CHECK_EQ_I64(refused_with("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"), 413);
    CHECK(head("POST / HTTP/1.1\r\nContent-Length: 000000000000000007\r\n\r\n", &h, &st) == CC_H1_DONE &&
          h.content_length == 7);
    /* Header count. */
    size_t n = (size_t)snprintf(big, sizeof big, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < CC_H1_HEADERS_MAX; i++) n += (size_t)snprintf(big + n, sizeof big - n, "X-%d: v\r\n", i);
    snprintf(big + n, sizeof big - n, "\r\n");
    CHECK(head(big, &h, &st) == CC_H1_DONE && h.nfields == CC_H1_HEADERS_MAX);
    n = (size_t)snprintf(big, sizeof big, "GET / HTTP/1.1\r\n");
    for (int i = 0; i <= CC_H1_HEADERS_MAX; i++) n += (size_t)snprintf(big + n, sizeof big - n, "X-%d: v\r\n", i);
    snprintf(big + n, sizeof big - n, "\r\n");
    CHECK_EQ_I64(refused_with(big), 431);
    /* Head bytes: a head that does not end within the limit is refused, not waited for. */
    n = (size_t)snprintf(big, sizeof big, "GET / HTTP/1.1\r\nX: ");
    memset(big + n, 'a', sizeof big - n);
    CHECK(cc_h1_parse_head(big, 4096, 4096, MAXB, &h, &st, &e) == CC_H1_BAD && st == 431);
    CHECK(cc_h1_parse_head(big, 4095, 4096, MAXB, &h, &st, &e) == CC_H1_MORE);
    CHECK(cc_h1_parse_head(big, sizeof big, 1 << 30, MAXB, &h, &st, &e) == CC_H1_BAD && st == 431); /* clamped */
    memcpy(big, "GET /", 5);
    memset(big + 5, 'a', sizeof big - 5);
    CHECK(cc_h1_parse_head(big, sizeof big, CC_H1_HEAD_BYTES_MAX, MAXB, &h, &st, &e) == CC_H1_BAD && st == 414);
    /* A target over CC_H1_TARGET_BYTES_MAX inside a head within limits. */
    n = 5 + CC_H1_TARGET_BYTES_MAX + 1;
    snprintf(big + n, sizeof big - n, " HTTP/1.1\r\n\r\n");
    CHECK_EQ_I64(refused_with(big), 414);
}

/* Decodes a whole chunked body fed in pieces of `step` bytes into a buffer of `cap` bytes grown by doubling. */
static cc_h1_rc dechunk(const char *in, size_t n, size_t step, int64_t max, char *out, size_t *out_len,
                        size_t *consumed, int *status) {
    cc_h1_chunked c;
    cc_h1_chunked_init(&c, max);
    size_t cap = 1, off = 0;
    *out_len = 0;
    cc_error e;
    for (;;) {
        size_t k = n - off < step ? n - off : step;
        size_t used = 0;
        cc_h1_rc rc = cc_h1_chunked_feed(&c, in + off, k, &used, out, out_len, cap, status, &e);
        off += used;
        if (rc != CC_H1_MORE) {
            *consumed = off;
            return rc;
        }
        if (used < k) cap *= 2; /* out was full */
        if (off == n && used == k) {
            *consumed = off;
            return CC_H1_MORE;
        }
    }
}

static void chunked_bodies(void) {
    const char *body = "5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nGET /next";
    size_t n = strlen(body);
    char out[64];
    size_t len, used;
    int st;
    for (size_t step = 1; step <= n; step++) {
        cc_h1_rc rc = dechunk(body, n, step, 100, out, &len, &used, &st);
        CHECK(rc == CC_H1_DONE);
        CHECK(len == 16 && memcmp(out, "hello 0123456789", 16) == 0);
        CHECK_EQ_I64(used, n - 9); /* "GET /next" is the next request's */
    }
    CHECK(dechunk("0\r\n\r\n", 5, 5, 0, out, &len, &used, &st) == CC_H1_DONE && len == 0);
    CHECK(dechunk("3\r\nab", 5, 5, 10, out, &len, &used, &st) == CC_H1_MORE && len == 2);
    /* The body limit, also across chunks. */
    CHECK(dechunk("b\r\n", 3, 3, 10, out, &len, &used, &st) == CC_H1_BAD && st == 413);
    CHECK(dechunk("6\r\nabcdef\r\n5\r\n", 14, 14, 10, out, &len, &used, &st) == CC_H1_BAD && st == 413);
    CHECK(dechunk("1000000000000000\r\n", 18, 18, INT64_MAX, out, &len, &used, &st) == CC_H1_BAD && st == 413);
    const char *bad[] = {"x\r\n", "\r\n", "5\nhello\r\n", "5\r\nhelloX\r\n", "5\r\nhello\rX", "-5\r\n", "5x\r\n",
                         "0\r\nBad Trailer\r\n\r\n", "0\r\n\n", "0\r\nT: x\n", "5;\x01\r\n", "0\r\n\rX", "0\r\nT\r\n\r\n",
                         "0\r\nT: \x01\r\n\r\n", NULL};
    for (int i = 0; bad[i]; i++) {
        cc_h1_rc rc = dechunk(bad[i], strlen(bad[i]), 1, 100, out, &len, &used, &st);
        if (rc != CC_H1_BAD) fprintf(stderr, "chunked case %d accepted\n", i);
        CHECK(rc == CC_H1_BAD && st >= 400);
    }
    /* Bounded extensions and trailers. */
    static char longext[CC_H1_CHUNK_LINE_BYTES_MAX + 16];
    memset(longext, 'a', sizeof longext);
    memcpy(longext, "1;", 2);
    CHECK(dechunk(longext, sizeof longext, 7, 100, out, &len, &used, &st) == CC_H1_BAD);
    static char trailers[2 * CC_H1_TRAILER_BYTES_MAX];
    size_t k = (size_t)snprintf(trailers, sizeof trailers, "0\r\n");
    while (k + 10 < sizeof trailers) k += (size_t)snprintf(trailers + k, sizeof trailers - k, "T: xxxx\r\n");
    CHECK(dechunk(trailers, k, 64, 100, out, &len, &used, &st) == CC_H1_BAD && st == 431);
}

void suite_http1(void) {
    RUN(a_plain_request);
    RUN(recognised_fields);
    RUN(connection_and_versions);
    RUN(malformed_heads);
    RUN(limits);
    RUN(chunked_bodies);
}
