/*
** gwsock.h — libcurl's sockets in the gateway's poller, registered lazily.
**
** Why. libcurl (CURLMOPT_SOCKETFUNCTION) says CURL_POLL_REMOVE for a
** connection's socket when its transfer ends, and asks for the same socket
** again when the next transfer reuses the kept-alive connection. Following
** it to the letter costs two epoll_ctl per call (DEL, then ADD) for nothing.
**
** Contract. A socket libcurl opened through the gateway (gw_socks_opened,
** from CURLOPT_OPENSOCKETFUNCTION) is one it will also close through the
** gateway (gw_socks_closing, from CURLOPT_CLOSESOCKETFUNCTION, which
** unregisters it before the close): such a socket stays registered, with
** the interest it had, when libcurl lets go of it. libcurl wanting it again
** with that interest costs no system call. An event on a socket libcurl does
** not want (the upstream closed the idle connection: a readable EOF, which
** level-triggered waits would report on every wait) unregisters it then:
** gw_socks_event says "drop" and the event is not handed to libcurl. A
** socket opened otherwise (the threaded resolver's socket pair, closed
** without the hook) is unregistered at once when libcurl lets go of it, as
** nothing would tell when its descriptor is closed and reused.
**
** Limits. At most sockets_max sockets known (beyond: gw_socks_want fails,
** like a full poller); at most idle_max kept registered while unwanted
** (beyond: unregistered at once). I/O thread only.
*/
#ifndef CC_GWSOCK_H
#define CC_GWSOCK_H

#include "cc_platform.h"
#include "i64map.h"

typedef struct gw_socks {
    cc_poller *poller;
    i64map map;                 /* fd + 1 -> the socket's state (gwsock.c), never NULL */
    int idle, idle_max;         /* kept registered while libcurl does not want them */
    int64_t ctl;                /* registration calls made (add, mod, del): what this saves shows here */
} gw_socks;

/* 0, or -1 (no memory). */
int gw_socks_init(gw_socks *t, cc_poller *p, int sockets_max, int idle_max);
void gw_socks_destroy(gw_socks *t);
/* libcurl opened fd through the gateway's hook: it will close it through gw_socks_closing. */
void gw_socks_opened(gw_socks *t, cc_socket_t fd);
/* libcurl wants fd watched for `want` (CC_POLL_IN|OUT; 0: CURL_POLL_REMOVE), events tagged `tag`. 0, or -1 when
** the poller or the table refused (the transfer then ends at its timeout). */
int gw_socks_want(gw_socks *t, cc_socket_t fd, int want, uint64_t tag);
/* The last wait reported fd: 1 to hand the event to libcurl, 0 when libcurl does not want the socket (it is
** unregistered now). */
int gw_socks_event(gw_socks *t, cc_socket_t fd);
/* libcurl is about to close fd (after CURL_POLL_REMOVE): unregistered and forgotten. */
void gw_socks_closing(gw_socks *t, cc_socket_t fd);

#endif
