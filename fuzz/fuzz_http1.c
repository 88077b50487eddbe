/* The gateway listener's HTTP/1.1 request parser (src/http1.c): never reads
** outside the input, what it accepts is framed without ambiguity, and a
** chunked body decodes to the same bytes however its input is split. The
** input is the bytes a client sends; its last byte picks the split size. */
#include <stdio.h>
#include "fuzz_util.h"
#include "http1.h"

#define BODY_MAX 4096

static cc_h1_rc dechunk(const char *in, size_t n, size_t step, char *out, size_t *len, size_t *consumed, int *st) {
    cc_h1_chunked c;
    cc_h1_chunked_init(&c, BODY_MAX);
    size_t cap = step < BODY_MAX ? step : BODY_MAX, off = 0;
    cc_error e;
    *len = 0;
    for (;;) {
        size_t k = n - off < step ? n - off : step, used = 0;
        cc_h1_rc rc = cc_h1_chunked_feed(&c, in + off, k, &used, out, len, cap, st, &e);
        FZ_CHECK(used <= k && *len <= cap);
        off += used;
        if (rc != CC_H1_MORE) {
            *consumed = off;
            return rc;
        }
        if (used < k) {
            FZ_CHECK(*len == cap && cap < BODY_MAX); /* out full; never past the body limit */
            cap = cap * 2 < BODY_MAX ? cap * 2 : BODY_MAX;
        } else if (off == n) {
            *consumed = off;
            return CC_H1_MORE;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    if (n == 0) return 0;
    size_t step = (size_t)d[n - 1] % 17 + 1;
    n--;
    char *buf = malloc(n ? n : 1); /* exactly n bytes: ASan sees any read past them */
    if (!buf) abort();
    memcpy(buf, d, n);
    cc_h1_head h;
    int st = 0;
    cc_error e;
    cc_h1_rc rc = cc_h1_parse_head(buf, n, 2048, BODY_MAX, &h, &st, &e);
    if (rc == CC_H1_BAD) FZ_CHECK(st >= 400 && st <= 505 && e.message[0]);
    if (rc == CC_H1_DONE) {
        FZ_CHECK(h.head_bytes <= n && h.head_bytes <= 2048);
        FZ_CHECK(h.method.n >= 1 && h.method.n <= CC_H1_METHOD_BYTES_MAX && h.method.p >= buf);
        FZ_CHECK(h.target.n >= 1 && h.target.p[0] == '/' && h.target.p + h.target.n <= buf + h.head_bytes);
        for (size_t i = 0; i < h.target.n; i++) FZ_CHECK(h.target.p[i] > 0x20 && h.target.p[i] < 0x7f);
        FZ_CHECK(!(h.chunked && h.content_length >= 0) && h.content_length <= BODY_MAX);
        FZ_CHECK(h.nfields >= 0 && h.nfields <= CC_H1_HEADERS_MAX);
        for (int i = 0; i < h.nfields; i++) {
            const cc_h1_field *f = &h.fields[i];
            FZ_CHECK(f->name.n >= 1 && f->value.p + f->value.n <= buf + h.head_bytes);
            for (size_t k = 0; k < f->value.n; k++)
                FZ_CHECK(f->value.p[k] != '\r' && f->value.p[k] != '\n' && f->value.p[k] != 0);
        }
        /* The head alone parses the same (nothing after it was looked at). */
        cc_h1_head h2;
        FZ_CHECK(cc_h1_parse_head(buf, h.head_bytes, 2048, BODY_MAX, &h2, &st, &e) == CC_H1_DONE &&
                 h2.head_bytes == h.head_bytes && h2.content_length == h.content_length && h2.chunked == h.chunked);
        if (h.chunked) {
            static char a[BODY_MAX], b[BODY_MAX];
            size_t la, lb, ua, ub;
            int sa, sb;
            const char *body = buf + h.head_bytes;
            size_t bn = n - h.head_bytes;
            cc_h1_rc ra = dechunk(body, bn, bn ? bn : 1, a, &la, &ua, &sa);
            cc_h1_rc rb = dechunk(body, bn, step, b, &lb, &ub, &sb);
            FZ_CHECK(ra == rb);
            if (ra != CC_H1_BAD) FZ_CHECK(la == lb && ua == ub && memcmp(a, b, la) == 0);
            else FZ_CHECK(sa == sb);
        }
    }
    free(buf);
    return 0;
}
