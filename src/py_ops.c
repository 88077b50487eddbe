/*
** py_ops.c — the operator side of the binding: the AuditLog heap type
** (audit.h) and the reconciliation report (report.h). Thin: converts
** arguments and results, releases the GIL around every call.
*/
#include "py_util.h"
#include "audit.h"
#include "auth.h"
#include "caps.h"
#include "report.h"

/* ------------------------------------------------------------------ report */

static PyObject *totals_dict(const cc_report_totals *t) {
    return Py_BuildValue("{s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L}", "runs", (long long)t->runs,
                         "runs_charged", (long long)t->runs_charged, "runs_free", (long long)t->runs_free,
                         "expired", (long long)t->expired, "billed", (long long)t->billed, "charged",
                         (long long)t->charged, "uncollected", (long long)t->uncollected, "purchases",
                         (long long)t->purchases, "purchased", (long long)t->purchased, "test_purchases",
                         (long long)t->test_purchases, "test_purchased", (long long)t->test_purchased, "grants",
                         (long long)t->grants, "granted", (long long)t->granted);
}

static int append_steal(PyObject *list, PyObject *item) {
    if (!item) return -1;
    int r = PyList_Append(list, item);
    Py_DECREF(item);
    return r;
}

static PyObject *report_dict(const cc_report *r) {
    PyObject *days = PyList_New(0), *spend = PyList_New(0), *accts = PyList_New(0), *out = NULL;
    if (!days || !spend || !accts) goto done;
    for (int i = 0; i < r->n_days; i++) {
        PyObject *t = totals_dict(&r->days[i].t);
        if (!t || ccpy_set_i64(t, "day_ms", r->days[i].day * CC_DAY_MS) < 0 || append_steal(days, t) < 0) {
            Py_XDECREF(t);
            goto done;
        }
    }
    for (int i = 0; i < r->n_spend; i++) {
        const cc_report_spend *s = &r->spend[i];
        if (append_steal(spend, Py_BuildValue("{s:L,s:s,s:s,s:L,s:L,s:L,s:L}", "day_ms", (long long)(s->day * CC_DAY_MS),
                                              "node_class", s->node_class, "model", s->model, "runs",
                                              (long long)s->runs, "billed", (long long)s->billed, "charged",
                                              (long long)s->charged, "uncollected", (long long)s->uncollected)) < 0)
            goto done;
    }
    for (int i = 0; i < r->n_accounts; i++) {
        const cc_report_account *a = &r->accounts[i];
        if (append_steal(accts, Py_BuildValue("{s:L,s:s,s:L,s:L,s:L,s:L,s:L,s:L}", "account_id",
                                              (long long)a->account_id, "email", a->email, "runs", (long long)a->runs,
                                              "billed", (long long)a->billed, "charged", (long long)a->charged,
                                              "uncollected", (long long)a->uncollected, "purchased",
                                              (long long)a->purchased, "granted", (long long)a->granted)) < 0)
            goto done;
    }
    PyObject *total = totals_dict(&r->total);
    if (!total) goto done;
    out = Py_BuildValue("{s:L,s:L,s:N,s:O,s:O,s:O}", "since_ms", (long long)r->since_ms, "until_ms",
                        (long long)r->until_ms, "total", total, "days", days, "spend", spend, "accounts", accts);
done:
    Py_XDECREF(days);
    Py_XDECREF(spend);
    Py_XDECREF(accts);
    return out;
}

static PyObject *M_report(PyObject *module, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"ledger", "since_ms", "until_ms", NULL};
    ccpy_state *st = ccpy_get_state(module);
    PyObject *lo, *so, *uo;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO:report", kwlist, &lo, &so, &uo)) return NULL;
    int64_t since, until;
    if (ccpy_i64(st, so, "from", &since) < 0 || ccpy_i64(st, uo, "to", &until) < 0) return NULL;
    cc_ledger *l = ccpy_ledger_pin(st, lo);
    if (!l) return NULL;
    cc_report *r = NULL;
    cc_error e;
    cc_rc rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cc_report_build(l, since, until, &r, &e);
    Py_END_ALLOW_THREADS
    ccpy_ledger_unpin(lo);
    if (rc != CC_OK) return ccpy_raise(st, &e);
    PyObject *d = report_dict(r);
    cc_report_free(r);
    return d;
}

