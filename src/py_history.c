/*
** py_history.c — _core.history_rows(ledger, account_id, *, limit, cursor,
** filter): a thin binding of history.h (one row per run). The GIL is
** released around the ledger reads.
*/
#include "py_util.h"
#include "history.h"

static int set_counter(PyObject *d, const char *k, int64_t v) {
    if (v < 0) return PyDict_SetItemString(d, k, Py_None);
    return ccpy_set_i64(d, k, v);
}

static PyObject *row_dict(const cc_history_row *r) {
    const cc_entry *e = &r->entry;
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    int bad = ccpy_set_str(d, "kind", cc_hrow_kind_name(r->kind)) |
              ccpy_set_str(d, "state", r->state ? cc_hrun_state_name(r->state) : "") |
              ccpy_set_i64(d, "entry_id", e->id) | ccpy_set_i64(d, "run_id", r->run_id) |
              ccpy_set_i64(d, "started_ms", r->started_ms) | ccpy_set_i64(d, "ended_ms", r->ended_ms) |
              ccpy_set_i64(d, "held", r->held) | ccpy_set_i64(d, "billed", r->billed) |
              ccpy_set_i64(d, "charged", r->charged) | ccpy_set_i64(d, "uncollected", r->uncollected) |
              ccpy_set_i64(d, "credits", r->credits) | ccpy_set_i64(d, "balance_after", r->balance_after) |
              ccpy_set_str(d, "reason", r->reason) | ccpy_set_str(d, "prompt_id", e->prompt_id) |
              ccpy_set_str(d, "node_id", e->node_id) | ccpy_set_str(d, "node_class", e->node_class) |
              ccpy_set_str(d, "model", e->model) | set_counter(d, "tokens_in", e->tokens_in) |
              set_counter(d, "tokens_out", e->tokens_out) | set_counter(d, "images", e->images) |
              set_counter(d, "seconds_ms", e->seconds_ms) | ccpy_set_str(d, "currency", e->currency) |
              ccpy_set_i64(d, "amount_minor", e->amount_minor) | ccpy_set_str(d, "method", e->method) |
              ccpy_set_str(d, "note", e->kind == CC_KIND_GRANT ? e->note : "");
    if (bad) { Py_DECREF(d); return NULL; }
    return d;
}

static PyObject *history_rows(PyObject *module, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"ledger", "account_id", "limit", "cursor", "filter", NULL};
    ccpy_state *st = ccpy_get_state(module);
    PyObject *lo, *id_o, *limit_o = NULL, *cursor_o = NULL, *filter_o = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|$OOO:history_rows", kwlist, &lo, &id_o, &limit_o, &cursor_o,
                                     &filter_o))
        return NULL;
    cc_history_rows_query q;
    memset(&q, 0, sizeof q);
    int64_t limit;
    if (ccpy_i64(st, id_o, "account_id", &q.account_id) < 0 || ccpy_opt_i64(st, limit_o, "limit", 50, &limit) < 0 ||
        ccpy_opt_i64(st, cursor_o, "cursor", 0, &q.before_id) < 0)
        return NULL;
    if (limit < 1 || limit > CC_HISTORY_ROWS_MAX) return ccpy_invalid(st, "limit", "limit must be 1..200");
    q.limit = (int)limit;
    if (filter_o && filter_o != Py_None) {
        PyObject *seq = PySequence_Fast(filter_o, "filter must be a list");
        if (!seq) { PyErr_Clear(); return ccpy_invalid(st, "filter", "filter is a list of runs, purchases, grants"); }
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
            const char *name;
            if (ccpy_str(st, PySequence_Fast_GET_ITEM(seq, i), "filter", &name) < 0 || !name) {
                Py_DECREF(seq);
                if (!PyErr_Occurred()) ccpy_invalid(st, "filter", "filter is a list of runs, purchases, grants");
                return NULL;
            }
            unsigned bit = !strcmp(name, "runs") ? CC_HROWS_RUNS : !strcmp(name, "purchases") ? CC_HROWS_PURCHASES
                         : !strcmp(name, "grants") ? CC_HROWS_GRANTS : 0;
            if (!bit) { Py_DECREF(seq); return ccpy_invalid(st, "filter", "filter is a list of runs, purchases, grants"); }
            q.filter |= bit;
        }
        Py_DECREF(seq);
    }
    cc_ledger *l = ccpy_ledger_pin(st, lo);
    if (!l) return NULL;
    cc_history_row *buf = PyMem_Malloc(sizeof *buf * (size_t)q.limit);
    if (!buf) { ccpy_ledger_unpin(lo); return PyErr_NoMemory(); }
    int n = 0;
    int64_t next = 0;
    cc_error e;
    cc_rc rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cc_history_rows(l, &q, buf, &n, &next, &e);
    Py_END_ALLOW_THREADS
    ccpy_ledger_unpin(lo);
    PyObject *out = NULL, *list = NULL;
    if (rc != CC_OK) { ccpy_raise(st, &e); goto done; }
    if (!(list = PyList_New(n))) goto done;
    for (int i = 0; i < n; i++) {
        PyObject *d = row_dict(&buf[i]);
        if (!d) goto done;
        PyList_SET_ITEM(list, i, d);
    }
    out = Py_BuildValue("{sOsN}", "rows", list, "next_cursor", next ? PyLong_FromLongLong(next) : Py_NewRef(Py_None));
done:
    Py_XDECREF(list);
    PyMem_Free(buf);
    return out;
}

static PyMethodDef history_functions[] = {
    {"history_rows", (PyCFunction)(void (*)(void))history_rows, METH_VARARGS | METH_KEYWORDS,
     "history_rows(ledger, account_id, *, limit=50, cursor=None, filter=None) -> {rows, next_cursor}: one row per "
     "run (state running/charged/uncollected/released, reason), purchase or grant, newest first. filter: a list of "
     "'runs', 'purchases', 'grants'."},
    {NULL, NULL, 0, NULL},
};

int ccpy_history_init(PyObject *m, ccpy_state *st) {
    (void)st;
    return PyModule_AddFunctions(m, history_functions);
}
