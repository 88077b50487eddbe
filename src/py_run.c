/*
** py_run.c — the Runs heap type: a thin binding of run.h.
**
** A Runs pins the Ledger and PriceTable it was made with (they cannot be
** closed or changed under it). Calls that touch the ledger or wait for calls
** in flight release the GIL; call_headers / call_end only take a mutex.
*/
#include "py_util.h"
#include "run.h"

typedef struct {
    PyObject_HEAD
    cc_runs *r;
    PyObject *ledger, *prices;
    int busy;        /* calls in flight with the GIL released */
} RunsObject;

static ccpy_state *rstate(PyObject *self) { return ccpy_state_from_type(Py_TYPE(self)); }

static int ensure(RunsObject *self) {
    if (self->r) return 0;
    cc_error e;
    cc_fail(&e, CC_ERR_STATE, "", "Runs is closed");
    ccpy_raise(rstate((PyObject *)self), &e);
    return -1;
}

static void detach(RunsObject *self) {
    if (self->r) {
        cc_runs_close(self->r);
        self->r = NULL;
    }
    if (self->ledger) {
        ccpy_ledger_unpin(self->ledger);
        Py_CLEAR(self->ledger);
    }
    if (self->prices) {
        ccpy_prices_unpin(self->prices);
        Py_CLEAR(self->prices);
    }
}

struct cc_runs *ccpy_runs_pin(ccpy_state *st, PyObject *o) {
    if (!PyObject_TypeCheck(o, (PyTypeObject *)st->RunsType)) {
        PyErr_SetString(PyExc_TypeError, "expected a Runs");
        return NULL;
    }
    RunsObject *self = (RunsObject *)o;
    if (ensure(self) < 0) return NULL;
    self->busy++; /* close() refuses while pinned */
    return self->r;
}

void ccpy_runs_unpin(PyObject *o) { ((RunsObject *)o)->busy--; }

static int R_init(RunsObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"ledger", "prices", "hold_ttl_ms", "finish_wait_ms", "charge_interrupted", NULL};
    ccpy_state *st = rstate((PyObject *)self);
    PyObject *lo, *po;
    long long ttl, wait;
    int charge = 1;
    if (self->r) { ccpy_invalid(st, "self", "Runs is already open"); return -1; }
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOLL|p:Runs", kwlist, &lo, &po, &ttl, &wait, &charge)) return -1;
    cc_ledger *l = ccpy_ledger_pin(st, lo);
    if (!l) return -1;
    const cc_price_table *t = ccpy_prices_pin(st, po);
    if (!t) { ccpy_ledger_unpin(lo); return -1; }
    cc_runs_config cfg = {.hold_ttl_ms = ttl, .finish_wait_ms = wait, .charge_interrupted = charge};
    cc_error e;
    if (cc_runs_open(l, t, &cfg, &self->r, &e) != CC_OK) {
        ccpy_ledger_unpin(lo);
        ccpy_prices_unpin(po);
        ccpy_raise(st, &e);
        return -1;
    }
    self->ledger = Py_NewRef(lo);
    self->prices = Py_NewRef(po);
    return 0;
}

static PyObject *R_begin(RunsObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"key", "account_id", "prompt_id", "node_id", "node_class", "inputs", "prefixes",
                             "key_id", NULL};
    ccpy_state *st = rstate((PyObject *)self);
    PyObject *key_o, *acct_o, *pid_o, *nid_o, *cls_o, *inputs_o, *pre_o, *kid_o = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOO|$O:begin", kwlist, &key_o, &acct_o, &pid_o, &nid_o, &cls_o,
                                     &inputs_o, &pre_o, &kid_o))
        return NULL;
    if (ensure(self) < 0) return NULL;
    cc_run_begin_args a;
    memset(&a, 0, sizeof a);
    if (ccpy_str(st, key_o, "key", &a.key) < 0 || ccpy_i64(st, acct_o, "account_id", &a.account_id) < 0 ||
        ccpy_str(st, pid_o, "prompt_id", &a.prompt_id) < 0 || ccpy_str(st, nid_o, "node_id", &a.node_id) < 0 ||
        ccpy_str(st, cls_o, "node_class", &a.node_class) < 0 || ccpy_str(st, pre_o, "prefixes", &a.prefixes) < 0 ||
        ccpy_opt_i64(st, kid_o == Py_None ? NULL : kid_o, "key_id", 0, &a.credential_id) < 0)
        return NULL;
    if (a.credential_id < 0) return ccpy_invalid(st, "key_id", "key_id must be a key's id, or None");
    PyObject *js = ccpy_inputs_json(st, inputs_o);
    if (!js) return NULL;
    a.inputs_json = PyBytes_AS_STRING(js);
    a.inputs_len = (size_t)PyBytes_GET_SIZE(js);
    cc_run_info info;
    cc_error e;
    cc_rc rc;
    CCPY_BLOCKING(&self->busy, rc = cc_run_begin(self->r, &a, &info, &e));
    Py_DECREF(js);
    if (rc != CC_OK) return ccpy_raise(st, &e);
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    if (ccpy_set_i64(d, "run_id", info.run_id) | ccpy_set_i64(d, "hold_micro", info.hold_micro) |
        ccpy_set_i64(d, "from_reservation", info.from_reservation) | ccpy_set_i64(d, "calls", info.calls_planned) |
        ccpy_set_bool(d, "used_default", info.used_default) |
        ccpy_set_str(d, "model", info.model) | ccpy_set_str(d, "token", info.token))
        Py_CLEAR(d);
    memset(info.token, 0, sizeof info.token);
    return d;
}

