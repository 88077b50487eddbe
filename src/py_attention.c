/*
** py_attention.c — _core.attention_record/get/list/resolve(ledger, ...): a
** thin binding of attention.h (needs-attention purchases in the ledger's
** store). The GIL is released around every ledger call.
*/
#include "py_util.h"
#include "attention.h"

static PyObject *att_dict(const cc_attention *a) {
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    int bad = ccpy_set_str(d, "session_id", a->session_id) | ccpy_set_i64(d, "account_id", a->account_id) |
              ccpy_set_str(d, "currency", a->currency) | ccpy_set_i64(d, "amount_minor", a->amount_minor) |
              ccpy_set_i64(d, "credits_micro", a->credits_micro) | ccpy_set_str(d, "method", a->method) |
              ccpy_set_str(d, "reason", a->reason) | ccpy_set_i64(d, "first_ms", a->first_ms) |
              ccpy_set_i64(d, "last_ms", a->last_ms) | ccpy_set_i64(d, "reports", a->reports) |
              ccpy_set_i64(d, "resolved_ms", a->resolved_ms) | ccpy_set_str(d, "resolution", a->resolution);
    if (bad) { Py_DECREF(d); return NULL; }
    return d;
}

static PyObject *att_row(const void *p) { return att_dict(p); }

/* Copies an optional str argument into a fixed buffer (cut by attention.c's rules later). */
static int opt_text(ccpy_state *st, PyObject *o, const char *field, char *dst, size_t cap) {
    const char *s = NULL;
    dst[0] = 0;
    if (!o || o == Py_None) return 0;
    if (ccpy_str(st, o, field, &s) < 0) return -1;
    size_t n = s ? strlen(s) : 0;
    if (n >= cap) n = cap - 1;
    while (n > 0 && n < strlen(s) && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    if (n) memcpy(dst, s, n);
    dst[n] = 0;
    return 0;
}

static PyObject *attention_record(PyObject *module, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"ledger", "session_id", "account_id", "currency", "amount_minor", "credits_micro",
                             "method", "reason", NULL};
    ccpy_state *st = ccpy_get_state(module);
    PyObject *lo, *sid_o, *acct_o = NULL, *cur_o = NULL, *minor_o = NULL, *credits_o = NULL, *method_o = NULL,
                          *reason_o = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|$OOOOOO:attention_record", kwlist, &lo, &sid_o, &acct_o, &cur_o,
                                     &minor_o, &credits_o, &method_o, &reason_o))
        return NULL;
    cc_attention *a = PyMem_Calloc(2, sizeof *a);
    if (!a) return PyErr_NoMemory();
    const char *sid = NULL;
    PyObject *out = NULL;
    if (ccpy_str(st, sid_o, "session_id", &sid) < 0) goto done;
    if (!sid || strlen(sid) > CC_REF_BYTES_MAX) {
        ccpy_invalid(st, "session_id", "a checkout session id is 1..255 bytes");
        goto done;
    }
    memcpy(a->session_id, sid, strlen(sid) + 1);
    if (ccpy_opt_i64(st, acct_o, "account_id", 0, &a->account_id) < 0 ||
        ccpy_opt_i64(st, minor_o, "amount_minor", 0, &a->amount_minor) < 0 ||
        ccpy_opt_i64(st, credits_o, "credits_micro", 0, &a->credits_micro) < 0 ||
        opt_text(st, cur_o, "currency", a->currency, sizeof a->currency) < 0 ||
        opt_text(st, method_o, "method", a->method, sizeof a->method) < 0 ||
        opt_text(st, reason_o, "reason", a->reason, sizeof a->reason) < 0)
        goto done;
    cc_ledger *l = ccpy_ledger_pin(st, lo);
    if (!l) goto done;
    cc_error e;
    cc_rc rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cc_ledger_attention_record(l, &a[0], &a[1], &e);
    Py_END_ALLOW_THREADS
    ccpy_ledger_unpin(lo);
    out = rc == CC_OK ? att_dict(&a[1]) : ccpy_raise(st, &e);
done:
    PyMem_Free(a);
    return out;
}

