/*
** py_history.c — _core.history_rows(ledger, account_id, *, limit, cursor,
** filter): a thin binding of history.h (one row per run). The GIL is
** released around the ledger reads.
*/
#include "py_util.h"
#include "history.h"

static PyObject *row_dict(const void *p) { /* a cc_history_row */
    const cc_history_row *r = p;
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
              ccpy_set_str(d, "reason", r->reason) | ccpy_set_entry_run(d, e) |
              ccpy_set_str(d, "note", e->kind == CC_KIND_GRANT ? e->note : "") |
              /* a purchase's checkout session: the route turns it into the receipt link (routes.receipt_link) */
              ((r->kind == CC_HROW_PURCHASE || r->kind == CC_HROW_TEST) ? ccpy_set_str(d, "external_ref", e->external_ref)
                                                                         : 0);
    if (bad) { Py_DECREF(d); return NULL; }
    return d;
}

static unsigned filter_bit(const char *name) {
    return !strcmp(name, "runs") ? CC_HROWS_RUNS : !strcmp(name, "purchases") ? CC_HROWS_PURCHASES
         : !strcmp(name, "grants") ? CC_HROWS_GRANTS : 0;
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
    if (filter_o && filter_o != Py_None &&
        ccpy_names_mask(st, filter_o, "filter", "filter is a list of runs, purchases, grants",
                        "filter is a list of runs, purchases, grants", filter_bit, &q.filter) < 0)
        return NULL;
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
    return ccpy_page("rows", ccpy_rows(st, rc, &e, buf, sizeof *buf, n, row_dict), next);
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
