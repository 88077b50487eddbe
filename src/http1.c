/*
** http1.c — strict HTTP/1.1 request heads and chunked bodies. See http1.h.
*/
#include "http1.h"

#include <stddef.h>
#include <string.h>

/* RFC 9110 5.6.2 tchar: a bit per byte value. */
static const uint32_t TCHAR_BITS[8] = {0x00000000, 0x03ff6cfa, 0xc7fffffe, 0x57ffffff, 0, 0, 0, 0};
static int tchar(unsigned char c) { return (int)((TCHAR_BITS[c >> 5] >> (c & 31)) & 1u); }

_Static_assert(CC_H1_HEADERS_MAX < 256, "known_at and known_n are bytes");

static int span_is(cc_h1_span s, const char *lit) {
    size_t n = strlen(lit);
    return s.n == n && cc_strncasecmp(s.p, lit, n) == 0;
}

/* p[0, n) (a token) equals the lower-case literal, without case. For a tchar c, (c | 0x20) is a lower-case
** letter only for that letter in either case, and '-' only for '-'. */
static int token_is(const char *p, const char *lit, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)p[i] | 0x20) != (unsigned char)lit[i]) return 0;
    return 1;
}

/* Which recognised field a header name is (by its length first), or -1. */
static int known_field(const char *p, size_t n) {
    switch (n) {
    case 6: return token_is(p, "expect", 6) ? CC_H1_F_EXPECT : -1;
    case 9: return token_is(p, "x-api-key", 9) ? CC_H1_F_X_API_KEY : -1;
    case 10: return token_is(p, "connection", 10) ? CC_H1_F_CONNECTION : -1;
    case 12:
        if (token_is(p, "content-type", 12)) return CC_H1_F_CONTENT_TYPE;
        return token_is(p, "comfy-job-id", 12) ? CC_H1_F_COMFY_JOB_ID : -1;
    case 13: return token_is(p, "authorization", 13) ? CC_H1_F_AUTHORIZATION : -1;
    case 14: return token_is(p, "content-length", 14) ? CC_H1_F_CONTENT_LENGTH : -1;
    case 15: return token_is(p, "idempotency-key", 15) ? CC_H1_F_IDEMPOTENCY_KEY : -1;
    case 17: return token_is(p, "transfer-encoding", 17) ? CC_H1_F_TRANSFER_ENCODING : -1;
    default: return -1;
    }
}

static cc_h1_rc bad(int *status, int code, cc_error *err, const char *msg) {
    *status = code;
    cc_fail(err, CC_ERR_INVALID, "request", "%s", msg);
    return CC_H1_BAD;
}

/* The end of the line starting at p (index of its CR), or -1 when no CRLF in
** [p, end); -2 on a bare CR or LF. */
static long line_end(const char *buf, size_t p, size_t end) {
    const char *cr = memchr(buf + p, '\r', end - p);
    size_t upto = cr ? (size_t)(cr - buf) : end;
    if (memchr(buf + p, '\n', upto - p)) return -2;
    if (!cr) return -1;
    if (upto + 1 >= end) return -1;
    return buf[upto + 1] == '\n' ? (long)upto : -2;
}

/* Does the comma-separated list in v hold this token (case-insensitive)? */
static int list_has(cc_h1_span v, const char *tok) {
    size_t i = 0;
    while (i < v.n) {
        while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ',')) i++;
        size_t s = i;
        while (i < v.n && v.p[i] != ',') i++;
        size_t e = i;
        while (e > s && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t')) e--;
        cc_h1_span t = {v.p + s, e - s};
        if (e > s && span_is(t, tok)) return 1;
    }
    return 0;
}

