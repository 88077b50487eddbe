/*
** http1.h — HTTP/1.1 requests (RFC 9112) as a server reads them: the head,
** then a Content-Length or chunked body. Strict, bounded, allocation-free.
**
** Contract:
**   - Input is hostile. Everything is checked before it is trusted; whatever
**     is not plainly valid is refused with the status to answer (400 Bad
**     Request, 413 Content Too Large, 414 URI Too Long, 417 Expectation
**     Failed, 431 Header Fields Too Large, 501 Not Implemented, 505 HTTP
**     Version Not Supported) and a message in err. After a refusal the
**     connection must be closed (the request's end is unknown).
**   - The head: "METHOD SP origin-form SP HTTP/1.0|1.1 CRLF", header lines
**     "name: value CRLF", an empty line. Lines end in CRLF only (a bare CR or
**     LF is refused), a method is a token of at most CC_H1_METHOD_BYTES_MAX,
**     the target starts with '/' and holds only visible ASCII (no '#'),
**     header names are tokens directly followed by ':', values hold no
**     control character but HTAB (surrounding spaces and tabs are trimmed);
**     obs-fold (a line starting with SP/HTAB) is refused. Empty lines before
**     the request line are skipped (RFC 9112 2.2). At most head_bytes_max
**     bytes (<= CC_H1_HEAD_BYTES_MAX) and CC_H1_HEADERS_MAX header lines.
**   - The body's framing, without ambiguity (request smuggling): at most one
**     Content-Length (digits only, <= body_bytes_max, else 413), at most one
**     Transfer-Encoding and it must be exactly "chunked" (any other coding:
**     501; in HTTP/1.0: 400), never both headers. Neither: no body.
**   - Connection: HTTP/1.1 keeps the connection alive unless "close" is
**     among its tokens; HTTP/1.0 closes it unless "keep-alive" is.
**     Expect: only "100-continue" (else 417).
**   - The fields the framing and this project's listener read (cc_h1_known)
**     are recognised during the parse's one pass over the head: after it,
**     cc_h1_known_value / cc_h1_known_count cost no lookup by name.
**   - cc_h1_parse_head never reads past n bytes and returns spans pointing
**     into the caller's buffer; nothing is allocated or copied.
**   - The chunked decoder is incremental: input may be split anywhere, and
**     the decoded data is identical however it is split. Chunk sizes are hex
**     (at most 15 digits), extensions and trailer fields are skipped but
**     bounded (CC_H1_CHUNK_LINE_BYTES_MAX per size line, CC_H1_TRAILER_BYTES_MAX
**     in all), and the decoded total may not exceed body_bytes_max (413).
**   - Pure functions on caller-owned state: thread-safe.
*/
#ifndef CC_HTTP1_H
#define CC_HTTP1_H

#include "cc_common.h"

#define CC_H1_HEAD_BYTES_MAX 16384
#define CC_H1_HEADERS_MAX 64
#define CC_H1_METHOD_BYTES_MAX 16
#define CC_H1_TARGET_BYTES_MAX 8192
#define CC_H1_CHUNK_LINE_BYTES_MAX 1024
#define CC_H1_TRAILER_BYTES_MAX 4096

typedef struct cc_h1_span {
    const char *p;
    size_t n;
} cc_h1_span;

typedef struct cc_h1_field {
    cc_h1_span name, value;
} cc_h1_field;

/* Header fields recognised while the head is parsed (names compared without case). */
typedef enum cc_h1_known {
    CC_H1_F_CONTENT_LENGTH = 0,
    CC_H1_F_TRANSFER_ENCODING,
    CC_H1_F_CONNECTION,
    CC_H1_F_EXPECT,
    CC_H1_F_X_API_KEY,
    CC_H1_F_AUTHORIZATION,
    CC_H1_F_CONTENT_TYPE,
    CC_H1_F_IDEMPOTENCY_KEY,
    CC_H1_F_COMFY_JOB_ID,
    CC_H1_F_KNOWN_COUNT
} cc_h1_known;

typedef struct cc_h1_head {
    cc_h1_span method, target;
    int version_minor;          /* 0 or 1 */
    int nfields;
    int keep_alive;
    int chunked;
    int expect_continue;
    int64_t content_length;     /* -1: none */
    size_t head_bytes;          /* bytes of the head, including skipped empty lines and the blank line */
    unsigned char known_at[CC_H1_F_KNOWN_COUNT]; /* 1 + index in fields of the first with that name; 0: none */
    unsigned char known_n[CC_H1_F_KNOWN_COUNT];  /* how many have that name */
    cc_h1_field fields[CC_H1_HEADERS_MAX];       /* only [0, nfields) is set */
} cc_h1_head;

typedef enum cc_h1_rc {
    CC_H1_DONE = 0,             /* complete */
    CC_H1_MORE = 1,             /* needs more input */
    CC_H1_BAD = 2               /* refused: *status and err say why */
} cc_h1_rc;

/* Parses the head at the start of buf[0, n). */
cc_h1_rc cc_h1_parse_head(const char *buf, size_t n, size_t head_bytes_max, int64_t body_bytes_max, cc_h1_head *h,
                          int *status, cc_error *err);
/* The first field of a recognised name, or NULL; how many fields have it. */
const cc_h1_span *cc_h1_known_value(const cc_h1_head *h, cc_h1_known k);
int cc_h1_known_count(const cc_h1_head *h, cc_h1_known k);
/* The first field with this name (ASCII case-insensitive), or NULL. */
const cc_h1_span *cc_h1_field_value(const cc_h1_head *h, const char *name);
/* How many fields have this name. */
int cc_h1_field_count(const cc_h1_head *h, const char *name);

typedef struct cc_h1_chunked {
    int state;
    uint64_t left;              /* data bytes left in the current chunk */
    int digits;
    size_t line_bytes;          /* of the current size line */
    size_t trailer_bytes;
    int64_t total;
    int64_t body_bytes_max;
} cc_h1_chunked;

void cc_h1_chunked_init(cc_h1_chunked *c, int64_t body_bytes_max);
/* Decodes in[0, n): appends data to out[*out_len, out_cap) and sets *used to
** the input bytes consumed. CC_H1_DONE: the last chunk and the trailers ended
** (*used may be < n: the rest belongs to the next request). CC_H1_MORE: all
** input was used, or out is full (*used < n): grow out and call again with
** the rest. CC_H1_BAD: *status and err. */
cc_h1_rc cc_h1_chunked_feed(cc_h1_chunked *c, const char *in, size_t n, size_t *used, char *out, size_t *out_len,
                            size_t out_cap, int *status, cc_error *err);

#endif