static PyObject *M_report_check(PyObject *module, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"ledger", "max_problems", NULL};
    ccpy_state *st = ccpy_get_state(module);
    PyObject *lo;
    int cap = 100;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|i:report_check", kwlist, &lo, &cap)) return NULL;
    if (cap < 0 || cap > 1000) return ccpy_invalid(st, "max_problems", "max_problems must be 0..1000");
    char **probs = calloc((size_t)cap + 1, sizeof *probs);
    if (!probs) return PyErr_NoMemory();
    cc_ledger *l = ccpy_ledger_pin(st, lo);
    if (!l) { free(probs); return NULL; }
    int n = 0;
    cc_report_totals t;
    cc_error e;
    cc_rc rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cc_report_check(l, probs, cap, &n, &t, &e);
    Py_END_ALLOW_THREADS
    ccpy_ledger_unpin(lo);
    if (rc != CC_OK) { free(probs); return ccpy_raise(st, &e); }
    PyObject *list = PyList_New(0);
    for (int i = 0; i < n; i++) {
        if (list && append_steal(list, PyUnicode_FromString(probs[i])) < 0) Py_CLEAR(list);
        free(probs[i]);
    }
    free(probs);
    if (!list) return NULL;
    PyObject *total = totals_dict(&t);
    if (!total) { Py_DECREF(list); return NULL; }
    return Py_BuildValue("{s:N,s:N}", "problems", list, "total", total);
}

/* ------------------------------------------------------------------ caps */

static int cap_arg(ccpy_state *st, PyObject *o, const char *field, int64_t *out) {
    if (o == Py_None) { *out = CC_CAP_NONE; return 0; }
    if (ccpy_i64(st, o, field, out) < 0) return -1;
    if (*out < 0) { ccpy_invalid(st, field, "a cap must not be negative (None = no cap)"); return -1; }
    return 0;
}

static PyObject *M_set_caps(PyObject *module, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"ledger", "account_id", "who", "daily", "monthly", NULL};
    ccpy_state *st = ccpy_get_state(module);
    PyObject *lo, *ido, *dov, *mov;
    const char *who;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOsOO:set_caps", kwlist, &lo, &ido, &who, &dov, &mov)) return NULL;
    int64_t id, daily, monthly;
    if (ccpy_i64(st, ido, "account_id", &id) < 0 || cap_arg(st, dov, "daily", &daily) < 0 ||
        cap_arg(st, mov, "monthly", &monthly) < 0)
        return NULL;
    int w = !strcmp(who, "admin") ? CC_CAPS_ADMIN : !strcmp(who, "own") ? CC_CAPS_OWN : -1;
    if (w < 0) return ccpy_invalid(st, "who", "who is 'admin' or 'own'");
    cc_ledger *l = ccpy_ledger_pin(st, lo);
    if (!l) return NULL;
    cc_account a;
    cc_error e;
    cc_rc rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cc_ledger_set_caps(l, id, (cc_caps_who)w, daily, monthly, &a, &e);
    Py_END_ALLOW_THREADS
    ccpy_ledger_unpin(lo);
    if (rc != CC_OK) return ccpy_raise(st, &e);
    return ccpy_account_dict(&a);
}

static PyObject *M_cap_check(PyObject *module, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"ledger", "account_id", "micro", NULL};
    ccpy_state *st = ccpy_get_state(module);
    PyObject *lo, *ido, *mo;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO:cap_check", kwlist, &lo, &ido, &mo)) return NULL;
    int64_t id, micro;
    if (ccpy_i64(st, ido, "account_id", &id) < 0 || ccpy_i64(st, mo, "micro", &micro) < 0) return NULL;
    if (micro < 0) return ccpy_invalid(st, "micro", "micro must not be negative");
    cc_ledger *l = ccpy_ledger_pin(st, lo);
    if (!l) return NULL;
    cc_account a;
    cc_error e;
    cc_rc rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cc_ledger_account(l, id, &a, &e);
    if (rc == CC_OK) rc = cc_caps_check(&a, micro, cc_now_ms(), &e);
    Py_END_ALLOW_THREADS
    ccpy_ledger_unpin(lo);
    if (rc != CC_OK) return ccpy_raise(st, &e);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ AuditLog */

