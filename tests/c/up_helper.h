/*
** up_helper.h — a tiny HTTP/1.1 keep-alive upstream on loopback for the C
** suites of the gateway (test_gateway.c) and its listener (test_listener.c).
**
** It answers by path:
**   /proxy/t/small  200 JSON with usage and X-Comfy-Credits-Used: 1.25, and
**                   echoes the X-API-KEY it got (X-Seen-Key), the body length
**                   (X-Seen-Body) and whether Authorization came (X-Seen-Auth)
**   /proxy/t/cr     200 with a bare CR inside a header value (X-Odd: a<CR>b)
**   /proxy/t/hang   reads the request and never answers (until it is stopped
**                   or the client goes away)
**   /proxy/t/big    200 with a BIG_BYTES body, written as fast as the client
**                   takes it (usage JSON at its end)
**   /proxy/t/huge   the same with HUGE_BYTES (more than any socket buffers hold)
**   /proxy/t/chunked  /proxy/t/big's body chunked (no Content-Length)
**   /proxy/t/cut    200 promising BIG_BYTES, then CUT_BYTES and the connection
**                   closed (a transfer that fails mid-body)
**   .../proxy/t/echo (anywhere in the target: under a base path, or the
**                   absolute URL a forward proxy gets) 200 JSON like small, and
**                   echoes the target (X-Seen-Target), Accept (X-Seen-Accept,
**                   "-" if none), whether Expect came (X-Seen-Expect), the key,
**                   the body length and which request of its connection it was
**                   (X-Seen-Nth); with "drop" in the target, a request that is
**                   not its connection's first is read and the connection
**                   closed without an answer (libcurl then retries it on a
**                   fresh connection); with "bye", the answer (keep-alive, as
**                   any other) is followed by closing the connection
**   anything else   404
** It counts the requests it received, so a test can show that a refused call
** never reached it.
*/
#ifndef UP_HELPER_H
#define UP_HELPER_H
#include "ctest.h"
#include "cc_platform.h"

#define UP_CONNS_MAX 64
#define BIG_BYTES (4 * 1024 * 1024)
#define CUT_BYTES (192 * 1024)
#define HUGE_BYTES (64 * 1024 * 1024)
#define SMALL_JSON "{\"usage\":{\"input_tokens\":3,\"output_tokens\":5}}"
#define BIG_TAIL "{\"usage\":{\"input_tokens\":1,\"output_tokens\":2}}"

typedef struct upstream {
    int lfd, port;
    cc_thread_t acceptor;
    cc_mutex_t mu;
    int stop;                  /* under mu */
    int requests;              /* under mu: requests fully read */
    int open_conns;            /* under mu: connections not yet closed by either side */
    int nconn;
    cc_thread_t conn[UP_CONNS_MAX];
    int fds[UP_CONNS_MAX];
} upstream;

int up_start(upstream *u);
void up_stop(upstream *u);
int up_requests(upstream *u);

#endif
