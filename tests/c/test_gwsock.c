/*
** test_gwsock.c — lazy registration of libcurl's sockets (src/gwsock.c) on a
** real poller, with socket pairs standing in for libcurl's connections.
** POSIX only (socketpair): not part of the Windows .exe.
*/
#include "ctest.h"
#include "gwsock.h"

#include <sys/socket.h>
#include <unistd.h>

static void pair(int sv[2]) { CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0); }

/* A kept-alive connection reused by transfer after transfer: registered once. */
static void test_gwsock_reuse_costs_no_registration(void) {
    cc_poller *p = cc_poller_open(8);
    gw_socks t;
    CHECK(gw_socks_init(&t, p, 8, 4) == 0);
    int a[2];
    pair(a);
    gw_socks_opened(&t, a[0]);
    CHECK(gw_socks_want(&t, a[0], CC_POLL_IN, 11) == 0);
    CHECK_EQ_I64(t.ctl, 1);
    for (int i = 0; i < 10; i++) {
        CHECK(gw_socks_want(&t, a[0], 0, 11) == 0); /* CURL_POLL_REMOVE: the transfer ended */
        CHECK_EQ_I64(t.idle, 1);
        CHECK(gw_socks_want(&t, a[0], CC_POLL_IN, 11) == 0); /* the next one reuses the connection */
        CHECK_EQ_I64(t.idle, 0);
    }
    CHECK_EQ_I64(t.ctl, 1);
    /* Another interest: one change. */
    CHECK(gw_socks_want(&t, a[0], CC_POLL_OUT, 11) == 0);
    CHECK_EQ_I64(t.ctl, 2);
    cc_poll_event ev[4];
    CHECK_EQ_I64(cc_poller_wait(p, ev, 4, 1000), 1); /* writable: really registered for OUT */
    CHECK(ev[0].tag == 11 && (ev[0].events & CC_POLL_OUT));
    CHECK(gw_socks_event(&t, a[0]) == 1);
    CHECK(gw_socks_want(&t, a[0], 0, 11) == 0);
    /* libcurl closes it: unregistered before the close, forgotten. */
    gw_socks_closing(&t, a[0]);
    CHECK_EQ_I64(t.ctl, 3);
    CHECK_EQ_I64(t.idle, 0);
    CHECK_EQ_I64(t.map.count, 0);
    close(a[0]);
    close(a[1]);
    gw_socks_destroy(&t);
    cc_poller_close(p);
}

/* A connection libcurl used and left idle (registered, not wanted), then the peer closes it: the readable EOF
** comes once and is not for libcurl (gw_socks_event says 0). a[0] stays open; a[1] is closed. */
static void idle_then_closed_by_peer(gw_socks *t, cc_poller *p, int a[2]) {
    pair(a);
    gw_socks_opened(t, a[0]);
    CHECK(gw_socks_want(t, a[0], CC_POLL_IN, 11) == 0);
    CHECK(gw_socks_want(t, a[0], 0, 11) == 0);
    close(a[1]);
    cc_poll_event ev[4];
    CHECK_EQ_I64(cc_poller_wait(p, ev, 4, 1000), 1);
    CHECK(ev[0].tag == 11);
    CHECK(gw_socks_event(t, a[0]) == 0);
}

/* The peer closes an idle connection: the readable EOF unregisters it (not handed to libcurl, no busy loop). */
static void test_gwsock_idle_socket_closed_by_peer(void) {
    cc_poller *p = cc_poller_open(8);
    gw_socks t;
    CHECK(gw_socks_init(&t, p, 8, 4) == 0);
    int a[2];
    idle_then_closed_by_peer(&t, p, a); /* libcurl does not want it: dropped */
    cc_poll_event ev[4];
    CHECK_EQ_I64(t.ctl, 2);
    CHECK_EQ_I64(t.idle, 0);
    CHECK_EQ_I64(cc_poller_wait(p, ev, 4, 50), 0); /* not reported again */
    /* libcurl finds the connection dead and closes it: nothing left to unregister. */
    gw_socks_closing(&t, a[0]);
    CHECK_EQ_I64(t.ctl, 2);
    CHECK_EQ_I64(t.map.count, 0);
    close(a[0]);
    /* Or it wants it again first: registered again. */
    idle_then_closed_by_peer(&t, p, a);
    CHECK(gw_socks_want(&t, a[0], CC_POLL_IN, 11) == 0);
    CHECK_EQ_I64(cc_poller_wait(p, ev, 4, 1000), 1);
    CHECK(gw_socks_event(&t, a[0]) == 1); /* wanted now: libcurl reads the EOF */
    gw_socks_closing(&t, a[0]);
    close(a[0]);
    CHECK_EQ_I64(t.map.count, 0);
    gw_socks_destroy(&t);
    cc_poller_close(p);
}

/* Sockets not opened through the hook (the resolver's) and idle ones over idle_max: unregistered at once. */
static void test_gwsock_not_ours_and_limits(void) {
    cc_poller *p = cc_poller_open(8);
    gw_socks t;
    CHECK(gw_socks_init(&t, p, 3, 1) == 0);
    int a[2], b[2], c[2], d[2];
    pair(a);
    pair(b);
    pair(c);
    pair(d);
    CHECK(gw_socks_want(&t, a[0], CC_POLL_IN, 1) == 0); /* never opened through the hook */
    CHECK(gw_socks_want(&t, a[0], 0, 1) == 0);
    CHECK_EQ_I64(t.ctl, 2);
    CHECK_EQ_I64(t.map.count, 0);
    gw_socks_opened(&t, b[0]);
    gw_socks_opened(&t, c[0]);
    CHECK(gw_socks_want(&t, b[0], CC_POLL_IN, 2) == 0);
    CHECK(gw_socks_want(&t, c[0], CC_POLL_IN, 3) == 0);
    CHECK(gw_socks_want(&t, b[0], 0, 2) == 0); /* kept: idle 1 of 1 */
    CHECK(gw_socks_want(&t, c[0], 0, 3) == 0); /* over idle_max: unregistered */
    CHECK_EQ_I64(t.ctl, 5);
    CHECK_EQ_I64(t.idle, 1);
    CHECK(gw_socks_want(&t, a[0], CC_POLL_IN, 1) == 0); /* the table holds 3 */
    CHECK(gw_socks_want(&t, d[0], CC_POLL_IN, 4) == -1); /* full: refused, like a full poller */
    gw_socks_closing(&t, b[0]);
    gw_socks_closing(&t, c[0]);
    CHECK_EQ_I64(t.idle, 0);
    CHECK(gw_socks_want(&t, a[0], 0, 1) == 0);
    CHECK_EQ_I64(t.map.count, 0);
    for (int i = 0; i < 2; i++) {
        close(a[i]);
        close(b[i]);
        close(c[i]);
        close(d[i]);
    }
    gw_socks_destroy(&t);
    cc_poller_close(p);
}

void suite_gwsock(void) {
    RUN(test_gwsock_reuse_costs_no_registration);
    RUN(test_gwsock_idle_socket_closed_by_peer);
    RUN(test_gwsock_not_ours_and_limits);
}
