/*
** py_listener.c — GatewayListener: a thin binding of listener.h. It pins the
** Gateway and Runs it serves (their close() refuses until the listener is
** closed). Opening and closing wait for the gateway's I/O thread with the
** GIL released; the other calls only take the listener's short mutex.
*/
#include "py_util.h"
#include "listener.h"

typedef struct {
    PyObject_HEAD
    cc_listener *l;
    PyObject *gateway, *runs;
    int port, ipv6;
} ListenerObject;

static ccpy_state *lstate(PyObject *self) { return ccpy_state_from_type(Py_TYPE(self)); }

static void release(ListenerObject *self) {
    if (self->l) {
        cc_listener *l = self->l;
        self->l = NULL;
        Py_BEGIN_ALLOW_THREADS /* waits for the I/O thread to let go */
        cc_listener_close(l);
        Py_END_ALLOW_THREADS
    }
    if (self->gateway) {
        ccpy_gateway_unpin(self->gateway);
        Py_CLEAR(self->gateway);
    }
    if (self->runs) {
        ccpy_runs_unpin(self->runs);
        Py_CLEAR(self->runs);
    }
}

static int L_init(ListenerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"gateway", "runs", "ipv6", "connections_max", "body_timeout_ms", "keepalive_ms",
                             "upstream_configured", NULL};
    ccpy_state *st = lstate((PyObject *)self);
    PyObject *go, *ro;
    int ipv6 = 0, upstream = 1;
    cc_listener_config cfg = {.connections_max = 256, .body_timeout_ms = 30000, .keepalive_ms = 75000};
    if (self->l) { ccpy_invalid(st, "self", "GatewayListener is already open"); return -1; }
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|$piiip:GatewayListener", kwlist, &go, &ro, &ipv6,
                                     &cfg.connections_max, &cfg.body_timeout_ms, &cfg.keepalive_ms, &upstream))
        return -1;
    cfg.ipv6 = ipv6;
    cfg.upstream_configured = upstream;
    struct cc_gateway *g = ccpy_gateway_pin(st, go);
    if (!g) return -1;
    struct cc_runs *r = ccpy_runs_pin(st, ro);
    if (!r) {
        ccpy_gateway_unpin(go);
        return -1;
    }
    self->gateway = Py_NewRef(go);
    self->runs = Py_NewRef(ro);
    cc_error e;
    cc_rc rc;
    int port = 0;
    Py_BEGIN_ALLOW_THREADS
    rc = cc_listener_open(g, r, &cfg, &self->l, &port, &e);
    Py_END_ALLOW_THREADS
    if (rc != CC_OK) {
        release(self);
        ccpy_raise(st, &e);
        return -1;
    }
    self->port = port;
    self->ipv6 = ipv6;
    return 0;
}

static PyObject *L_close(ListenerObject *self, PyObject *Py_UNUSED(ignored)) {
    release(self);
    Py_RETURN_NONE;
}

static PyObject *L_logs(ListenerObject *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *out = PyList_New(0);
    if (!out || !self->l) return out;
    char buf[8192];
    for (;;) {
        int64_t dropped = 0;
        size_t n = cc_listener_logs(self->l, buf, sizeof buf, &dropped);
        if (dropped) {
            PyObject *s = PyUnicode_FromFormat("comfy-credits gateway: %lld log lines dropped (queue full)",
                                               (long long)dropped);
            if (!s || PyList_Append(out, s) < 0) { Py_XDECREF(s); Py_DECREF(out); return NULL; }
            Py_DECREF(s);
        }
        if (n == 0) break;
        size_t a = 0;
        for (size_t i = 0; i < n; i++) {
            if (buf[i] != '\n') continue;
            PyObject *s = PyUnicode_DecodeUTF8(buf + a, (Py_ssize_t)(i - a), "replace");
            if (!s || PyList_Append(out, s) < 0) { Py_XDECREF(s); Py_DECREF(out); return NULL; }
            Py_DECREF(s);
            a = i + 1;
        }
    }
    return out;
}

static PyObject *L_stats(ListenerObject *self, PyObject *Py_UNUSED(ignored)) {
    if (!self->l) {
        cc_error e;
        cc_fail(&e, CC_ERR_STATE, "", "the listener is closed");
        return ccpy_raise(lstate((PyObject *)self), &e);
    }
    cc_listener_stats s;
    cc_listener_stats_get(self->l, &s);
    return Py_BuildValue("{sLsLsLsLsLsL}", "connections", (long long)s.connections, "accepted", (long long)s.accepted,
                         "requests", (long long)s.requests, "refused_busy", (long long)s.refused_busy, "abandoned",
                         (long long)s.abandoned, "calls_open", (long long)s.calls_open);
}

static PyObject *L_set_upstream_configured(ListenerObject *self, PyObject *arg) {
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    if (self->l) cc_listener_set_upstream_configured(self->l, on);
    Py_RETURN_NONE;
}

static PyObject *L_get_port(ListenerObject *self, void *Py_UNUSED(c)) { return PyLong_FromLong(self->port); }
static PyObject *L_get_host(ListenerObject *self, void *Py_UNUSED(c)) {
    return PyUnicode_FromString(self->ipv6 ? "::1" : "127.0.0.1");
}

static void L_dealloc(ListenerObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    release(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int L_traverse(ListenerObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->gateway);
    Py_VISIT(self->runs);
    return 0;
}

#define FN(f) (PyCFunction)(void (*)(void))(f)
static PyMethodDef L_methods[] = {
    {"close", FN(L_close), METH_NOARGS,
     "close(): stop listening; connections close, calls in flight are cancelled and ended (waits, GIL released)"},
    {"logs", FN(L_logs), METH_NOARGS, "logs() -> the log lines queued since the last call"},
    {"stats", FN(L_stats), METH_NOARGS, "{connections, accepted, requests, refused_busy, abandoned, calls_open}"},
    {"set_upstream_configured", FN(L_set_upstream_configured), METH_O,
     "set_upstream_configured(on): off refuses every call (no upstream key)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef L_getset[] = {
    {"port", (getter)L_get_port, NULL, "the port it listens on", NULL},
    {"host", (getter)L_get_host, NULL, "the loopback address it listens on", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot L_slots[] = {
    {Py_tp_doc, "GatewayListener(gateway, runs, *, ipv6=False, connections_max=256, body_timeout_ms=30000, "
                "keepalive_ms=75000, upstream_configured=True): the gateway's loopback listener served from C "
                "on the gateway's I/O thread (listener.h)"},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, L_init},
    {Py_tp_dealloc, L_dealloc},
    {Py_tp_traverse, L_traverse},
    {Py_tp_methods, L_methods},
    {Py_tp_getset, L_getset},
    {0, NULL},
};

static PyType_Spec L_spec = {
    .name = "comfy_credits_ext._core.GatewayListener",
    .basicsize = sizeof(ListenerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = L_slots,
};

int ccpy_listener_init(PyObject *m, ccpy_state *st) {
    (void)st;
    PyObject *t = PyType_FromModuleAndSpec(m, &L_spec, NULL);
    if (!t) return -1;
    int rc = PyModule_AddObjectRef(m, "GatewayListener", t);
    Py_DECREF(t);
    return rc;
}