cc_h1_rc cc_h1_parse_head(const char *buf, size_t n, size_t head_bytes_max, int64_t body_bytes_max, cc_h1_head *h,
                          int *status, cc_error *err) {
    /* Not the fields array (2 KiB): only fields[0, nfields) are ever read. */
    memset(h, 0, offsetof(cc_h1_head, fields));
    h->content_length = -1;
    *status = 0;
    if (head_bytes_max > CC_H1_HEAD_BYTES_MAX) head_bytes_max = CC_H1_HEAD_BYTES_MAX;
    size_t lim = n < head_bytes_max ? n : head_bytes_max;
    size_t p = 0;
    /* Empty lines before the request line (a client's CRLF after a body). */
    while (p + 1 < lim && buf[p] == '\r' && buf[p + 1] == '\n') p += 2;
    if (p < lim && buf[p] == '\n') return bad(status, 400, err, "bare LF in the request head");
    long le = line_end(buf, p, lim);
    if (le == -2) return bad(status, 400, err, "the request line must end in CRLF");
    if (le == -1) {
        if (n >= head_bytes_max) return bad(status, 414, err, "the request line is too long");
        /* Refuse early what can never become a request line. */
        for (size_t i = p; i < lim && buf[i] != ' '; i++)
            if (!tchar((unsigned char)buf[i]) || i - p >= CC_H1_METHOD_BYTES_MAX)
                return bad(status, 400, err, "malformed request line");
        return CC_H1_MORE;
    }
    /* METHOD SP target SP HTTP/1.x */
    size_t e = (size_t)le, i = p;
    while (i < e && tchar((unsigned char)buf[i])) i++;
    if (i == p || i >= e || buf[i] != ' ') return bad(status, 400, err, "malformed request line");
    if (i - p > CC_H1_METHOD_BYTES_MAX) return bad(status, 501, err, "unknown method");
    h->method.p = buf + p;
    h->method.n = i - p;
    size_t t = ++i;
    {
        const char *sp = memchr(buf + t, ' ', e - t);
        size_t te = sp ? (size_t)(sp - buf) : e;
        unsigned badc = 0; /* no early exit: the loop is a plain scan */
        for (size_t k = t; k < te; k++) {
            unsigned char c = (unsigned char)buf[k];
            badc |= (unsigned)(c <= 0x20) | (unsigned)(c >= 0x7f) | (unsigned)(c == '#');
        }
        if (badc) return bad(status, 400, err, "invalid character in the request target");
        i = te;
    }
    if (i == t || buf[t] != '/') return bad(status, 400, err, "the request target must be a path starting with '/'");
    if (i - t > CC_H1_TARGET_BYTES_MAX) return bad(status, 414, err, "the request target is too long");
    if (i >= e) return bad(status, 400, err, "malformed request line");
    h->target.p = buf + t;
    h->target.n = i - t;
    i++;
    if (e - i != 8 || memcmp(buf + i, "HTTP/1.", 7) != 0) {
        if (e - i == 8 && memcmp(buf + i, "HTTP/", 5) == 0 && buf[i + 5] >= '0' && buf[i + 5] <= '9' &&
            buf[i + 6] == '.' && buf[i + 7] >= '0' && buf[i + 7] <= '9')
            return bad(status, 505, err, "only HTTP/1.0 and HTTP/1.1 are served");
        return bad(status, 400, err, "malformed HTTP version");
    }
    if (buf[i + 7] == '1') h->version_minor = 1;
    else if (buf[i + 7] == '0') h->version_minor = 0;
    else if (buf[i + 7] >= '2' && buf[i + 7] <= '9') return bad(status, 505, err, "only HTTP/1.0 and HTTP/1.1 are served");
    else return bad(status, 400, err, "malformed HTTP version");
    p = e + 2;
    int conn_close = 0, conn_keep = 0;
    /* Header lines until the empty line; the recognised names noted on the way. */
    for (;;) {
        le = line_end(buf, p, lim);
        if (le == -2) return bad(status, 400, err, "header lines must end in CRLF");
        if (le == -1) {
            if (n >= head_bytes_max) return bad(status, 431, err, "the request head is too large");
            return CC_H1_MORE;
        }
        e = (size_t)le;
        if (e == p) {
            p += 2;
            break;
        }
        if (h->nfields >= CC_H1_HEADERS_MAX) return bad(status, 431, err, "too many header fields");
        if (buf[p] == ' ' || buf[p] == '\t') return bad(status, 400, err, "folded header lines are not accepted");
        i = p;
        while (i < e && tchar((unsigned char)buf[i])) i++;
        if (i == p || i >= e || buf[i] != ':') return bad(status, 400, err, "malformed header field");
        cc_h1_field *f = &h->fields[h->nfields++];
        f->name.p = buf + p;
        f->name.n = i - p;
        i++;
        while (i < e && (buf[i] == ' ' || buf[i] == '\t')) i++;
        size_t vs = i, ve = e;
        while (ve > vs && (buf[ve - 1] == ' ' || buf[ve - 1] == '\t')) ve--;
        unsigned badc = 0; /* no early exit: the loop is a plain scan */
        for (size_t k = vs; k < ve; k++) {
            unsigned char c = (unsigned char)buf[k];
            badc |= ((unsigned)(c < 0x20) & (unsigned)(c != '\t')) | (unsigned)(c == 0x7f);
        }
        if (badc) return bad(status, 400, err, "control character in a header value");
        f->value.p = buf + vs;
        f->value.n = ve - vs;
        int kf = known_field(f->name.p, f->name.n);
        if (kf >= 0) {
            if (!h->known_at[kf]) h->known_at[kf] = (unsigned char)h->nfields; /* index + 1 */
            h->known_n[kf]++;
            if (kf == CC_H1_F_CONNECTION) {
                conn_close |= list_has(f->value, "close");
                conn_keep |= list_has(f->value, "keep-alive");
            }
        }
        p = e + 2;
    }
    h->head_bytes = p;
    /* Framing. */
    int ncl = h->known_n[CC_H1_F_CONTENT_LENGTH], nte = h->known_n[CC_H1_F_TRANSFER_ENCODING];
    if (ncl > 1) return bad(status, 400, err, "more than one Content-Length");
    if (nte > 1) return bad(status, 400, err, "more than one Transfer-Encoding");
    if (ncl && nte) return bad(status, 400, err, "both Content-Length and Transfer-Encoding");
    if (nte) {
        if (h->version_minor == 0) return bad(status, 400, err, "Transfer-Encoding in an HTTP/1.0 request");
        if (!span_is(*cc_h1_known_value(h, CC_H1_F_TRANSFER_ENCODING), "chunked"))
            return bad(status, 501, err, "only the chunked transfer coding is accepted");
        h->chunked = 1;
    }
    if (ncl) {
        const cc_h1_span *v = cc_h1_known_value(h, CC_H1_F_CONTENT_LENGTH);
        if (v->n == 0 || v->n > 18) return bad(status, v->n ? 413 : 400, err, v->n ? "the body is too large" :
                                                                              "malformed Content-Length");
        int64_t cl = 0;
        for (size_t k = 0; k < v->n; k++) {
            if (v->p[k] < '0' || v->p[k] > '9') return bad(status, 400, err, "malformed Content-Length");
            cl = cl * 10 + (v->p[k] - '0');
        }
        if (cl > body_bytes_max) return bad(status, 413, err, "the body is too large");
        h->content_length = cl;
    }
    /* Connection (close wins over keep-alive) and Expect. */
    h->keep_alive = (h->version_minor == 1 || conn_keep) && !conn_close;
    int nexp = h->known_n[CC_H1_F_EXPECT];
    if (nexp > 1) return bad(status, 417, err, "more than one Expect");
    if (nexp) {
        if (!span_is(*cc_h1_known_value(h, CC_H1_F_EXPECT), "100-continue"))
            return bad(status, 417, err, "only Expect: 100-continue is understood");
        h->expect_continue = 1;
    }
    return CC_H1_DONE;
}

