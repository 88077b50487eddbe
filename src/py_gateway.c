/*
** py_gateway.c — Gateway, GatewayStream and TokenKey heap types: a thin
** binding of gateway.h and token.h (usage per run is metered in run.c).
** The non-blocking calls (submit, headers_ready, take, ended, ready, detach,
** close) only take the gateway's short mutex and keep the GIL: an event loop
** calls them without a thread hop. The blocking ones (start, read) wait with
** the GIL released. The I/O thread never touches Python: it signals news by
** writing one byte to the socket given to set_notify_fd().
*/
#include "py_util.h"
#include "gateway.h"
#include "token.h"

#ifdef _WIN32
#include <winsock2.h>
#else
#include <unistd.h>
#endif

/* ------------------------------------------------------------ Gateway */

typedef struct {
    PyObject_HEAD
    cc_gateway *g;
    int streams;       /* open streams; close() waits for none */
    int notify_fd;     /* written from the I/O thread; -1: none */
    int reader_idle_ms;
    int handles_max;
} GatewayObject;

typedef struct {
    PyObject_HEAD
    cc_gw_stream *s;
    GatewayObject *owner;
    int busy;
    Py_ssize_t read_waits; /* read() calls that let go of the GIL to wait (tests see that only waits do) */
} StreamObject;

static ccpy_state *tstate(PyObject *self) { return ccpy_state_from_type(Py_TYPE(self)); }

struct cc_gateway *ccpy_gateway_pin(ccpy_state *st, PyObject *o) {
    if (!PyObject_TypeCheck(o, (PyTypeObject *)st->GatewayType)) {
        PyErr_SetString(PyExc_TypeError, "expected a Gateway");
        return NULL;
    }
    GatewayObject *self = (GatewayObject *)o;
    if (!self->g) {
        cc_error e;
        cc_fail(&e, CC_ERR_STATE, "", "the gateway is closed");
        ccpy_raise(st, &e);
        return NULL;
    }
    self->streams++; /* close() refuses while pinned */
    return self->g;
}

void ccpy_gateway_unpin(PyObject *o) { ((GatewayObject *)o)->streams--; }

static PyObject *state_error(ccpy_state *st, const char *msg) {
    cc_error e;
    cc_fail(&e, CC_ERR_STATE, "", "%s", msg);
    return ccpy_raise(st, &e);
}

/* I/O thread: no GIL, no Python. A full socket buffer already means "wake up". */
static void notify_cb(void *ud) {
    int fd = (int)(intptr_t)ud;
#ifdef _WIN32
    (void)send((SOCKET)fd, "x", 1, 0);
#else
    ssize_t w = write(fd, "x", 1);
    (void)w;
#endif
}

static int G_init(GatewayObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"upstream_base", "upstream_key", "connect_timeout_ms", "timeout_ms",
                             "request_bytes_max", "response_bytes_max", "handles_max", "reader_idle_ms", "io_sched",
                             NULL};
    ccpy_state *st = tstate((PyObject *)self);
    PyObject *base_o, *key_o = NULL;
    int cto = 10000, to = 600000, hmax = 128, idle = 60000;
    long long reqmax = 64LL << 20, respmax = 4LL << 30;
    const char *sched = "batch";
    if (self->g) { ccpy_invalid(st, "self", "Gateway is already open"); return -1; }
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O$iiLLiis:Gateway", kwlist, &base_o, &key_o, &cto, &to, &reqmax,
                                     &respmax, &hmax, &idle, &sched))
        return -1;
    int io_sched = strcmp(sched, "batch") == 0 ? CC_GW_IO_BATCH : strcmp(sched, "normal") == 0 ? CC_GW_IO_NORMAL : -1;
    if (io_sched < 0) { ccpy_invalid(st, "io_sched", "io_sched must be \"batch\" or \"normal\""); return -1; }
    cc_gateway_config cfg = {.connect_timeout_ms = cto, .timeout_ms = to, .request_bytes_max = reqmax,
                             .response_bytes_max = respmax, .handles_max = hmax, .reader_idle_ms = idle,
                             .io_sched = io_sched};
    if (ccpy_str(st, base_o, "upstream_base", &cfg.upstream_base) < 0 ||
        ccpy_str(st, key_o, "upstream_key", &cfg.upstream_key) < 0)
        return -1;
    self->notify_fd = -1;
    cc_error e;
    cc_rc rc;
    Py_BEGIN_ALLOW_THREADS /* starts a thread */
    rc = cc_gateway_open(&cfg, NULL, NULL, &self->g, &e);
    Py_END_ALLOW_THREADS
    if (rc != CC_OK) { ccpy_raise(st, &e); return -1; }
    self->reader_idle_ms = idle;
    self->handles_max = hmax;
    return 0;
}