static PyObject *R_call_begin(RunsObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"token", "method", "path", NULL};
    ccpy_state *st = rstate((PyObject *)self);
    PyObject *tok_o, *m_o, *p_o;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO:call_begin", kwlist, &tok_o, &m_o, &p_o)) return NULL;
    if (ensure(self) < 0) return NULL;
    const char *tok, *method, *path;
    if (ccpy_str(st, tok_o, "token", &tok) < 0 || ccpy_str(st, m_o, "method", &method) < 0 ||
        ccpy_str(st, p_o, "path", &path) < 0)
        return NULL;
    int64_t id = 0;
    int kind = 0;
    cc_error e;
    cc_rc rc;
    /* may extend the hold in the ledger */
    CCPY_BLOCKING(&self->busy, rc = cc_run_call_begin(self->r, tok, method, path, &id, &kind, &e));
    if (rc != CC_OK) return ccpy_raise(st, &e);
    return Py_BuildValue("(Li)", (long long)id, kind);
}

static PyObject *R_call_headers(RunsObject *self, PyObject *args) {
    long long id, credits;
    int kind, status;
    if (!PyArg_ParseTuple(args, "LiiL:call_headers", &id, &kind, &status, &credits)) return NULL;
    if (ensure(self) < 0) return NULL;
    cc_run_call_headers(self->r, id, kind, status, credits);
    Py_RETURN_NONE;
}

static PyObject *R_call_end(RunsObject *self, PyObject *args) {
    ccpy_state *st = rstate((PyObject *)self);
    long long id;
    int kind, status, timed_out;
    PyObject *usage = Py_None;
    if (!PyArg_ParseTuple(args, "Liip|O:call_end", &id, &kind, &status, &timed_out, &usage)) return NULL;
    if (ensure(self) < 0) return NULL;
    cc_usage u;
    cc_usage_init(&u);
    if (usage != Py_None && ccpy_usage_from_dict(st, usage, &u) < 0) return NULL;
    cc_run_call_end(self->r, id, kind, status, timed_out, &u);
    Py_RETURN_NONE;
}

static PyObject *result_dict(const cc_run_result *r) {
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    const char *oc = r->outcome == CC_RUN_SUCCEEDED ? "succeeded" : r->outcome == CC_RUN_FAILED ? "failed"
                                                                                             : "interrupted";
    PyObject *u = ccpy_usage_dict(&r->usage);
    int bad = !u || PyDict_SetItemString(d, "usage", u) < 0;
    Py_XDECREF(u);
    bad |= ccpy_set_bool(d, "replayed", r->replayed) | ccpy_set_bool(d, "settled", r->settled) |
           ccpy_set_bool(d, "hold_lost", r->hold_lost) | ccpy_set_i64(d, "hold_micro", r->hold_micro) |
           ccpy_set_i64(d, "billed", r->billed) | ccpy_set_i64(d, "charged", r->charged) |
           ccpy_set_i64(d, "uncollected", r->uncollected) | ccpy_set_i64(d, "calls", r->calls) |
           ccpy_set_i64(d, "billable_calls", r->billable_calls) | ccpy_set_i64(d, "late_calls", r->late_calls) |
           ccpy_set_i64(d, "in_flight_at_deadline", r->in_flight_at_deadline) | ccpy_set_str(d, "outcome", oc) |
           ccpy_set_str(d, "reason", r->reason);
    if (bad) Py_CLEAR(d);
    return d;
}

