/*
** gwsock.c — libcurl's sockets in the gateway's poller, registered lazily
** (see gwsock.h for why and the contract).
*/
#include "gwsock.h"

/* A socket's state, stored as the map's value (never NULL: ST_KNOWN). */
#define ST_REG (CC_POLL_IN | CC_POLL_OUT) /* what it is registered for in the poller (0: not registered) */
#define ST_WANT 0x10u                     /* libcurl wants it watched */
#define ST_OURS 0x20u                     /* opened and closed through the gateway's hooks */
#define ST_KNOWN 0x100u

static int64_t key_of(cc_socket_t fd) { return (int64_t)fd + 1; }

static unsigned state_of(gw_socks *t, cc_socket_t fd) {
    return (unsigned)(uintptr_t)i64map_get(&t->map, key_of(fd));
}

static int set_state(gw_socks *t, cc_socket_t fd, unsigned st) {
    return i64map_put(&t->map, key_of(fd), (void *)(uintptr_t)(st | ST_KNOWN));
}

static void unregister(gw_socks *t, cc_socket_t fd) {
    t->ctl++;
    cc_poller_del(t->poller, fd);
}

int gw_socks_init(gw_socks *t, cc_poller *p, int sockets_max, int idle_max) {
    memset(t, 0, sizeof *t);
    t->poller = p;
    t->idle_max = idle_max;
    return i64map_init(&t->map, (size_t)sockets_max);
}

void gw_socks_destroy(gw_socks *t) { i64map_destroy(&t->map, NULL); }

void gw_socks_opened(gw_socks *t, cc_socket_t fd) {
    unsigned old = state_of(t, fd);
    /* Cannot happen (closes come through gw_socks_closing): a stale entry is replaced. */
    if (old && !(old & ST_WANT) && (old & ST_REG)) t->idle--;
    if (set_state(t, fd, ST_OURS) != 0) i64map_remove(&t->map, key_of(fd)); /* full: handled as not ours */
}

int gw_socks_want(gw_socks *t, cc_socket_t fd, int want, uint64_t tag) {
    unsigned st = state_of(t, fd);
    int reg = (int)(st & ST_REG);
    if (!want) {
        if (!(st & ST_WANT)) return 0;
        if ((st & ST_OURS) && reg && t->idle < t->idle_max) { /* kept: most likely the next transfer wants it */
            t->idle++;
            set_state(t, fd, st & ~ST_WANT); /* replaces: cannot fail */
            return 0;
        }
        if (reg) unregister(t, fd);
        if (st & ST_OURS) set_state(t, fd, ST_OURS);
        else i64map_remove(&t->map, key_of(fd));
        return 0;
    }
    if (st && !(st & ST_WANT) && reg) t->idle--; /* kept idle until now */
    if (!st && set_state(t, fd, 0) != 0) return -1;
    if (reg != want) {
        t->ctl++;
        int rc = reg ? cc_poller_mod(t->poller, fd, want, tag) : cc_poller_add(t->poller, fd, want, tag);
        /* What we thought registered was not (a descriptor the poller dropped) or the other way round. */
        if (rc != 0) {
            t->ctl++;
            rc = reg ? cc_poller_add(t->poller, fd, want, tag) : cc_poller_mod(t->poller, fd, want, tag);
        }
        if (rc != 0) {
            set_state(t, fd, (st & ST_OURS) | ST_WANT); /* registered for nothing */
            return -1;
        }
    }
    set_state(t, fd, (st & ST_OURS) | ST_WANT | (unsigned)want);
    return 0;
}

int gw_socks_event(gw_socks *t, cc_socket_t fd) {
    unsigned st = state_of(t, fd);
    if (!st || (st & ST_WANT)) return 1; /* unknown: as before this table (libcurl ignores what it does not know) */
    if (st & ST_REG) {
        unregister(t, fd);
        t->idle--;
    }
    set_state(t, fd, st & ST_OURS);
    return 0;
}

void gw_socks_closing(gw_socks *t, cc_socket_t fd) {
    unsigned st = state_of(t, fd);
    if (!st) return;
    if (st & ST_REG) {
        unregister(t, fd); /* before the close: a descriptor shared with a child process would stay registered */
        if (!(st & ST_WANT)) t->idle--;
    }
    i64map_remove(&t->map, key_of(fd));
}