static PyObject *new_stream(GatewayObject *self, ccpy_state *st, cc_gw_stream *s) {
    StreamObject *so = PyObject_GC_New(StreamObject, (PyTypeObject *)st->GatewayStreamType);
    if (!so) {
        cc_gw_close(s);
        return NULL;
    }
    so->s = s;
    so->owner = (GatewayObject *)Py_NewRef(self);
    so->busy = 0;
    so->read_waits = 0;
    self->streams++;
    PyObject_GC_Track(so);
    return (PyObject *)so;
}

static PyObject *G_request(GatewayObject *self, PyObject *args, PyObject *kw, int blocking) {
    static char *kwlist[] = {"method", "path", "query", "content_type", "idempotency_key", "job_id", "body", NULL};
    ccpy_state *st = tstate((PyObject *)self);
    if (!self->g) return state_error(st, "the gateway is closed");
    PyObject *m_o, *p_o, *q_o = NULL, *ct_o = NULL, *ik_o = NULL, *job_o = NULL;
    Py_buffer body = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kw, blocking ? "OO|$OOOOy*:start" : "OO|$OOOOy*:submit", kwlist, &m_o,
                                     &p_o, &q_o, &ct_o, &ik_o, &job_o, &body))
        return NULL;
    cc_gw_request req = {0};
    PyObject *out = NULL;
    if (ccpy_str(st, m_o, "method", &req.method) < 0 || ccpy_str(st, p_o, "path", &req.path) < 0 ||
        ccpy_str(st, q_o, "query", &req.query) < 0 || ccpy_str(st, ct_o, "content_type", &req.content_type) < 0 ||
        ccpy_str(st, ik_o, "idempotency_key", &req.idempotency_key) < 0 ||
        ccpy_str(st, job_o, "job_id", &req.job_id) < 0)
        goto done;
    if (!req.method || !req.path) { ccpy_invalid(st, "path", "method and path are required"); goto done; }
    if (req.query && !*req.query) req.query = NULL;
    req.body = body.buf;
    req.body_len = body.buf ? (size_t)body.len : 0;
    cc_gw_stream *s = NULL;
    cc_error e;
    cc_rc rc;
    if (blocking) {
        self->streams++; /* close() must not run meanwhile */
        Py_BEGIN_ALLOW_THREADS
        rc = cc_gw_start(self->g, &req, &s, &e);
        Py_END_ALLOW_THREADS
        self->streams--;
    } else {
        rc = cc_gw_submit(self->g, &req, &s, &e); /* never blocks: keeps the GIL */
    }
    if (rc != CC_OK) {
        ccpy_raise(st, &e);
        goto done;
    }
    out = new_stream(self, st, s);
done:
    if (body.buf) PyBuffer_Release(&body);
    return out;
}

static PyObject *G_start(GatewayObject *self, PyObject *args, PyObject *kw) { return G_request(self, args, kw, 1); }
static PyObject *G_submit(GatewayObject *self, PyObject *args, PyObject *kw) { return G_request(self, args, kw, 0); }

static PyObject *G_ready(GatewayObject *self, PyObject *Py_UNUSED(ignored)) {
    if (!self->g) return PyList_New(0);
    PyObject *l = PyList_New(0);
    uint64_t ids[256];
    size_t n;
    while (l && (n = cc_gw_ready(self->g, ids, 256)) > 0) {
        for (size_t i = 0; i < n; i++) {
            PyObject *v = PyLong_FromUnsignedLongLong(ids[i]);
            if (!v || PyList_Append(l, v) < 0) { Py_XDECREF(v); Py_CLEAR(l); break; }
            Py_DECREF(v);
        }
        if (n < 256) break;
    }
    return l;
}