typedef struct {
    PyObject_HEAD
    cc_audit *a;
    int busy;
} AuditObject;

static ccpy_state *astate(PyObject *self) { return ccpy_state_from_type(Py_TYPE(self)); }

static int A_ensure(AuditObject *self) {
    if (self->a) return 0;
    cc_error e;
    cc_fail(&e, CC_ERR_STATE, "", "the audit log is closed");
    ccpy_raise(astate((PyObject *)self), &e);
    return -1;
}

static int A_init(AuditObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", NULL};
    const char *path;
    if (self->a) { ccpy_invalid(astate((PyObject *)self), "self", "already open"); return -1; }
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s:AuditLog", kwlist, &path)) return -1;
    cc_error e;
    cc_rc rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cc_audit_open(path, &self->a, &e);
    Py_END_ALLOW_THREADS
    if (rc != CC_OK) { ccpy_raise(astate((PyObject *)self), &e); return -1; }
    return 0;
}

static PyObject *record_dict(const cc_audit_record *r) {
    return Py_BuildValue("{s:L,s:L,s:L,s:s,s:s,s:s,s:s,s:s,s:s}", "id", (long long)r->id, "at_ms",
                         (long long)r->at_ms, "actor_id", (long long)r->actor_id, "actor", r->actor, "action",
                         r->action, "target", r->target, "detail", r->detail, "source", r->source, "hash", r->hash);
}

/* Copies a str field into a fixed buffer; too long -> InvalidArgument naming it. */
static int copy_field(ccpy_state *st, PyObject *o, const char *field, char *dst, size_t cap) {
    const char *s;
    if (ccpy_str(st, o, field, &s) < 0) return -1;
    if (!s) s = "";
    size_t n = strlen(s);
    if (n >= cap) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s is longer than %zu bytes", field, cap - 1);
        ccpy_invalid(st, field, msg);
        return -1;
    }
    memcpy(dst, s, n + 1);
    return 0;
}

static PyObject *A_append(AuditObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"actor_id", "actor", "action", "target", "detail", "source", NULL};
    ccpy_state *st = astate((PyObject *)self);
    PyObject *id_o, *actor_o, *action_o, *target_o, *detail_o, *source_o;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOO:append", kwlist, &id_o, &actor_o, &action_o, &target_o,
                                     &detail_o, &source_o))
        return NULL;
    if (A_ensure(self) < 0) return NULL;
    cc_audit_record *in = calloc(2, sizeof *in);
    if (!in) return PyErr_NoMemory();
    PyObject *res = NULL;
    if (ccpy_i64(st, id_o, "actor_id", &in->actor_id) < 0 ||
        copy_field(st, actor_o, "actor", in->actor, sizeof in->actor) < 0 ||
        copy_field(st, action_o, "action", in->action, sizeof in->action) < 0 ||
        copy_field(st, target_o, "target", in->target, sizeof in->target) < 0 ||
        copy_field(st, detail_o, "detail", in->detail, sizeof in->detail) < 0 ||
        copy_field(st, source_o, "source", in->source, sizeof in->source) < 0)
        goto out;
    cc_error e;
    cc_rc rc;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = cc_audit_append(self->a, &in[0], &in[1], &e);
    Py_END_ALLOW_THREADS
    self->busy--;
    res = rc == CC_OK ? record_dict(&in[1]) : ccpy_raise(st, &e);
out:
    free(in);
    return res;
}