static PyObject *R_finish(RunsObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"run_id", "outcome", NULL};
    ccpy_state *st = rstate((PyObject *)self);
    long long id;
    const char *oc;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Ls:finish", kwlist, &id, &oc)) return NULL;
    if (ensure(self) < 0) return NULL;
    cc_run_outcome o = !strcmp(oc, "succeeded") ? CC_RUN_SUCCEEDED : !strcmp(oc, "failed") ? CC_RUN_FAILED
                     : !strcmp(oc, "interrupted") ? CC_RUN_INTERRUPTED : 0;
    if (!o) return ccpy_invalid(st, "outcome", "outcome must be 'succeeded', 'failed' or 'interrupted'");
    cc_run_result res;
    cc_error e;
    cc_rc rc;
    CCPY_BLOCKING(&self->busy, rc = cc_run_finish(self->r, id, o, &res, &e));
    if (rc != CC_OK) return ccpy_raise(st, &e);
    return result_dict(&res);
}

static PyObject *R_keepalive(RunsObject *self, PyObject *Py_UNUSED(ignored)) {
    if (ensure(self) < 0) return NULL;
    int n;
    CCPY_BLOCKING(&self->busy, n = cc_runs_keepalive(self->r));
    return PyLong_FromLong(n);
}

static PyObject *R_reserve(RunsObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"prompt_id", "account_id", "micro", "wait", NULL};
    ccpy_state *st = rstate((PyObject *)self);
    PyObject *pid_o, *acct_o, *micro_o;
    int wait = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO|$p:reserve", kwlist, &pid_o, &acct_o, &micro_o, &wait))
        return NULL;
    if (ensure(self) < 0) return NULL;
    const char *pid;
    int64_t acct, micro;
    if (ccpy_str(st, pid_o, "prompt_id", &pid) < 0 || ccpy_i64(st, acct_o, "account_id", &acct) < 0 ||
        ccpy_i64(st, micro_o, "micro", &micro) < 0)
        return NULL;
    cc_error e;
    cc_rc rc;
    int busy = 0;
    if (wait) {
        CCPY_BLOCKING(&self->busy, rc = cc_runs_reserve(self->r, pid, acct, micro, &e));
    } else {
        /* never waits: keeps the GIL (a release would cost a GIL hand-off, up to the switch interval) */
        rc = cc_runs_reserve_nowait(self->r, pid, acct, micro, &busy, &e);
        if (busy) Py_RETURN_FALSE;
    }
    if (rc != CC_OK) return ccpy_raise(st, &e);
    Py_RETURN_TRUE;
}

static PyObject *R_release(RunsObject *self, PyObject *arg) {
    const char *pid;
    if (ensure(self) < 0 || ccpy_str(rstate((PyObject *)self), arg, "prompt_id", &pid) < 0) return NULL;
    return PyLong_FromLongLong(cc_runs_release(self->r, pid));
}

static PyObject *R_unshare(RunsObject *self, PyObject *arg) {
    ccpy_state *st = rstate((PyObject *)self);
    const char *pid;
    if (ensure(self) < 0 || ccpy_str(st, arg, "prompt_id", &pid) < 0) return NULL;
    cc_error e;
    cc_rc rc;
    Py_INCREF(arg); /* pid is a view into it */
    CCPY_BLOCKING(&self->busy, rc = cc_runs_unshare(self->r, pid, &e));
    Py_DECREF(arg);
    if (rc != CC_OK) return ccpy_raise(st, &e);
    Py_RETURN_NONE;
}

static PyObject *R_reserved_elsewhere(RunsObject *self, PyObject *arg) {
    ccpy_state *st = rstate((PyObject *)self);
    int64_t acct, sum = 0;
    if (ensure(self) < 0 || ccpy_i64(st, arg, "account_id", &acct) < 0) return NULL;
    cc_error e;
    cc_rc rc;
    CCPY_BLOCKING(&self->busy, rc = cc_runs_reserved_elsewhere(self->r, acct, &sum, &e));
    if (rc != CC_OK) return ccpy_raise(st, &e);
    return PyLong_FromLongLong(sum);
}

static PyObject *R_reserved(RunsObject *self, PyObject *arg) {
    int64_t acct;
    if (ensure(self) < 0 || ccpy_i64(rstate((PyObject *)self), arg, "account_id", &acct) < 0) return NULL;
    return PyLong_FromLongLong(cc_runs_reserved(self->r, acct));
}