static PyObject *G_set_notify_fd(GatewayObject *self, PyObject *arg) {
    int fd;
    if (!PyArg_Parse(arg, "i:set_notify_fd", &fd)) return NULL;
    if (fd < -1) return ccpy_invalid(tstate((PyObject *)self), "fd", "fd must be a socket's file descriptor or -1");
    if (!self->g) Py_RETURN_NONE;
    /* A barrier: after it the I/O thread no longer writes to the old socket. */
    if (fd < 0) cc_gateway_set_notify(self->g, NULL, NULL);
    else cc_gateway_set_notify(self->g, notify_cb, (void *)(intptr_t)fd);
    self->notify_fd = fd;
    Py_RETURN_NONE;
}

static PyObject *G_stats(GatewayObject *self, PyObject *Py_UNUSED(ignored)) {
    if (!self->g) return state_error(tstate((PyObject *)self), "the gateway is closed");
    cc_gw_stats s;
    cc_gateway_stats(self->g, &s);
    return Py_BuildValue("{sLsLsLsLsL}", "in_flight", (long long)s.in_flight, "handles_max", (long long)s.handles_max,
                         "started", (long long)s.started, "refused_busy", (long long)s.refused_busy, "aborted_idle",
                         (long long)s.aborted_idle);
}

static PyObject *G_close(GatewayObject *self, PyObject *Py_UNUSED(ignored)) {
    if (!self->g) Py_RETURN_NONE;
    if (self->streams) return state_error(tstate((PyObject *)self), "close every GatewayStream first");
    cc_gateway *g = self->g;
    self->g = NULL;
    Py_BEGIN_ALLOW_THREADS /* joins the I/O thread */
    cc_gateway_close(g);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static void G_dealloc(GatewayObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->g) {
        CC_ASSERT(self->streams == 0); /* each stream holds a reference */
        cc_gateway *g = self->g;
        self->g = NULL;
        Py_BEGIN_ALLOW_THREADS
        cc_gateway_close(g);
        Py_END_ALLOW_THREADS
    }
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int G_traverse(PyObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static PyObject *G_get_reader_idle_ms(GatewayObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromLong(self->reader_idle_ms);
}
static PyObject *G_get_handles_max(GatewayObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromLong(self->handles_max);
}

#define KW (METH_VARARGS | METH_KEYWORDS)
#define FN(f) (PyCFunction)(void (*)(void))(f)
static PyMethodDef G_methods[] = {
    {"submit", FN(G_submit), KW,
     "submit(method, path, *, query=None, content_type=None, idempotency_key=None, job_id=None, body=b'') -> "
     "GatewayStream at once (never blocks); LimitExceeded with field 'busy' when saturated"},
    {"start", FN(G_start), KW, "like submit(), then waits (GIL released) for the status and headers"},
    {"ready", FN(G_ready), METH_NOARGS, "ids of waiting streams that have news (drains the ready list)"},
    {"set_notify_fd", FN(G_set_notify_fd), METH_O, "a socket the I/O thread writes one byte to when ready() has ids"},
    {"stats", FN(G_stats), METH_NOARGS, "{in_flight, handles_max, started, refused_busy, aborted_idle}"},
    {"close", FN(G_close), METH_NOARGS, "close the gateway (stops its I/O thread)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef G_getset[] = {
    {"reader_idle_ms", (getter)G_get_reader_idle_ms, NULL, "a reader idle this long loses its transfer", NULL},
    {"handles_max", (getter)G_get_handles_max, NULL, "transfers in flight at most", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot G_slots[] = {
    {Py_tp_doc, "Gateway(upstream_base, upstream_key='', *, connect_timeout_ms=10000, timeout_ms=600000, "
                "request_bytes_max=64 MiB, response_bytes_max=4 GiB, handles_max=128, reader_idle_ms=60000, "
                "io_sched='batch' (the I/O thread as SCHED_BATCH where the OS has it; 'normal': the default "
                "scheduling; see gateway.h))"},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, G_init},
    {Py_tp_dealloc, G_dealloc},
    {Py_tp_traverse, G_traverse},
    {Py_tp_methods, G_methods},
    {Py_tp_getset, G_getset},
    {0, NULL},
};

static PyType_Spec G_spec = {
    .name = "comfy_credits_ext._core.Gateway",
    .basicsize = sizeof(GatewayObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = G_slots,
};

/* ------------------------------------------------------------ GatewayStream */

static int stream_open(StreamObject *self) {
    if (self->s && !self->busy) return 0;
    state_error(tstate((PyObject *)self), self->s ? "the stream is in use by another thread" : "the stream is closed");
    return -1;
}

static PyObject *S_read(StreamObject *self, PyObject *args) {
    Py_ssize_t n = 65536;
    if (!PyArg_ParseTuple(args, "|n:read", &n)) return NULL;
    if (stream_open(self) < 0) return NULL;
    if (n < 1 || n > (1 << 24)) return ccpy_invalid(tstate((PyObject *)self), "size", "size must be 1..16 MiB");
    PyObject *b = PyBytes_FromStringAndSize(NULL, n);
    if (!b) return NULL;
    size_t got = 0;
    cc_error e;
    cc_rc rc;
    int again = 0;
    /* What is already there (data, the end, a failure) is taken with the GIL held: a
    ** reader that let go of the GIL for it would restart the wait of any thread that
    ** wants the GIL (CPython's switch interval begins again) and then wait for it back. */
    rc = cc_gw_read_nowait(self->s, PyBytes_AS_STRING(b), (size_t)n, &got, &again, &e);
    if (rc == CC_OK && again) {
        self->busy = 1;
        self->read_waits++;
        Py_BEGIN_ALLOW_THREADS
        rc = cc_gw_read(self->s, PyBytes_AS_STRING(b), (size_t)n, &got, &e);
        Py_END_ALLOW_THREADS
        self->busy = 0;
    }
    if (rc != CC_OK) {
        Py_DECREF(b);
        return ccpy_raise(tstate((PyObject *)self), &e);
    }
    if ((Py_ssize_t)got != n && _PyBytes_Resize(&b, (Py_ssize_t)got) < 0) return NULL;
    return b;
}

static void stream_release(StreamObject *self) {
    if (!self->s) return;
    cc_gw_stream *s = self->s;
    self->s = NULL;
    cc_gw_close(s); /* never blocks */
    self->owner->streams--;
}

static PyObject *S_take(StreamObject *self, PyObject *args) {
    Py_ssize_t n = 256 * 1024;
    if (!PyArg_ParseTuple(args, "|n:take", &n)) return NULL;
    if (stream_open(self) < 0) return NULL;
    if (n < 1 || n > (1 << 24)) return ccpy_invalid(tstate((PyObject *)self), "size", "size must be 1..16 MiB");
    char small[16384];
    char *buf = n <= (Py_ssize_t)sizeof small ? small : PyMem_Malloc((size_t)n);
    if (!buf) return PyErr_NoMemory();
    size_t got = 0;
    int again = 0;
    cc_error e;
    cc_rc rc = cc_gw_take(self->s, buf, (size_t)n, &got, &again, &e);
    PyObject *out;
    if (rc != CC_OK) out = ccpy_raise(tstate((PyObject *)self), &e);
    else if (again) out = Py_NewRef(Py_None);
    else out = PyBytes_FromStringAndSize(buf, (Py_ssize_t)got);
    if (buf != small) PyMem_Free(buf);
    return out;
}

static PyObject *S_headers_ready(StreamObject *self, PyObject *Py_UNUSED(ignored)) {
    if (stream_open(self) < 0) return NULL;
    int ready = 0;
    cc_error e;
    if (cc_gw_headers_ready(self->s, &ready, &e) != CC_OK) return ccpy_raise(tstate((PyObject *)self), &e);
    return PyBool_FromLong(ready);
}

static PyObject *S_ended(StreamObject *self, PyObject *Py_UNUSED(ignored)) {
    if (stream_open(self) < 0) return NULL;
    int timed_out = 0;
    int d = cc_gw_ended(self->s, &timed_out);
    if (!d) Py_RETURN_NONE;
    return PyBool_FromLong(timed_out);
}

static PyObject *S_detach(StreamObject *self, PyObject *Py_UNUSED(ignored)) {
    if (stream_open(self) < 0) return NULL;
    cc_gw_detach(self->s);
    Py_RETURN_NONE;
}

static PyObject *S_get_id(StreamObject *self, void *Py_UNUSED(c)) {
    if (stream_open(self) < 0) return NULL;
    return PyLong_FromUnsignedLongLong(cc_gw_id(self->s));
}

static PyObject *S_close(StreamObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->busy) return state_error(tstate((PyObject *)self), "the stream is in use by another thread");
    stream_release(self);
    Py_RETURN_NONE;
}

PyObject *ccpy_usage_dict(const cc_usage *u) {
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    struct { const char *k; int64_t v; } f[] = {{"credits_used_micro", u->credits_used_micro},
                                                 {"input_tokens", u->input_tokens},
                                                 {"output_tokens", u->output_tokens},
                                                 {"images", u->images},
                                                 {"seconds_ms", u->seconds_ms}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (f[i].v < 0) continue; /* not reported: absent */
        if (ccpy_set_i64(d, f[i].k, f[i].v) < 0) { Py_DECREF(d); return NULL; }
    }
    return d;
}

static PyObject *S_usage(StreamObject *self, PyObject *Py_UNUSED(ignored)) {
    if (stream_open(self) < 0) return NULL;
    cc_usage u;
    cc_gw_usage(self->s, &u);
    return ccpy_usage_dict(&u);
}

static PyObject *S_get_status(StreamObject *self, void *Py_UNUSED(c)) {
    if (stream_open(self) < 0) return NULL;
    return PyLong_FromLong(cc_gw_status(self->s));
}

static PyObject *S_get_headers(StreamObject *self, void *Py_UNUSED(c)) {
    if (stream_open(self) < 0) return NULL;
    int n = cc_gw_header_count(self->s);
    PyObject *l = PyList_New(0);
    for (int i = 0; l && i < n; i++) {
        const char *h = cc_gw_header(self->s, i);
        const char *colon = strchr(h, ':');
        if (!colon) continue;
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t') v++;
        PyObject *t = Py_BuildValue("(s#s)", h, (Py_ssize_t)(colon - h), v);
        if (!t || PyList_Append(l, t) < 0) { Py_XDECREF(t); Py_CLEAR(l); break; }
        Py_DECREF(t);
    }
    return l;
}

static PyObject *S_get_body_bytes(StreamObject *self, void *Py_UNUSED(c)) {
    if (stream_open(self) < 0) return NULL;
    return PyLong_FromLongLong(cc_gw_body_bytes(self->s));
}

static PyObject *S_get_finished(StreamObject *self, void *Py_UNUSED(c)) {
    if (stream_open(self) < 0) return NULL;
    return PyBool_FromLong(cc_gw_finished(self->s));
}

static PyObject *S_enter(StreamObject *self, PyObject *Py_UNUSED(ignored)) { return Py_NewRef(self); }
static PyObject *S_exit(StreamObject *self, PyObject *Py_UNUSED(args)) {
    PyObject *r = S_close(self, NULL);
    if (!r) return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

static void S_dealloc(StreamObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    stream_release(self);
    Py_CLEAR(self->owner);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int S_traverse(StreamObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->owner);
    return 0;
}

static PyMethodDef S_methods[] = {
    {"read", FN(S_read), METH_VARARGS, "read(size=65536) -> bytes; b'' at the end of the body (blocks, GIL released only to wait)"},
    {"take", FN(S_take), METH_VARARGS, "take(size=262144) -> bytes buffered now; b'' at the end; None: nothing yet "
                                       "(the stream's id will come out of Gateway.ready())"},
    {"headers_ready", FN(S_headers_ready), METH_NOARGS, "True once status and headers are here; False: wait for ready()"},
    {"ended", FN(S_ended), METH_NOARGS, "None while the transfer runs (wait for ready()), else whether it timed out"},
    {"detach", FN(S_detach), METH_NOARGS, "the reader gives up the body: it is read to its end and discarded"},
    {"usage", FN(S_usage), METH_NOARGS, "usage reported by the response (after the body was read)"},
    {"close", FN(S_close), METH_NOARGS, "release the stream (a running transfer is cancelled); never blocks"},
    {"__enter__", FN(S_enter), METH_NOARGS, NULL},
    {"__exit__", FN(S_exit), METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyObject *S_get_read_waits(StreamObject *self, void *c) {
    (void)c;
    return PyLong_FromSsize_t(self->read_waits);
}

static PyGetSetDef S_getset[] = {
    {"read_waits", (getter)S_get_read_waits, NULL,
     "how many read() calls let go of the GIL to wait for the upstream (one that finds data, the end or a "
     "failure already there keeps it)", NULL},
    {"id", (getter)S_get_id, NULL, "what Gateway.ready() reports for this stream", NULL},
    {"status", (getter)S_get_status, NULL, "HTTP status of the upstream response", NULL},
    {"headers", (getter)S_get_headers, NULL, "[(name, value)] without hop-by-hop headers", NULL},
    {"body_bytes", (getter)S_get_body_bytes, NULL, "body bytes received so far", NULL},
    {"finished", (getter)S_get_finished, NULL, "True once the whole body was read", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot S_slots[] = {
    {Py_tp_doc, "An upstream response being streamed; made by Gateway.start()."},
    {Py_tp_dealloc, S_dealloc},
    {Py_tp_traverse, S_traverse},
    {Py_tp_methods, S_methods},
    {Py_tp_getset, S_getset},
    {0, NULL},
};

static PyType_Spec S_spec = {
    .name = "comfy_credits_ext._core.GatewayStream",
    .basicsize = sizeof(StreamObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = S_slots,
};

/* ------------------------------------------------------------ usage dicts */

int ccpy_usage_from_dict(ccpy_state *st, PyObject *d, cc_usage *u) {
    cc_usage_init(u);
    if (!PyDict_Check(d)) { ccpy_invalid(st, "usage", "usage must be a dict"); return -1; }
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(d, &pos, &k, &v)) {
        const char *name;
        if (ccpy_str(st, k, "usage", &name) < 0 || !name) return -1;
        int64_t *dst = !strcmp(name, "credits_used_micro") ? &u->credits_used_micro
                     : !strcmp(name, "input_tokens") ? &u->input_tokens
                     : !strcmp(name, "output_tokens") ? &u->output_tokens
                     : !strcmp(name, "images") ? &u->images
                     : !strcmp(name, "seconds_ms") ? &u->seconds_ms : NULL;
        if (!dst) { ccpy_invalid(st, "usage", "unknown usage key"); return -1; }
        if (ccpy_opt_i64(st, v, name, -1, dst) < 0) return -1;
        if (v != Py_None && *dst < 0) { ccpy_invalid(st, name, "usage counters must not be negative"); return -1; }
    }
    return 0;
}

/* ------------------------------------------------------------ TokenKey */

typedef struct {
    PyObject_HEAD
    cc_token_key k;
    int ready;
} TokenKeyObject;

static PyObject *K_new(PyTypeObject *tp, PyObject *a, PyObject *kw) {
    if (PyTuple_GET_SIZE(a) || (kw && PyDict_GET_SIZE(kw))) {
        PyErr_SetString(PyExc_TypeError, "TokenKey() takes no arguments: the key is random and never leaves memory");
        return NULL;
    }
    TokenKeyObject *self = (TokenKeyObject *)tp->tp_alloc(tp, 0);
    if (!self) return NULL;
    cc_error e;
    if (cc_token_key_random(&self->k, &e) != CC_OK) {
        Py_DECREF(self);
        return ccpy_raise(ccpy_state_from_type(tp), &e);
    }
    self->ready = 1;
    return (PyObject *)self;
}

static PyObject *K_mint(TokenKeyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"hold_id", "account_id", "expires_ms", NULL};
    ccpy_state *st = tstate((PyObject *)self);
    PyObject *h_o, *a_o, *x_o;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO:mint", kwlist, &h_o, &a_o, &x_o)) return NULL;
    int64_t h, a, x;
    if (ccpy_i64(st, h_o, "hold_id", &h) < 0 || ccpy_i64(st, a_o, "account_id", &a) < 0 ||
        ccpy_i64(st, x_o, "expires_ms", &x) < 0)
        return NULL;
    char buf[CC_TOKEN_BYTES_MAX + 1];
    cc_error e;
    if (cc_token_mint(&self->k, h, a, x, buf, sizeof buf, &e) != CC_OK) return ccpy_raise(st, &e);
    return PyUnicode_FromString(buf);
}

static PyObject *K_verify(TokenKeyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"token", "now_ms", NULL};
    ccpy_state *st = tstate((PyObject *)self);
    PyObject *t_o, *now_o = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:verify", kwlist, &t_o, &now_o)) return NULL;
    const char *t;
    int64_t now, h, a, x;
    if (ccpy_str(st, t_o, "token", &t) < 0 || ccpy_opt_i64(st, now_o, "now_ms", cc_now_ms(), &now) < 0) return NULL;
    cc_error e;
    if (cc_token_verify(&self->k, t, now, &h, &a, &x, &e) != CC_OK) return ccpy_raise(st, &e);
    return Py_BuildValue("{sLsLsL}", "hold_id", (long long)h, "account_id", (long long)a, "expires_ms", (long long)x);
}

static void K_dealloc(TokenKeyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    volatile unsigned char *p = self->k.secret;
    for (size_t i = 0; i < sizeof self->k.secret; i++) p[i] = 0;
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMethodDef K_methods[] = {
    {"mint", FN(K_mint), KW, "mint(hold_id, account_id, expires_ms) -> token"},
    {"verify", FN(K_verify), KW, "verify(token, now_ms=None) -> {hold_id, account_id, expires_ms}"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot K_slots[] = {
    {Py_tp_doc, "TokenKey(): a random in-memory key for hold tokens."},
    {Py_tp_new, K_new},
    {Py_tp_dealloc, K_dealloc},
    {Py_tp_traverse, G_traverse},
    {Py_tp_methods, K_methods},
    {0, NULL},
};

static PyType_Spec K_spec = {
    .name = "comfy_credits_ext._core.TokenKey",
    .basicsize = sizeof(TokenKeyObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = K_slots,
};

/* ------------------------------------------------------------ registration */

static PyObject *usage_from_json_fn(PyObject *m, PyObject *arg) {
    (void)m;
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) return NULL;
    cc_usage u;
    cc_usage_from_json(b.buf, (size_t)b.len, &u);
    PyBuffer_Release(&b);
    return ccpy_usage_dict(&u);
}

static PyMethodDef gateway_functions[] = {
    {"usage_from_json", usage_from_json_fn, METH_O, "usage counters a JSON response body reports"},
    {NULL, NULL, 0, NULL},
};

int ccpy_gateway_init(PyObject *m, ccpy_state *st) {
    PyObject *g = PyType_FromModuleAndSpec(m, &G_spec, NULL);
    if (!g) return -1;
    st->GatewayType = g;
    st->GatewayStreamType = PyType_FromModuleAndSpec(m, &S_spec, NULL);
    st->TokenKeyType = PyType_FromModuleAndSpec(m, &K_spec, NULL);
    if (!st->GatewayStreamType || !st->TokenKeyType) return -1;
    if (PyModule_AddObjectRef(m, "Gateway", g) < 0 || PyModule_AddObjectRef(m, "GatewayStream", st->GatewayStreamType) < 0 ||
        PyModule_AddObjectRef(m, "TokenKey", st->TokenKeyType) < 0)
        return -1;
    return PyModule_AddFunctions(m, gateway_functions);
}