static PyObject *attention_get(PyObject *module, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"ledger", "session_id", NULL};
    ccpy_state *st = ccpy_get_state(module);
    PyObject *lo, *sid_o;
    const char *sid = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO:attention_get", kwlist, &lo, &sid_o)) return NULL;
    if (ccpy_str(st, sid_o, "session_id", &sid) < 0) return NULL;
    cc_attention *a = PyMem_Calloc(1, sizeof *a);
    if (!a) return PyErr_NoMemory();
    PyObject *out = NULL;
    cc_ledger *l = ccpy_ledger_pin(st, lo);
    if (l) {
        cc_error e;
        cc_rc rc;
        Py_INCREF(sid_o); /* sid is a view into it */
        Py_BEGIN_ALLOW_THREADS
        rc = cc_ledger_attention_get(l, sid, a, &e);
        Py_END_ALLOW_THREADS
        Py_DECREF(sid_o);
        ccpy_ledger_unpin(lo);
        out = rc == CC_OK ? att_dict(a) : rc == CC_ERR_NOT_FOUND ? Py_NewRef(Py_None) : ccpy_raise(st, &e);
    }
    PyMem_Free(a);
    return out;
}

static PyObject *attention_list(PyObject *module, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"ledger", "include_resolved", "limit", NULL};
    ccpy_state *st = ccpy_get_state(module);
    PyObject *lo;
    int all = 0, limit = CC_ATTENTION_LIST_MAX;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$pi:attention_list", kwlist, &lo, &all, &limit)) return NULL;
    if (limit < 1 || limit > CC_ATTENTION_LIST_MAX) return ccpy_invalid(st, "limit", "limit must be 1..10000");
    cc_ledger *l = ccpy_ledger_pin(st, lo);
    if (!l) return NULL;
    cc_attention *buf = PyMem_Malloc(sizeof *buf * (size_t)limit);
    if (!buf) { ccpy_ledger_unpin(lo); return PyErr_NoMemory(); }
    int n = 0;
    cc_error e;
    cc_rc rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cc_ledger_attention_list(l, all, buf, limit, &n, &e);
    Py_END_ALLOW_THREADS
    ccpy_ledger_unpin(lo);
    return ccpy_rows(st, rc, &e, buf, sizeof *buf, n, att_row);
}

static PyObject *attention_resolve(PyObject *module, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"ledger", "session_id", "note", NULL};
    ccpy_state *st = ccpy_get_state(module);
    PyObject *lo, *sid_o, *note_o;
    const char *sid = NULL, *note = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO:attention_resolve", kwlist, &lo, &sid_o, &note_o)) return NULL;
    if (ccpy_str(st, sid_o, "session_id", &sid) < 0 || ccpy_str(st, note_o, "note", &note) < 0) return NULL;
    cc_attention *a = PyMem_Calloc(1, sizeof *a);
    if (!a) return PyErr_NoMemory();
    PyObject *out = NULL;
    cc_ledger *l = ccpy_ledger_pin(st, lo);
    if (l) {
        cc_error e;
        cc_rc rc;
        Py_INCREF(sid_o);
        Py_INCREF(note_o);
        Py_BEGIN_ALLOW_THREADS
        rc = cc_ledger_attention_resolve(l, sid, note, a, &e);
        Py_END_ALLOW_THREADS
        Py_DECREF(sid_o);
        Py_DECREF(note_o);
        ccpy_ledger_unpin(lo);
        out = rc == CC_OK ? att_dict(a) : ccpy_raise(st, &e);
    }
    PyMem_Free(a);
    return out;
}

#define KW (METH_VARARGS | METH_KEYWORDS)
#define FN(f) (PyCFunction)(void (*)(void))(f)
static PyMethodDef attention_functions[] = {
    {"attention_record", FN(attention_record), KW,
     "attention_record(ledger, session_id, *, account_id=0, currency='', amount_minor=0, credits_micro=0, "
     "method='', reason='') -> row: keeps (or refreshes) a paid checkout that could not be credited"},
    {"attention_get", FN(attention_get), KW, "attention_get(ledger, session_id) -> row or None"},
    {"attention_list", FN(attention_list), KW,
     "attention_list(ledger, *, include_resolved=False, limit=10000) -> rows, oldest first"},
    {"attention_resolve", FN(attention_resolve), KW,
     "attention_resolve(ledger, session_id, note) -> row; NotFound unless it is open, InvalidArgument for an "
     "empty note"},
    {NULL, NULL, 0, NULL},
};

int ccpy_attention_init(PyObject *m, ccpy_state *st) {
    (void)st;
    return PyModule_AddFunctions(m, attention_functions);
}
