/*
** up_helper.c — a tiny HTTP/1.1 upstream on loopback, run in the tests' own
** threads (see up_helper.h). Sockets are POSIX here: this file is not part of
** the Windows .exe (the suites using it need libcurl).
*/
#include "up_helper.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static char big_chunk[64 * 1024]; /* filled by up_start before any connection */

typedef struct conn_arg {
    upstream *u;
    int fd;
} conn_arg;

static int up_stopping(upstream *u) {
    cc_mutex_lock(&u->mu);
    int s = u->stop;
    cc_mutex_unlock(&u->mu);
    return s;
}

/* Waits until fd is readable/writable, the upstream stops (-1) or the peer hung up (-1). */
static int up_wait(upstream *u, int fd, short ev) {
    for (;;) {
        if (up_stopping(u)) return -1;
        struct pollfd p = {fd, ev, 0};
        int r = poll(&p, 1, 20);
        if (r < 0 && errno != EINTR) return -1;
        if (r > 0) {
            if (p.revents & (POLLERR | POLLNVAL)) return -1;
            if ((p.revents & POLLHUP) && !(p.revents & POLLIN)) return -1;
            return 0;
        }
    }
}

static int up_send(upstream *u, int fd, const char *p, size_t n) {
    while (n > 0) {
        if (up_wait(u, fd, POLLOUT) != 0) return -1;
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Copies the value of the header line that starts with `name` ("\r\n" + name + ':', matched
** without regard to case) into out (cut to cap - 1 bytes, leading spaces skipped); out is left
** as it was when the request has no such line. */
static void header_value(const char *req, const char *name, char *out, size_t cap) {
    const char *h = strcasestr(req, name);
    if (!h) return;
    h += strlen(name);
    while (*h == ' ') h++;
    size_t n = strcspn(h, "\r");
    if (n >= cap) n = cap - 1;
    memcpy(out, h, n);
    out[n] = 0;
}

static void *up_conn(void *arg) {
    conn_arg *ca = arg;
    upstream *u = ca->u;
    int fd = ca->fd;
    free(ca);
    char req[16384];
    size_t have = 0;
    int nth = 0; /* requests on this connection */
    for (;;) { /* keep-alive: one request after another */
        char *end = NULL;
        while (!(end = memmem(req, have, "\r\n\r\n", 4))) {
            if (have == sizeof req || up_wait(u, fd, POLLIN) != 0) goto out;
            ssize_t k = recv(fd, req + have, sizeof req - have, MSG_DONTWAIT);
            if (k < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (k <= 0) goto out;
            have += (size_t)k;
        }
        size_t head = (size_t)(end - req) + 4;
        req[head - 1] = 0;
        size_t body_len = 0;
        char *cl = strcasestr(req, "\r\ncontent-length:");
        if (cl) body_len = (size_t)strtoul(cl + 17, NULL, 10);
        char key[200] = "";
        header_value(req, "\r\nx-api-key:", key, sizeof key);
        int has_auth = strcasestr(req, "\r\nauthorization:") != NULL;
        char path[256] = "";
        sscanf(req, "%*s %255s", path);
        while (have < head + body_len) { /* the body */
            if (head + body_len > sizeof req || up_wait(u, fd, POLLIN) != 0) goto out;
            ssize_t k = recv(fd, req + have, sizeof req - have, MSG_DONTWAIT);
            if (k < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (k <= 0) goto out;
            have += (size_t)k;
        }
        nth++;
        if (strstr(path, "/proxy/t/echo") && strstr(path, "drop") && nth > 1) goto out; /* hangs up, no answer */
        cc_mutex_lock(&u->mu);
        u->requests++;
        cc_mutex_unlock(&u->mu);
        char hdr[1024];
        if (strstr(path, "/proxy/t/echo")) { /* anywhere in the target: under a base path, or absolute (a proxy) */
            char accept[64] = "-";
            header_value(req, "\r\naccept:", accept, sizeof accept);
            int n = snprintf(hdr, sizeof hdr,
                             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Seen-Target: %s\r\n"
                             "X-Seen-Accept: %s\r\nX-Seen-Expect: %d\r\nX-Seen-Key: %s\r\nX-Seen-Body: %zu\r\n"
                             "X-Seen-Nth: %d\r\nContent-Length: %zu\r\n\r\n%s",
                             path, accept, strcasestr(req, "\r\nexpect:") != NULL, key, body_len, nth,
                             strlen(SMALL_JSON), SMALL_JSON);
            if (up_send(u, fd, hdr, (size_t)n) != 0) goto out;
            if (strstr(path, "bye")) goto out; /* answered as keep-alive, then the idle connection is closed */
        } else if (strcmp(path, "/proxy/t/small") == 0) {
            int n = snprintf(hdr, sizeof hdr,
                             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Comfy-Credits-Used: 1.25\r\n"
                             "X-Seen-Key: %s\r\nX-Seen-Body: %zu\r\nX-Seen-Auth: %d\r\nContent-Length: %zu\r\n\r\n%s",
                             key, body_len, has_auth, strlen(SMALL_JSON), SMALL_JSON);
            if (up_send(u, fd, hdr, (size_t)n) != 0) goto out;
        } else if (strcmp(path, "/proxy/t/cr") == 0) { /* a bare CR inside a header value */
            static const char a[] = "HTTP/1.1 200 OK\r\nX-Odd: a\rb\r\nX-Plain: c\r\nContent-Length: 2\r\n\r\n{}";
            if (up_send(u, fd, a, sizeof a - 1) != 0) goto out;
        } else if (strcmp(path, "/proxy/t/cut") == 0) { /* promises BIG_BYTES, sends CUT_BYTES, hangs up */
            int n = snprintf(hdr, sizeof hdr, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                                              "X-Comfy-Credits-Used: 0.75\r\nContent-Length: %d\r\n\r\n", BIG_BYTES);
            if (up_send(u, fd, hdr, (size_t)n) != 0) goto out;
            for (int sent = 0; sent < CUT_BYTES; sent += (int)sizeof big_chunk)
                if (up_send(u, fd, big_chunk, sizeof big_chunk) != 0) goto out;
            goto out;
        } else if (strcmp(path, "/proxy/t/big") == 0 || strcmp(path, "/proxy/t/huge") == 0) {
            const char *tail = BIG_TAIL;
            size_t body = path[9] == 'h' ? HUGE_BYTES : BIG_BYTES;
            size_t total = body + strlen(tail);
            int n = snprintf(hdr, sizeof hdr,
                             "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %zu\r\n\r\n",
                             total);
            if (up_send(u, fd, hdr, (size_t)n) != 0) goto out;
            for (size_t sent = 0; sent < body; sent += sizeof big_chunk)
                if (up_send(u, fd, big_chunk, sizeof big_chunk) != 0) goto out;
            if (up_send(u, fd, tail, strlen(tail)) != 0) goto out;
        } else if (strcmp(path, "/proxy/t/chunked") == 0) { /* /proxy/t/big's body without a length */
            int n = snprintf(hdr, sizeof hdr, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                                              "Transfer-Encoding: chunked\r\n\r\n");
            if (up_send(u, fd, hdr, (size_t)n) != 0) goto out;
            for (size_t sent = 0; sent < BIG_BYTES; sent += sizeof big_chunk) {
                n = snprintf(hdr, sizeof hdr, "%zx\r\n", sizeof big_chunk);
                if (up_send(u, fd, hdr, (size_t)n) != 0 || up_send(u, fd, big_chunk, sizeof big_chunk) != 0 ||
                    up_send(u, fd, "\r\n", 2) != 0)
                    goto out;
            }
            n = snprintf(hdr, sizeof hdr, "%zx\r\n%s\r\n0\r\n\r\n", strlen(BIG_TAIL), BIG_TAIL);
            if (up_send(u, fd, hdr, (size_t)n) != 0) goto out;
        } else if (strcmp(path, "/proxy/t/hang") == 0) {
            /* Never answers: waits for the stop or for the client to leave. */
            char c;
            while (up_wait(u, fd, POLLIN) == 0) {
                ssize_t k = recv(fd, &c, 1, MSG_DONTWAIT);
                if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) break;
            }
            goto out;
        } else {
            const char *nf = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
            if (up_send(u, fd, nf, strlen(nf)) != 0) goto out;
        }
        memmove(req, req + head + body_len, have - head - body_len);
        have -= head + body_len;
    }
out:
    close(fd);
    cc_mutex_lock(&u->mu);
    u->open_conns--;
    cc_mutex_unlock(&u->mu);
    return NULL;
}

static void *up_accept(void *arg) {
    upstream *u = arg;
    for (;;) {
        if (up_wait(u, u->lfd, POLLIN) != 0) return NULL;
        int fd = accept(u->lfd, NULL, NULL);
        if (fd < 0) continue;
        cc_mutex_lock(&u->mu);
        int full = u->nconn >= UP_CONNS_MAX;
        if (!full) u->open_conns++;
        cc_mutex_unlock(&u->mu);
        conn_arg *ca = full ? NULL : malloc(sizeof *ca);
        if (!ca) {
            close(fd);
            if (!full) {
                cc_mutex_lock(&u->mu);
                u->open_conns--;
                cc_mutex_unlock(&u->mu);
            }
            continue;
        }
        ca->u = u;
        ca->fd = fd;
        if (cc_thread_create(&u->conn[u->nconn], up_conn, ca) != 0) {
            free(ca);
            close(fd);
            cc_mutex_lock(&u->mu);
            u->open_conns--;
            cc_mutex_unlock(&u->mu);
            continue;
        }
        u->nconn++; /* only this thread writes nconn until up_stop joins it */
    }
}

int up_start(upstream *u) {
    memset(u, 0, sizeof *u);
    memset(big_chunk, 'x', sizeof big_chunk);
    cc_mutex_init(&u->mu);
    u->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (u->lfd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (bind(u->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(u->lfd, 128) != 0 ||
        getsockname(u->lfd, (struct sockaddr *)&a, &al) != 0) {
        close(u->lfd);
        return -1;
    }
    u->port = ntohs(a.sin_port);
    if (cc_thread_create(&u->acceptor, up_accept, u) != 0) {
        close(u->lfd);
        return -1;
    }
    return 0;
}

void up_stop(upstream *u) {
    cc_mutex_lock(&u->mu);
    u->stop = 1;
    cc_mutex_unlock(&u->mu);
    cc_thread_join(u->acceptor, NULL);
    for (int i = 0; i < u->nconn; i++) cc_thread_join(u->conn[i], NULL);
    close(u->lfd);
    cc_mutex_destroy(&u->mu);
}

int up_requests(upstream *u) {
    cc_mutex_lock(&u->mu);
    int n = u->requests;
    cc_mutex_unlock(&u->mu);
    return n;
}