const cc_h1_span *cc_h1_known_value(const cc_h1_head *h, cc_h1_known k) {
    CC_ASSERT(k >= 0 && k < CC_H1_F_KNOWN_COUNT);
    return h->known_at[k] ? &h->fields[h->known_at[k] - 1].value : NULL;
}

int cc_h1_known_count(const cc_h1_head *h, cc_h1_known k) {
    CC_ASSERT(k >= 0 && k < CC_H1_F_KNOWN_COUNT);
    return h->known_n[k];
}

const cc_h1_span *cc_h1_field_value(const cc_h1_head *h, const char *name) {
    for (int k = 0; k < h->nfields; k++)
        if (span_is(h->fields[k].name, name)) return &h->fields[k].value;
    return NULL;
}

int cc_h1_field_count(const cc_h1_head *h, const char *name) {
    int c = 0;
    for (int k = 0; k < h->nfields; k++) c += span_is(h->fields[k].name, name);
    return c;
}

/* ------------------------------------------------------------ chunked bodies */

enum {
    CH_SIZE = 0,    /* hex digits */
    CH_EXT,         /* after the digits: extensions until CR */
    CH_SIZE_LF,     /* CR seen, LF expected */
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER,     /* at the start of a trailer line (or the final empty line) */
    CH_TRAILER_NAME,
    CH_TRAILER_LINE,
    CH_TRAILER_LF,  /* CR of a trailer line seen */
    CH_END_LF,      /* CR of the final empty line seen */
    CH_DONE
};