static PyObject *R_reservation(RunsObject *self, PyObject *arg) {
    const char *pid;
    if (ensure(self) < 0 || ccpy_str(rstate((PyObject *)self), arg, "prompt_id", &pid) < 0) return NULL;
    int64_t v = cc_runs_reservation(self->r, pid);
    if (v < 0) Py_RETURN_NONE;
    return PyLong_FromLongLong(v);
}

static PyObject *R_counts(RunsObject *self, PyObject *Py_UNUSED(ignored)) {
    if (ensure(self) < 0) return NULL;
    int64_t o, c, r;
    cc_runs_counts(self->r, &o, &c, &r);
    return Py_BuildValue("{s:L,s:L,s:L}", "open", (long long)o, "closed", (long long)c, "reservations",
                         (long long)r);
}

static PyObject *R_close(RunsObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->busy) {
        cc_error e;
        cc_fail(&e, CC_ERR_STATE, "", "Runs is in use by %d call(s)", self->busy);
        return ccpy_raise(rstate((PyObject *)self), &e);
    }
    detach(self);
    Py_RETURN_NONE;
}

static int R_traverse(RunsObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->ledger);
    Py_VISIT(self->prices);
    return 0;
}

static void R_dealloc(RunsObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    detach(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

#define FN(f) ((PyCFunction)(void (*)(void))(f))
#define KW (METH_VARARGS | METH_KEYWORDS)

static PyMethodDef R_methods[] = {
    {"begin", FN(R_begin), KW,
     "begin(key, account_id, prompt_id, node_id, node_class, inputs, prefixes, *, key_id=None) -> {run_id, "
     "hold_micro, from_reservation, calls, used_default, model, token}: hold + run + token, all or nothing; key_id: "
     "the personal API key the prompt came with (its cap and expiry are checked with the hold)"},
    {"call_begin", FN(R_call_begin), KW, "call_begin(token, method, path) -> (run_id, kind)"},
    {"call_headers", FN(R_call_headers), METH_VARARGS,
     "call_headers(run_id, kind, status, credits_used_micro): the answer's headers arrived (-1: no credits header)"},
    {"call_end", FN(R_call_end), METH_VARARGS,
     "call_end(run_id, kind, status, timed_out, usage=None): the call ended (status 0: no answer)"},
    {"finish", FN(R_finish), KW,
     "finish(run_id, outcome) -> result: 'succeeded' | 'failed' | 'interrupted'; once, a repeat returns the first"},
    {"keepalive", FN(R_keepalive), METH_NOARGS, "keepalive() -> holds extended"},
    {"reserve", FN(R_reserve), KW,
     "reserve(prompt_id, account_id, micro, *, wait=True) -> True: credits for an admitted prompt. wait=False never "
     "waits (nor releases the GIL): False when it would have to, and nothing is reserved"},
    {"release", FN(R_release), METH_O, "release(prompt_id) -> what was left of its reservation"},
    {"unshare", FN(R_unshare), METH_O,
     "unshare(prompt_id): farm mode, after release(): deletes the prompt's row among the reservations every server "
     "sees (a network round trip: call it from a thread). Nothing otherwise"},
    {"reserved", FN(R_reserved), METH_O, "reserved(account_id) -> credits its queued prompts reserve"},
    {"reserved_elsewhere", FN(R_reserved_elsewhere), METH_O,
     "reserved_elsewhere(account_id) -> farm mode: what other servers' queued prompts reserve (a network round "
     "trip); 0 otherwise"},
    {"reservation", FN(R_reservation), METH_O, "reservation(prompt_id) -> what is left, or None"},
    {"counts", FN(R_counts), METH_NOARGS, "counts() -> {open, closed, reservations}"},
    {"close", FN(R_close), METH_NOARGS, "close(): forget every run (the ledger keeps the holds)"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot R_slots[] = {
    {Py_tp_doc, "Runs(ledger, prices, hold_ttl_ms, finish_wait_ms, charge_interrupted=True): the per-run money "
                "lifecycle (run.h)."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, R_init},
    {Py_tp_dealloc, R_dealloc},
    {Py_tp_traverse, R_traverse},
    {Py_tp_methods, R_methods},
    {0, NULL},
};

static PyType_Spec R_spec = {
    .name = "comfy_credits_ext._core.Runs",
    .basicsize = sizeof(RunsObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = R_slots,
};

int ccpy_run_init(PyObject *m, ccpy_state *st) {
    st->RunsType = PyType_FromModuleAndSpec(m, &R_spec, NULL);
    if (!st->RunsType) return -1;
    return PyModule_AddObjectRef(m, "Runs", st->RunsType);
}