static PyObject *A_list(AuditObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"limit", "cursor", NULL};
    ccpy_state *st = astate((PyObject *)self);
    int limit = 50;
    PyObject *cur_o = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|iO:list", kwlist, &limit, &cur_o)) return NULL;
    if (A_ensure(self) < 0) return NULL;
    int64_t before = 0;
    if (cur_o != Py_None && ccpy_i64(st, cur_o, "cursor", &before) < 0) return NULL;
    if (limit < 1 || limit > CC_AUDIT_PAGE_MAX) return ccpy_invalid(st, "limit", "limit must be between 1 and 1000");
    cc_audit_record *page = malloc(sizeof *page * (size_t)limit);
    if (!page) return PyErr_NoMemory();
    int n = 0;
    int64_t next = 0;
    cc_error e;
    cc_rc rc;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = cc_audit_list(self->a, before, limit, page, &n, &next, &e);
    Py_END_ALLOW_THREADS
    self->busy--;
    if (rc != CC_OK) { free(page); return ccpy_raise(st, &e); }
    PyObject *list = PyList_New(0);
    for (int i = 0; i < n && list; i++)
        if (append_steal(list, record_dict(&page[i])) < 0) Py_CLEAR(list);
    free(page);
    return ccpy_page("records", list, next);
}

static PyObject *A_verify(AuditObject *self, PyObject *Py_UNUSED(ignored)) {
    if (A_ensure(self) < 0) return NULL;
    int64_t n = 0, bad = 0;
    cc_error e;
    cc_rc rc;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = cc_audit_verify(self->a, &n, &bad, &e);
    Py_END_ALLOW_THREADS
    self->busy--;
    if (rc != CC_OK) return ccpy_raise(astate((PyObject *)self), &e);
    return Py_BuildValue("{s:L,s:L,s:O}", "records", (long long)n, "first_bad", (long long)bad, "ok",
                         bad ? Py_False : Py_True);
}

static PyObject *A_close(AuditObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->busy) {
        cc_error e;
        cc_fail(&e, CC_ERR_STATE, "", "the audit log is in use");
        return ccpy_raise(astate((PyObject *)self), &e);
    }
    cc_audit_close(self->a);
    self->a = NULL;
    Py_RETURN_NONE;
}

static void A_dealloc(AuditObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    cc_audit_close(self->a);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

#define FN(f) ((PyCFunction)(void (*)(void))(f))
#define KW (METH_VARARGS | METH_KEYWORDS)

static PyMethodDef A_methods[] = {
    {"append", FN(A_append), KW, "append(actor_id, actor, action, target, detail, source) -> the stored record"},
    {"list", FN(A_list), KW, "list(limit=50, cursor=None) -> {records (newest first), next_cursor}"},
    {"verify", FN(A_verify), METH_NOARGS, "verify() -> {records, first_bad, ok}: recomputes the hash chain"},
    {"close", FN(A_close), METH_NOARGS, "close()"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot A_slots[] = {
    {Py_tp_doc, "AuditLog(path): the append-only, hash-chained log of admin actions (audit.h)."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, A_init},
    {Py_tp_dealloc, A_dealloc},
    {Py_tp_methods, A_methods},
    {0, NULL},
};

static PyType_Spec A_spec = {
    .name = "comfy_credits_ext._core.AuditLog",
    .basicsize = sizeof(AuditObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = A_slots,
};

static PyMethodDef M_functions[] = {
    {"set_caps", FN(M_set_caps), KW,
     "set_caps(ledger, account_id, who, daily, monthly) -> account: who 'admin' sets the caps, 'own' the "
     "person's lower ones; micro-credits or None"},
    {"cap_check", FN(M_cap_check), KW,
     "cap_check(ledger, account_id, micro): raises InsufficientCredits (field cap_daily/cap_monthly) when "
     "`micro` more would pass a spending cap now (the queue-time check; holds are checked by the ledger)"},
    {"report", FN(M_report), KW,
     "report(ledger, since_ms, until_ms) -> reconciliation: per day billed/charged/uncollected, spend by node and "
     "model, accounts"},
    {"report_check", FN(M_report_check), KW,
     "report_check(ledger, max_problems=100) -> {problems, total}: all-time report sums vs the accounts' totals"},
    {NULL, NULL, 0, NULL},
};

int ccpy_ops_init(PyObject *m, ccpy_state *st) {
    (void)st;
    PyObject *tp = PyType_FromModuleAndSpec(m, &A_spec, NULL);
    if (!tp) return -1;
    int r = PyModule_AddObjectRef(m, "AuditLog", tp);
    Py_DECREF(tp);
    if (r < 0) return -1;
    return PyModule_AddFunctions(m, M_functions);
}