void cc_h1_chunked_init(cc_h1_chunked *c, int64_t body_bytes_max) {
    memset(c, 0, sizeof *c);
    c->body_bytes_max = body_bytes_max;
}

static int hexval(unsigned char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

cc_h1_rc cc_h1_chunked_feed(cc_h1_chunked *c, const char *in, size_t n, size_t *used, char *out, size_t *out_len,
                            size_t out_cap, int *status, cc_error *err) {
    size_t i = 0;
    *status = 0;
    while (i < n) {
        unsigned char ch = (unsigned char)in[i];
        switch (c->state) {
        case CH_SIZE: {
            int v = hexval(ch);
            if (v >= 0) {
                if (c->digits >= 15) return bad(status, 413, err, "chunk size too large");
                c->left = c->left * 16 + (uint64_t)v;
                c->digits++;
                c->line_bytes++;
                i++;
                break;
            }
            if (c->digits == 0 || (ch != ';' && ch != ' ' && ch != '\t' && ch != '\r'))
                return bad(status, 400, err, "malformed chunk size");
            if ((int64_t)c->left > c->body_bytes_max - c->total) return bad(status, 413, err, "the body is too large");
            c->state = CH_EXT;
            break; /* same byte, next state */
        }
        case CH_EXT:
            if (ch == '\r') c->state = CH_SIZE_LF;
            else if (ch == '\n' || (ch < 0x20 && ch != '\t') || ch == 0x7f)
                return bad(status, 400, err, "malformed chunk extension");
            if (++c->line_bytes > CC_H1_CHUNK_LINE_BYTES_MAX) return bad(status, 400, err, "chunk line too long");
            i++;
            break;
        case CH_SIZE_LF:
            if (ch != '\n') return bad(status, 400, err, "chunk size line must end in CRLF");
            i++;
            c->line_bytes = 0;
            c->digits = 0;
            c->state = c->left ? CH_DATA : CH_TRAILER;
            break;
        case CH_DATA: {
            size_t room = out_cap - *out_len;
            if (room == 0) {
                *used = i;
                return CC_H1_MORE; /* grow out */
            }
            size_t k = n - i;
            if ((uint64_t)k > c->left) k = (size_t)c->left;
            if (k > room) k = room;
            memcpy(out + *out_len, in + i, k);
            *out_len += k;
            c->total += (int64_t)k;
            c->left -= k;
            i += k;
            if (c->left == 0) c->state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (ch != '\r') return bad(status, 400, err, "chunk data must end in CRLF");
            c->state = CH_DATA_LF;
            i++;
            break;
        case CH_DATA_LF:
            if (ch != '\n') return bad(status, 400, err, "chunk data must end in CRLF");
            c->state = CH_SIZE;
            i++;
            break;
        case CH_TRAILER:
            if (ch == '\r') c->state = CH_END_LF;
            else if (!tchar(ch)) return bad(status, 400, err, "malformed trailer field");
            else c->state = CH_TRAILER_NAME;
            if (++c->trailer_bytes > CC_H1_TRAILER_BYTES_MAX) return bad(status, 431, err, "trailers too large");
            i++;
            break;
        case CH_TRAILER_NAME:
            if (ch == ':') c->state = CH_TRAILER_LINE;
            else if (!tchar(ch)) return bad(status, 400, err, "malformed trailer field");
            if (++c->trailer_bytes > CC_H1_TRAILER_BYTES_MAX) return bad(status, 431, err, "trailers too large");
            i++;
            break;
        case CH_TRAILER_LINE:
            if (ch == '\r') c->state = CH_TRAILER_LF;
            else if (ch == '\n' || (ch < 0x20 && ch != '\t') || ch == 0x7f)
                return bad(status, 400, err, "malformed trailer field");
            if (++c->trailer_bytes > CC_H1_TRAILER_BYTES_MAX) return bad(status, 431, err, "trailers too large");
            i++;
            break;
        case CH_TRAILER_LF:
            if (ch != '\n') return bad(status, 400, err, "trailer lines must end in CRLF");
            c->state = CH_TRAILER;
            i++;
            break;
        case CH_END_LF:
            if (ch != '\n') return bad(status, 400, err, "the chunked body must end in CRLF");
            c->state = CH_DONE;
            i++;
            *used = i;
            return CC_H1_DONE;
        default:
            *used = i;
            return CC_H1_DONE;
        }
    }
    *used = i;
    return c->state == CH_DONE ? CC_H1_DONE : CC_H1_MORE;
}
