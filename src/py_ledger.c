/*
** py_ledger.c — the Ledger heap type: a thin binding of ledger.h.
**
** Every call converts its arguments, releases the GIL around the ledger
** call (SQLite I/O, fsync, waiting for a group commit) and converts the
** result. Money operations share one path: keyword/positional arguments are
** collected into a dict, the dict becomes a cc_op, so `grant(...)` and
** `execute([{"op": "grant", ...}])` accept exactly the same fields.
*/
#include "py_util.h"
#include "ledger.h"
#include "caps.h"
#include "fulfil.h"

typedef struct {
    PyObject_HEAD
    cc_ledger *l;
    int busy;        /* calls in flight with the GIL released */
    PyObject *path;
} LedgerObject;

typedef struct op_spec {
    const char *name;
    cc_op_kind kind;
    const char *fields[10]; /* accepted fields, in positional order */
} op_spec;

static const op_spec OPS[] = {
    {"grant", CC_OP_GRANT, {"key", "account_id", "amount", "note", NULL}},
    {"purchase", CC_OP_PURCHASE,
     {"key", "account_id", "amount", "currency", "amount_minor", "method", "external_ref", "note", NULL}},
    {"test_purchase", CC_OP_TEST_PURCHASE,
     {"key", "account_id", "amount", "currency", "amount_minor", "method", "external_ref", "note", NULL}},
    {"hold", CC_OP_HOLD,
     {"key", "account_id", "amount", "ttl_ms", "prompt_id", "node_id", "node_class", "model", NULL}},
    {"settle", CC_OP_SETTLE,
     {"key", "hold_id", "amount", "tokens_in", "tokens_out", "images", "seconds_ms", "model", NULL}},
    {"void", CC_OP_VOID, {"key", "hold_id", "note", NULL}},
    {"expire", CC_OP_EXPIRE, {"now_ms", "limit", NULL}},
};
#define NOPS ((int)(sizeof OPS / sizeof OPS[0]))

static ccpy_state *lstate(LedgerObject *self) { return ccpy_state_from_type(Py_TYPE(self)); }

static int ensure_open(LedgerObject *self) {
    if (self->l) return 0;
    cc_error e;
    cc_fail(&e, CC_ERR_STATE, "", "the ledger is closed");
    ccpy_raise(lstate(self), &e);
    return -1;
}

static int allowed(const op_spec *spec, const char *k) {
    for (int i = 0; spec->fields[i]; i++)
        if (strcmp(spec->fields[i], k) == 0) return 1;
    return 0;
}

/* Fills op from d (a dict this function's caller owns for the whole call). */
static int op_from_dict(ccpy_state *st, const op_spec *spec, PyObject *d, cc_op *op) {
    cc_op_init(op, spec->kind);
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(d, &pos, &k, &v)) {
        const char *name;
        if (ccpy_str(st, k, "field", &name) < 0 || !name) return -1;
        if (strcmp(name, "op") == 0) continue;
        if (!allowed(spec, name)) {
            char msg[160];
            snprintf(msg, sizeof msg, "%s does not take a field '%.40s'", spec->name, name);
            ccpy_invalid(st, name, msg);
            return -1;
        }
        int r = 0;
        if (!strcmp(name, "key")) r = ccpy_str(st, v, name, &op->key);
        else if (!strcmp(name, "account_id")) r = ccpy_i64(st, v, name, &op->account_id);
        else if (!strcmp(name, "amount")) r = ccpy_i64(st, v, name, &op->amount);
        else if (!strcmp(name, "hold_id")) r = ccpy_i64(st, v, name, &op->hold_id);
        else if (!strcmp(name, "ttl_ms")) r = ccpy_i64(st, v, name, &op->ttl_ms);
        else if (!strcmp(name, "note")) r = ccpy_str(st, v, name, &op->note);
        else if (!strcmp(name, "currency")) r = ccpy_str(st, v, name, &op->currency);
        else if (!strcmp(name, "amount_minor")) r = ccpy_i64(st, v, name, &op->amount_minor);
        else if (!strcmp(name, "method")) r = ccpy_str(st, v, name, &op->method);
        else if (!strcmp(name, "external_ref")) r = ccpy_str(st, v, name, &op->external_ref);
        else if (!strcmp(name, "prompt_id")) r = ccpy_str(st, v, name, &op->ctx.prompt_id);
        else if (!strcmp(name, "node_id")) r = ccpy_str(st, v, name, &op->ctx.node_id);
        else if (!strcmp(name, "node_class")) r = ccpy_str(st, v, name, &op->ctx.node_class);
        else if (!strcmp(name, "model")) r = ccpy_str(st, v, name, &op->ctx.model);
        else if (!strcmp(name, "tokens_in")) r = ccpy_opt_i64(st, v, name, -1, &op->usage.tokens_in);
        else if (!strcmp(name, "tokens_out")) r = ccpy_opt_i64(st, v, name, -1, &op->usage.tokens_out);
        else if (!strcmp(name, "images")) r = ccpy_opt_i64(st, v, name, -1, &op->usage.images);
        else if (!strcmp(name, "seconds_ms")) r = ccpy_opt_i64(st, v, name, -1, &op->usage.seconds_ms);
        else if (!strcmp(name, "now_ms")) r = ccpy_opt_i64(st, v, name, 0, &op->now_ms);
        else if (!strcmp(name, "limit")) {
            int64_t lim;
            r = ccpy_opt_i64(st, v, name, 0, &lim);
            if (r == 0 && (lim < 0 || lim > CC_EXPIRE_PER_CALL_MAX)) {
                ccpy_invalid(st, name, "limit is out of range");
                r = -1;
            }
            op->limit = (int)lim;
        } else CC_ASSERT(0 && "field listed but not converted");
        if (r < 0) return -1;
        /* Usage counters: only absent/None means "not reported". */
        if (r == 0 && (!strcmp(name, "tokens_in") || !strcmp(name, "tokens_out") ||
                       !strcmp(name, "images") || !strcmp(name, "seconds_ms")) && v != Py_None) {
            int64_t x = !strcmp(name, "tokens_in") ? op->usage.tokens_in
                      : !strcmp(name, "tokens_out") ? op->usage.tokens_out
                      : !strcmp(name, "images") ? op->usage.images : op->usage.seconds_ms;
            if (x < 0) { ccpy_invalid(st, name, "usage counters must not be negative"); return -1; }
        }
    }
    return 0;
}

static PyObject *result_dict(const cc_op *op, const cc_result *r) {
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    int bad = 0;
    if (op->kind == CC_OP_EXPIRE) {
        bad |= ccpy_set_i64(d, "count", r->count);
    } else {
        bad |= ccpy_set_i64(d, "entry_id", r->entry_id);
        bad |= ccpy_set_i64(d, "account_id", r->account_id);
        if (op->kind != CC_OP_GRANT && op->kind != CC_OP_PURCHASE && op->kind != CC_OP_TEST_PURCHASE)
            bad |= ccpy_set_i64(d, "hold_id", r->hold_id);
        bad |= ccpy_set_i64(d, "amount", r->amount);
        bad |= ccpy_set_i64(d, "delta", r->delta);
        bad |= ccpy_set_i64(d, "uncollected", r->uncollected);
        bad |= ccpy_set_i64(d, "balance_after", r->balance_after);
        bad |= ccpy_set_i64(d, "held_after", r->held_after);
        bad |= ccpy_set_i64(d, "available_after", r->balance_after - r->held_after);
        bad |= ccpy_set_bool(d, "replayed", r->replayed);
    }
    if (bad) { Py_DECREF(d); return NULL; }
    return d;
}

static const op_spec *spec_by_name(const char *name) {
    for (int i = 0; i < NOPS; i++)
        if (strcmp(OPS[i].name, name) == 0) return &OPS[i];
    return NULL;
}

/* args/kwargs -> dict of fields, using the spec's positional order. */
static PyObject *collect(ccpy_state *st, const op_spec *spec, PyObject *args, PyObject *kw) {
    PyObject *d = kw ? PyDict_Copy(kw) : PyDict_New();
    if (!d) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    int nf = 0;
    while (spec->fields[nf]) nf++;
    if (n > nf) {
        Py_DECREF(d);
        char msg[120];
        snprintf(msg, sizeof msg, "%s takes at most %d positional arguments", spec->name, nf);
        return ccpy_invalid(st, "args", msg);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyDict_GetItemString(d, spec->fields[i])) {
            Py_DECREF(d);
            char msg[120];
            snprintf(msg, sizeof msg, "%s given twice", spec->fields[i]);
            return ccpy_invalid(st, spec->fields[i], msg);
        }
        if (PyDict_SetItemString(d, spec->fields[i], PyTuple_GET_ITEM(args, i)) < 0) {
            Py_DECREF(d);
            return NULL;
        }
    }
    return d;
}

static PyObject *run_one(LedgerObject *self, const char *opname, PyObject *args, PyObject *kw) {
    ccpy_state *st = lstate(self);
    if (ensure_open(self) < 0) return NULL;
    const op_spec *spec = spec_by_name(opname);
    CC_ASSERT(spec != NULL);
    PyObject *d = collect(st, spec, args, kw);
    if (!d) return NULL;
    cc_op op;
    if (op_from_dict(st, spec, d, &op) < 0) { Py_DECREF(d); return NULL; }
    cc_result r;
    CCPY_BLOCKING(&self->busy, cc_ledger_execute1(self->l, &op, &r));
    PyObject *out = r.rc == CC_OK ? result_dict(&op, &r) : ccpy_raise(st, &r.err);
    Py_DECREF(d);
    return out;
}

#define OP_METHOD(NAME)                                                          \
    static PyObject *L_##NAME(LedgerObject *self, PyObject *args, PyObject *kw) { \
        return run_one(self, #NAME, args, kw);                                   \
    }
OP_METHOD(grant)
OP_METHOD(purchase)
OP_METHOD(test_purchase)
OP_METHOD(hold)
OP_METHOD(settle)
OP_METHOD(void)

static PyObject *L_expire(LedgerObject *self, PyObject *args, PyObject *kw) {
    PyObject *d = run_one(self, "expire", args, kw);
    if (!d) return NULL;
    PyObject *c = PyDict_GetItemString(d, "count");
    Py_XINCREF(c);
    Py_DECREF(d);
    return c;
}

static PyObject *L_execute(LedgerObject *self, PyObject *ops_list) {
    ccpy_state *st = lstate(self);
    if (ensure_open(self) < 0) return NULL;
    if (!PyList_Check(ops_list)) return ccpy_invalid(st, "ops", "execute takes a list of operation dicts");
    Py_ssize_t n = PyList_GET_SIZE(ops_list);
    if (n < 1 || n > CC_BATCH_OPS_MAX) return ccpy_invalid(st, "ops", "a batch holds 1..8190 operations");
    /* Private copies keep every string alive while the GIL is released. */
    PyObject *copies = PyList_New(n);
    cc_op *ops = PyMem_Calloc((size_t)n, sizeof *ops);
    cc_result *res = PyMem_Calloc((size_t)n, sizeof *res);
    PyObject *out = NULL;
    if (!copies || !ops || !res) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(ops_list, i);
        if (!PyDict_Check(item)) { ccpy_invalid(st, "ops", "each operation must be a dict"); goto done; }
        PyObject *c = PyDict_Copy(item);
        if (!c) goto done;
        PyList_SET_ITEM(copies, i, c);
        const char *name;
        PyObject *opn = PyDict_GetItemString(c, "op");
        if (ccpy_str(st, opn, "op", &name) < 0) goto done;
        const op_spec *spec = name ? spec_by_name(name) : NULL;
        if (!spec) { ccpy_invalid(st, "op", "op must be grant, purchase, hold, settle, void or expire"); goto done; }
        if (op_from_dict(st, spec, c, &ops[i]) < 0) goto done;
    }
    cc_error err;
    cc_rc rc;
    CCPY_BLOCKING(&self->busy, rc = cc_ledger_execute(self->l, ops, (int)n, res, &err));
    if (rc != CC_OK) { ccpy_raise(st, &err); goto done; }
    out = PyList_New(n);
    if (!out) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d;
        if (res[i].rc == CC_OK) {
            d = result_dict(&ops[i], &res[i]);
            if (d && ccpy_set_bool(d, "ok", 1) < 0) Py_CLEAR(d);
        } else {
            d = PyDict_New();
            if (d && (ccpy_set_bool(d, "ok", 0) < 0 || ccpy_set_str(d, "error", cc_rc_name(res[i].rc)) < 0 ||
                      ccpy_set_str(d, "field", res[i].err.field) < 0 ||
                      ccpy_set_str(d, "message", res[i].err.message) < 0))
                Py_CLEAR(d);
        }
        if (!d) { Py_CLEAR(out); goto done; }
        PyList_SET_ITEM(out, i, d);
    }
done:
    Py_XDECREF(copies);
    PyMem_Free(ops);
    PyMem_Free(res);
    return out;
}

/* ------------------------------------------------------------ accounts */

static const char *role_name(int r) { return r == CC_ROLE_ADMIN ? "admin" : "user"; }

static int role_from(ccpy_state *st, PyObject *o, int *out) {
    const char *s;
    if (ccpy_str(st, o, "role", &s) < 0) return -1;
    if (!s) { *out = -1; return 0; }
    if (!strcmp(s, "user")) *out = CC_ROLE_USER;
    else if (!strcmp(s, "admin")) *out = CC_ROLE_ADMIN;
    else { ccpy_invalid(st, "role", "role must be 'user' or 'admin'"); return -1; }
    return 0;
}

static PyObject *cap_value(int64_t v) { return v == CC_CAP_NONE ? Py_NewRef(Py_None) : PyLong_FromLongLong(v); }

/* The account's spending caps (caps.h) and what is left of them now. */
static PyObject *caps_dict(const cc_account *a) {
    int64_t now = cc_now_ms(), dleft, mleft;
    cc_caps_room(a, now, &dleft, &mleft);
    int same_day = a->cap_day == cc_caps_day(now), same_month = a->cap_month == cc_caps_month(now);
    return Py_BuildValue("{s:N,s:N,s:N,s:N,s:N,s:N,s:L,s:L,s:L,s:L}", "daily", cap_value(a->cap_daily), "monthly",
                         cap_value(a->cap_monthly), "own_daily", cap_value(a->own_cap_daily), "own_monthly",
                         cap_value(a->own_cap_monthly), "daily_left", cap_value(dleft), "monthly_left",
                         cap_value(mleft), "daily_used", (long long)(same_day ? a->cap_day_used : 0), "monthly_used",
                         (long long)(same_month ? a->cap_month_used : 0), "daily_resets_ms",
                         (long long)((cc_caps_day(now) + 1) * 86400000LL), "monthly_resets_ms",
                         (long long)cc_caps_month_start_ms(cc_caps_month(now) + 1));
}

PyObject *ccpy_account_dict(const cc_account *a) {
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    PyObject *caps = caps_dict(a);
    if (!caps || PyDict_SetItemString(d, "caps", caps) < 0) { Py_XDECREF(caps); Py_DECREF(d); return NULL; }
    Py_DECREF(caps);
    int bad = ccpy_set_i64(d, "id", a->id) | ccpy_set_str(d, "email", a->email) |
              ccpy_set_str(d, "display_name", a->display_name) | ccpy_set_bool(d, "active", a->active) |
              ccpy_set_str(d, "role", role_name(a->role)) | ccpy_set_i64(d, "created_ms", a->created_ms) |
              ccpy_set_i64(d, "updated_ms", a->updated_ms) | ccpy_set_i64(d, "balance", a->balance) |
              ccpy_set_i64(d, "held", a->held) | ccpy_set_i64(d, "available", a->balance - a->held) |
              ccpy_set_i64(d, "paid_total", a->paid_total) |
              ccpy_set_i64(d, "granted_total", a->granted_total) |
              ccpy_set_i64(d, "spent_total", a->spent_total) |
              ccpy_set_i64(d, "uncollected_total", a->uncollected_total) |
              ccpy_set_i64(d, "test_balance", a->test_balance);
    if (bad) { Py_DECREF(d); return NULL; }
    return d;
}

static PyObject *account_row(const void *p) { return ccpy_account_dict(p); }

static PyObject *fetch_account(LedgerObject *self, int64_t id) {
    cc_account a;
    cc_error e;
    cc_rc rc;
    CCPY_BLOCKING(&self->busy, rc = cc_ledger_account(self->l, id, &a, &e));
    if (rc != CC_OK) return ccpy_raise(lstate(self), &e);
    return ccpy_account_dict(&a);
}

static PyObject *L_create_account(LedgerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"email", "display_name", "role", NULL};
    ccpy_state *st = lstate(self);
    PyObject *email_o, *name_o = NULL, *role_o = NULL;
    if (ensure_open(self) < 0) return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OO:create_account", kwlist, &email_o, &name_o, &role_o))
        return NULL;
    cc_account_new a = {.role = -1};
    if (ccpy_str(st, email_o, "email", &a.email) < 0 || ccpy_str(st, name_o, "display_name", &a.display_name) < 0 ||
        role_from(st, role_o, &a.role) < 0)
        return NULL;
    int64_t id = 0;
    cc_error e;
    cc_rc rc;
    CCPY_BLOCKING(&self->busy, rc = cc_ledger_account_create(self->l, &a, &id, &e));
    if (rc != CC_OK) return ccpy_raise(st, &e);
    return fetch_account(self, id);
}

static PyObject *L_update_account(LedgerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"account_id", "active", "role", "display_name", NULL};
    ccpy_state *st = lstate(self);
    PyObject *id_o, *active_o = Py_None, *role_o = NULL, *name_o = NULL;
    if (ensure_open(self) < 0) return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$OOO:update_account", kwlist, &id_o, &active_o, &role_o,
                                     &name_o))
        return NULL;
    cc_account_change ch;
    cc_account_change_init(&ch, 0);
    if (ccpy_i64(st, id_o, "account_id", &ch.account_id) < 0 ||
        ccpy_str(st, name_o, "display_name", &ch.display_name) < 0 || role_from(st, role_o, &ch.role) < 0)
        return NULL;
    if (active_o != Py_None) {
        if (!PyBool_Check(active_o)) return ccpy_invalid(st, "active", "active must be True or False");
        ch.active = active_o == Py_True;
    }
    cc_error e;
    cc_rc rc;
    CCPY_BLOCKING(&self->busy, rc = cc_ledger_account_update(self->l, &ch, &e));
    if (rc != CC_OK) return ccpy_raise(st, &e);
    return fetch_account(self, ch.account_id);
}

static PyObject *L_account(LedgerObject *self, PyObject *arg) {
    int64_t id;
    if (ensure_open(self) < 0 || ccpy_i64(lstate(self), arg, "account_id", &id) < 0) return NULL;
    return fetch_account(self, id);
}

static PyObject *L_account_by_email(LedgerObject *self, PyObject *arg) {
    ccpy_state *st = lstate(self);
    const char *email;
    if (ensure_open(self) < 0 || ccpy_str(st, arg, "email", &email) < 0) return NULL;
    if (!email) return ccpy_invalid(st, "email", "email must be a string");
    cc_account a;
    cc_error e;
    cc_rc rc;
    CCPY_BLOCKING(&self->busy, rc = cc_ledger_account_by_email(self->l, email, &a, &e));
    if (rc != CC_OK) return ccpy_raise(st, &e);
    return ccpy_account_dict(&a);
}

static PyObject *L_accounts(LedgerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"after_id", "limit", NULL};
    ccpy_state *st = lstate(self);
    long long after = 0;
    int limit = 1000;
    if (ensure_open(self) < 0) return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|Li:accounts", kwlist, &after, &limit)) return NULL;
    if (limit < 1 || limit > CC_ACCOUNTS_LIST_MAX) return ccpy_invalid(st, "limit", "limit must be 1..10000");
    cc_account *buf = PyMem_Malloc(sizeof(cc_account) * (size_t)limit);
    if (!buf) return PyErr_NoMemory();
    int n = 0;
    cc_error e;
    cc_rc rc;
    CCPY_BLOCKING(&self->busy, rc = cc_ledger_accounts(self->l, after, limit, buf, &n, &e));
    return ccpy_rows(st, rc, &e, buf, sizeof *buf, n, account_row);
}

/* ------------------------------------------------------------ reads */

int ccpy_set_counter(PyObject *d, const char *k, int64_t v) {
    if (v < 0) return PyDict_SetItemString(d, k, Py_None);
    return ccpy_set_i64(d, k, v);
}

int ccpy_set_entry_run(PyObject *d, const cc_entry *e) {
    return ccpy_set_str(d, "prompt_id", e->prompt_id) | ccpy_set_str(d, "node_id", e->node_id) |
           ccpy_set_str(d, "node_class", e->node_class) | ccpy_set_str(d, "model", e->model) |
           ccpy_set_counter(d, "tokens_in", e->tokens_in) | ccpy_set_counter(d, "tokens_out", e->tokens_out) |
           ccpy_set_counter(d, "images", e->images) | ccpy_set_counter(d, "seconds_ms", e->seconds_ms) |
           ccpy_set_str(d, "currency", e->currency) | ccpy_set_i64(d, "amount_minor", e->amount_minor) |
           ccpy_set_str(d, "method", e->method);
}

int ccpy_names_mask(ccpy_state *st, PyObject *o, const char *field, const char *list_msg, const char *bad_msg,
                    unsigned (*bit)(const char *name), unsigned *mask) {
    PyObject *seq = PySequence_Fast(o, list_msg);
    if (!seq) {
        PyErr_Clear();
        ccpy_invalid(st, field, list_msg);
        return -1;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        const char *name;
        if (ccpy_str(st, PySequence_Fast_GET_ITEM(seq, i), field, &name) < 0) { Py_DECREF(seq); return -1; }
        unsigned b = name ? bit(name) : 0;
        if (!b) {
            Py_DECREF(seq);
            ccpy_invalid(st, field, bad_msg);
            return -1;
        }
        *mask |= b;
    }
    Py_DECREF(seq);
    return 0;
}

PyObject *ccpy_rows(ccpy_state *st, cc_rc rc, const cc_error *e, void *rows, size_t size, int n,
                    PyObject *(*row)(const void *)) {
    PyObject *list = NULL;
    if (rc != CC_OK) ccpy_raise(st, e);
    else if ((list = PyList_New(n)))
        for (int i = 0; i < n; i++) {
            PyObject *d = row((const char *)rows + (size_t)i * size);
            if (!d) { Py_CLEAR(list); break; }
            PyList_SET_ITEM(list, i, d);
        }
    PyMem_Free(rows);
    return list;
}

PyObject *ccpy_page(const char *key, PyObject *list, int64_t next) {
    if (!list) return NULL;
    PyObject *nc = next ? PyLong_FromLongLong(next) : Py_NewRef(Py_None);
    if (!nc) { Py_DECREF(list); return NULL; }
    /* "N" hands both references to the dict (and drops them on failure). */
    return Py_BuildValue("{sNsN}", key, list, "next_cursor", nc);
}

static PyObject *entry_dict(const cc_entry *e) {
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    int bad = ccpy_set_i64(d, "id", e->id) | ccpy_set_str(d, "key", e->key) |
              ccpy_set_str(d, "kind", cc_kind_name(e->kind)) | ccpy_set_i64(d, "account_id", e->account_id) |
              ccpy_set_i64(d, "amount", e->amount) | ccpy_set_i64(d, "delta", e->delta) |
              ccpy_set_i64(d, "held_delta", e->held_delta) | ccpy_set_i64(d, "uncollected", e->uncollected) |
              ccpy_set_i64(d, "balance_after", e->balance_after) | ccpy_set_i64(d, "held_after", e->held_after) |
              ccpy_set_i64(d, "hold_id", e->kind == CC_KIND_HOLD ? e->id : e->hold_id) |
              ccpy_set_i64(d, "ttl_ms", e->ttl_ms) | ccpy_set_i64(d, "created_ms", e->created_ms) |
              ccpy_set_entry_run(d, e) | ccpy_set_str(d, "external_ref", e->external_ref) |
              ccpy_set_str(d, "note", e->note) | ccpy_set_i64(d, "test_after", e->test_after);
    if (bad) { Py_DECREF(d); return NULL; }
    return d;
}

static PyObject *entry_row(const void *p) { return entry_dict(p); }

static unsigned kind_bit(const char *name) {
    int k = cc_kind_from_name(name);
    return k ? 1u << k : 0;
}

static PyObject *L_history(LedgerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"account_id", "limit", "cursor", "kinds", "since_ms", "until_ms", NULL};
    ccpy_state *st = lstate(self);
    PyObject *id_o, *limit_o = NULL, *cursor_o = NULL, *kinds_o = NULL, *since_o = NULL, *until_o = NULL;
    if (ensure_open(self) < 0) return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$OOOOO:history", kwlist, &id_o, &limit_o, &cursor_o, &kinds_o,
                                     &since_o, &until_o))
        return NULL;
    cc_history_query q;
    memset(&q, 0, sizeof q);
    int64_t limit;
    if (ccpy_i64(st, id_o, "account_id", &q.account_id) < 0 || ccpy_opt_i64(st, limit_o, "limit", 50, &limit) < 0 ||
        ccpy_opt_i64(st, cursor_o, "cursor", 0, &q.before_id) < 0 ||
        ccpy_opt_i64(st, since_o, "since_ms", 0, &q.since_ms) < 0 ||
        ccpy_opt_i64(st, until_o, "until_ms", 0, &q.until_ms) < 0)
        return NULL;
    if (limit < 1 || limit > CC_HISTORY_PAGE_MAX) return ccpy_invalid(st, "limit", "limit must be 1..1000");
    q.limit = (int)limit;
    if (kinds_o && kinds_o != Py_None &&
        ccpy_names_mask(st, kinds_o, "kinds", "kinds must be a list of kind names",
                        "kinds are grant, purchase, hold, settle, void, expire, test", kind_bit, &q.kinds_mask) < 0)
        return NULL;
    cc_entry *buf = PyMem_Malloc(sizeof(cc_entry) * (size_t)q.limit);
    if (!buf) return PyErr_NoMemory();
    int n = 0;
    int64_t next = 0;
    cc_error e;
    cc_rc rc;
    CCPY_BLOCKING(&self->busy, rc = cc_ledger_history(self->l, &q, buf, &n, &next, &e));
    return ccpy_page("entries", ccpy_rows(st, rc, &e, buf, sizeof *buf, n, entry_row), next);
}

static PyObject *L_entry(LedgerObject *self, PyObject *arg) {
    ccpy_state *st = lstate(self);
    const char *key;
    if (ensure_open(self) < 0 || ccpy_str(st, arg, "key", &key) < 0) return NULL;
    if (!key) return ccpy_invalid(st, "key", "key must be a string");
    cc_entry *e = PyMem_Malloc(sizeof *e);
    if (!e) return PyErr_NoMemory();
    cc_error err;
    cc_rc rc;
    CCPY_BLOCKING(&self->busy, rc = cc_ledger_entry(self->l, key, e, &err));
    PyObject *out = rc == CC_OK ? entry_dict(e) : ccpy_raise(st, &err);
    PyMem_Free(e);
    return out;
}

static PyObject *L_get_hold(LedgerObject *self, PyObject *arg) {
    ccpy_state *st = lstate(self);
    int64_t id;
    if (ensure_open(self) < 0 || ccpy_i64(st, arg, "hold_id", &id) < 0) return NULL;
    cc_hold h;
    cc_error e;
    cc_rc rc;
    CCPY_BLOCKING(&self->busy, rc = cc_ledger_hold(self->l, id, &h, &e));
    if (rc != CC_OK) return ccpy_raise(st, &e);
    static const char *states[] = {"open", "settled", "voided", "expired"};
    return Py_BuildValue("{sLsLsLsssLsL}", "id", (long long)h.id, "account_id", (long long)h.account_id,
                         "amount", (long long)h.amount, "state",
                         (h.state >= 0 && h.state <= 3) ? states[h.state] : "unknown", "expires_ms",
                         (long long)h.expires_ms, "resolved_by", (long long)h.resolved_by);
}

static PyObject *L_verify(LedgerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"max_problems", NULL};
    ccpy_state *st = lstate(self);
    int cap = CC_VERIFY_PROBLEMS_MAX;
    if (ensure_open(self) < 0) return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|i:verify", kwlist, &cap)) return NULL;
    if (cap < 0 || cap > CC_VERIFY_PROBLEMS_MAX) return ccpy_invalid(st, "max_problems", "max_problems must be 0..100");
    char *probs[CC_VERIFY_PROBLEMS_MAX];
    int n = 0;
    cc_verify_stats vs;
    cc_error e;
    cc_rc rc;
    CCPY_BLOCKING(&self->busy, rc = cc_ledger_verify(self->l, probs, cap, &n, &vs, &e));
    if (rc != CC_OK) return ccpy_raise(st, &e);
    PyObject *list = PyList_New(n);
    for (int i = 0; i < n; i++) {
        if (list) {
            PyObject *s = PyUnicode_FromString(probs[i]);
            if (!s) Py_CLEAR(list); else PyList_SET_ITEM(list, i, s);
        }
        free(probs[i]);
    }
    if (!list) return NULL;
    PyObject *out = Py_BuildValue("{sOsNsLsLsLsLsLsLsL}", "ok", vs.problems_total == 0 ? Py_True : Py_False,
                                  "problems", list, "problems_total", (long long)vs.problems_total,
                                  "accounts", (long long)vs.accounts, "entries", (long long)vs.entries,
                                  "holds", (long long)vs.holds, "open_holds", (long long)vs.open_holds,
                                  "balance_total", (long long)vs.balance_total, "held_total",
                                  (long long)vs.held_total);
    return out;
}

/* ------------------------------------------------------------ credentials */

static int cred_kind_from(ccpy_state *st, PyObject *o, int *out) {
    const char *s;
    if (ccpy_str(st, o, "kind", &s) < 0) return -1;
    if (s && !strcmp(s, "session")) *out = CC_CRED_SESSION;
    else if (s && !strcmp(s, "api_key")) *out = CC_CRED_API_KEY;
    else { ccpy_invalid(st, "kind", "kind must be 'session' or 'api_key'"); return -1; }
    return 0;
}

static PyObject *cred_dict(const cc_credential *c) {
    /* An API key's cap: micro-credits or None; cap_used = what its runs hold or were charged. */
    return Py_BuildValue("{sLsssLsssssLsLsNsL}", "id", (long long)c->id, "kind",
                         c->kind == CC_CRED_SESSION ? "session" : "api_key", "account_id", (long long)c->account_id,
                         "label", c->label, "hint", c->hint, "created_ms", (long long)c->created_ms,
                         "expires_ms", (long long)c->expires_ms, "cap_micro",
                         c->cap_micro < 0 ? Py_NewRef(Py_None) : PyLong_FromLongLong(c->cap_micro), "cap_used",
                         (long long)c->cap_used);
}

static PyObject *cred_row(const void *p) { return cred_dict(p); }

static PyObject *L_create_credential(LedgerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"account_id", "kind", "label", "ttl_ms", NULL};
    ccpy_state *st = lstate(self);
    PyObject *id_o, *kind_o, *label_o = NULL, *ttl_o = NULL;
    if (ensure_open(self) < 0) return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|OO:create_credential", kwlist, &id_o, &kind_o, &label_o, &ttl_o))
        return NULL;
    int64_t id, ttl;
    int kind;
    const char *label;
    if (ccpy_i64(st, id_o, "account_id", &id) < 0 || cred_kind_from(st, kind_o, &kind) < 0 ||
        ccpy_str(st, label_o, "label", &label) < 0 || ccpy_opt_i64(st, ttl_o, "ttl_ms", 0, &ttl) < 0)
        return NULL;
    char tok[CC_CRED_TOKEN_BYTES + 1];
    cc_credential c;
    cc_error e;
    cc_rc rc;
    CCPY_BLOCKING(&self->busy,
                  rc = cc_ledger_credential_create(self->l, id, kind, label, ttl, tok, sizeof tok, &c, &e));
    if (rc != CC_OK) return ccpy_raise(st, &e);
    PyObject *d = cred_dict(&c);
    if (d && ccpy_set_str(d, "token", tok) < 0) Py_CLEAR(d);
    memset(tok, 0, sizeof tok);
    return d;
}

static PyObject *L_check_credential(LedgerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"token", "wait", NULL};
    ccpy_state *st = lstate(self);
    PyObject *tok_o;
    int wait = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$p:check_credential", kwlist, &tok_o, &wait)) return NULL;
    const char *tok;
    if (ensure_open(self) < 0 || ccpy_str(st, tok_o, "token", &tok) < 0) return NULL;
    if (!tok) return ccpy_invalid(st, "token", "token must be a string");
    cc_credential c;
    cc_account a;
    cc_error e;
    cc_rc rc;
    if (wait) {
        CCPY_BLOCKING(&self->busy, rc = cc_ledger_credential_check(self->l, tok, &c, &a, &e));
    } else {
        /* keeps the GIL: a short read, and a release would cost a GIL hand-off (up to the switch interval) */
        int busy = 0;
        rc = cc_ledger_credential_check_nowait(self->l, tok, &c, &a, &busy, &e);
        if (busy) Py_RETURN_NONE;
    }
    if (rc != CC_OK) return ccpy_raise(st, &e);
    return Py_BuildValue("{sNsN}", "credential", cred_dict(&c), "account", ccpy_account_dict(&a));
}

static PyObject *L_revoke_credential(LedgerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"account_id", "kind", "id", NULL};
    ccpy_state *st = lstate(self);
    PyObject *a_o, *kind_o, *id_o = NULL;
    if (ensure_open(self) < 0) return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O:revoke_credential", kwlist, &a_o, &kind_o, &id_o)) return NULL;
    int64_t acct, id;
    int kind, count = 0;
    if (ccpy_i64(st, a_o, "account_id", &acct) < 0 || cred_kind_from(st, kind_o, &kind) < 0 ||
        ccpy_opt_i64(st, id_o, "id", 0, &id) < 0)
        return NULL;
    cc_error e;
    cc_rc rc;
    CCPY_BLOCKING(&self->busy, rc = cc_ledger_credential_revoke(self->l, acct, kind, id, &count, &e));
    if (rc != CC_OK) return ccpy_raise(st, &e);
    return PyLong_FromLong(count);
}

static PyObject *L_key_limits(LedgerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"key_id", "cap_micro", "expires_ms", "owner_id", NULL};
    ccpy_state *st = lstate(self);
    PyObject *id_o, *cap_o, *exp_o, *own_o = NULL;
    if (ensure_open(self) < 0) return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO|$O:key_limits", kwlist, &id_o, &cap_o, &exp_o, &own_o)) return NULL;
    int64_t id, cap = -1, exp = 0, owner;
    if (ccpy_i64(st, id_o, "id", &id) < 0 || (cap_o != Py_None && ccpy_i64(st, cap_o, "cap", &cap) < 0) ||
        (exp_o != Py_None && ccpy_i64(st, exp_o, "expires", &exp) < 0) ||
        ccpy_opt_i64(st, own_o == Py_None ? NULL : own_o, "account_id", 0, &owner) < 0)
        return NULL;
    if (cap_o != Py_None && cap < 0) return ccpy_invalid(st, "cap", "a cap must not be negative (None = no cap)");
    if (exp_o != Py_None && exp <= 0) return ccpy_invalid(st, "expires", "an expiry is a time in ms (None = never)");
    cc_credential c, was;
    cc_error e;
    cc_rc rc;
    CCPY_BLOCKING(&self->busy, rc = cc_ledger_key_limits(self->l, owner, id, cap, exp, &c, &was, &e));
    if (rc != CC_OK) return ccpy_raise(st, &e);
    PyObject *d = cred_dict(&c);
    PyObject *w = d ? Py_BuildValue("{sNsL}", "cap_micro",
                                    was.cap_micro < 0 ? Py_NewRef(Py_None) : PyLong_FromLongLong(was.cap_micro),
                                    "expires_ms", (long long)was.expires_ms)
                    : NULL;
    if (!w || PyDict_SetItemString(d, "was", w) < 0) Py_CLEAR(d);
    Py_XDECREF(w);
    return d;
}

static PyObject *L_list_credentials(LedgerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"account_id", "kind", "expired", NULL};
    ccpy_state *st = lstate(self);
    PyObject *a_o, *kind_o;
    int expired = 0;
    if (ensure_open(self) < 0) return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|$p:list_credentials", kwlist, &a_o, &kind_o, &expired))
        return NULL;
    int64_t acct;
    int kind, n = 0;
    if (ccpy_i64(st, a_o, "account_id", &acct) < 0 || cred_kind_from(st, kind_o, &kind) < 0) return NULL;
    cc_credential *buf = PyMem_Malloc(sizeof *buf * CC_CRED_LIST_MAX);
    if (!buf) return PyErr_NoMemory();
    cc_error e;
    cc_rc rc;
    CCPY_BLOCKING(&self->busy,
                  rc = cc_ledger_credential_list(self->l, acct, kind, expired, buf, CC_CRED_LIST_MAX, &n, &e));
    return ccpy_rows(st, rc, &e, buf, sizeof *buf, n, cred_row);
}

static PyObject *usage_row(const void *p) {
    const cc_usage_row *r = p;
    return Py_BuildValue("{sLsssLsL}", "day", (long long)r->day, "node_class", r->node_class, "charged",
                         (long long)r->charged, "runs", (long long)r->runs);
}

static PyObject *L_usage(LedgerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"account_id", "since_ms", "until_ms", NULL};
    ccpy_state *st = lstate(self);
    PyObject *a_o, *s_o, *u_o;
    if (ensure_open(self) < 0) return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO:usage", kwlist, &a_o, &s_o, &u_o)) return NULL;
    int64_t a, since, until;
    if (ccpy_i64(st, a_o, "account_id", &a) < 0 || ccpy_i64(st, s_o, "since_ms", &since) < 0 ||
        ccpy_i64(st, u_o, "until_ms", &until) < 0)
        return NULL;
    cc_usage_row *rows = PyMem_Malloc(sizeof *rows * CC_USAGE_ROWS_MAX);
    if (!rows) return PyErr_NoMemory();
    int n = 0;
    cc_error e;
    cc_rc rc;
    CCPY_BLOCKING(&self->busy, rc = cc_ledger_usage(self->l, a, since, until, rows, CC_USAGE_ROWS_MAX, &n, &e));
    return ccpy_rows(st, rc, &e, rows, sizeof *rows, n, usage_row);
}

static PyObject *L_set_password(LedgerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"account_id", "password", NULL};
    ccpy_state *st = lstate(self);
    PyObject *a_o, *p_o;
    if (ensure_open(self) < 0) return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO:set_password", kwlist, &a_o, &p_o)) return NULL;
    int64_t acct;
    const char *pw;
    if (ccpy_i64(st, a_o, "account_id", &acct) < 0 || ccpy_str(st, p_o, "password", &pw) < 0) return NULL;
    cc_error e;
    cc_rc rc;
    CCPY_BLOCKING(&self->busy, rc = cc_ledger_set_password(self->l, acct, pw, &e));
    if (rc != CC_OK) return ccpy_raise(st, &e);
    Py_RETURN_NONE;
}

static PyObject *L_sign_in(LedgerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"email", "password", NULL};
    ccpy_state *st = lstate(self);
    PyObject *e_o, *p_o;
    if (ensure_open(self) < 0) return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO:sign_in", kwlist, &e_o, &p_o)) return NULL;
    const char *email, *pw;
    if (ccpy_str(st, e_o, "email", &email) < 0 || ccpy_str(st, p_o, "password", &pw) < 0) return NULL;
    cc_account a;
    cc_error e;
    cc_rc rc;
    CCPY_BLOCKING(&self->busy, rc = cc_ledger_sign_in(self->l, email, pw, &a, &e));
    if (rc != CC_OK) return ccpy_raise(st, &e);
    return ccpy_account_dict(&a);
}

static PyObject *L_fulfil_checkout(LedgerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"session_json", "test", NULL};
    ccpy_state *st = lstate(self);
    Py_buffer b;
    int test = 0;
    if (ensure_open(self) < 0) return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|$p:fulfil_checkout", kwlist, &b, &test)) return NULL;
    PyObject *out = NULL;
    cc_checkout_session s;
    cc_error e;
    memset(&e, 0, sizeof e);
    cc_rc rc;
    if (cc_stripe_session_parse(b.buf, (size_t)b.len, &s, &e) != CC_OK) { ccpy_raise(st, &e); goto done; }
    cc_fulfil_state state = CC_FULFIL_PENDING;
    cc_result r;
    CCPY_BLOCKING(&self->busy, rc = cc_fulfil_checkout(self->l, &s, test, &state, &r, &e));
    if (rc != CC_OK) { ccpy_raise(st, &e); goto done; }
    int attn = state == CC_FULFIL_NEEDS_ATTENTION;
    out = Py_BuildValue("{sssssssLsLsLsLsLsLssssssssss}", "state", cc_fulfil_state_name(state), "session_id", s.id,
                        "payment_status", s.payment_status, "account_id", (long long)s.account_id,
                        "credits_micro", (long long)s.credits_micro, "entry_id", (long long)r.entry_id,
                        "balance_after", (long long)r.balance_after, "amount_total", (long long)s.amount_total,
                        "priced_amount_minor", (long long)s.priced_amount_minor, "currency", s.currency,
                        "method_used", s.method_used, "methods_offered", s.methods_offered,
                        "reason", attn ? e.message : "", "reason_field", attn ? e.field : "");
done:
    PyBuffer_Release(&b);
    return out;
}

static PyObject *L_set_test_spendable(LedgerObject *self, PyObject *v) {
    if (ensure_open(self) < 0) return NULL;
    int on = PyObject_IsTrue(v);
    if (on < 0) return NULL;
    cc_ledger_set_test_spendable(self->l, on);
    Py_RETURN_NONE;
}

static PyObject *L_counters(LedgerObject *self, PyObject *Py_UNUSED(ignored)) {
    if (ensure_open(self) < 0) return NULL;
    int64_t ops, commits;
    cc_ledger_counters(self->l, &ops, &commits);
    return Py_BuildValue("{sLsL}", "ops", (long long)ops, "commits", (long long)commits);
}

cc_ledger *ccpy_ledger_pin(ccpy_state *st, PyObject *o) {
    if (!o || Py_TYPE(o) != (PyTypeObject *)st->LedgerType) {
        ccpy_invalid(st, "ledger", "expected a Ledger");
        return NULL;
    }
    LedgerObject *self = (LedgerObject *)o;
    if (ensure_open(self) < 0) return NULL;
    self->busy++;
    return self->l;
}

void ccpy_ledger_unpin(PyObject *o) {
    LedgerObject *self = (LedgerObject *)o;
    CC_ASSERT(self->busy > 0);
    self->busy--;
}

static PyObject *L_close(LedgerObject *self, PyObject *Py_UNUSED(ignored)) {
    if (!self->l) Py_RETURN_NONE;
    if (self->busy) {
        cc_error e;
        cc_fail(&e, CC_ERR_STATE, "", "the ledger is in use by %d call(s); close it when they finish", self->busy);
        return ccpy_raise(lstate(self), &e);
    }
    cc_ledger *l = self->l;
    self->l = NULL;
    Py_BEGIN_ALLOW_THREADS
    cc_ledger_close(l);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *L_enter(LedgerObject *self, PyObject *Py_UNUSED(ignored)) {
    if (ensure_open(self) < 0) return NULL;
    return Py_NewRef(self);
}

static PyObject *L_exit(LedgerObject *self, PyObject *Py_UNUSED(args)) {
    PyObject *r = L_close(self, NULL);
    if (!r) return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

static int L_init(LedgerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", "readers", "busy_timeout_ms", "wait_for_database", NULL};
    ccpy_state *st = lstate(self);
    PyObject *path_o;
    int readers = 4, busy = CC_BUSY_TIMEOUT_MS_DEFAULT, wait = 0;
    if (self->l) { ccpy_invalid(st, "self", "Ledger is already open"); return -1; }
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$iip:Ledger", kwlist, &path_o, &readers, &busy, &wait)) return -1;
    PyObject *fs = NULL;
    if (!PyUnicode_FSConverter(path_o, &fs)) {
        PyErr_Clear();
        ccpy_invalid(st, "path", "path must be a str or os.PathLike");
        return -1;
    }
    const char *path = PyBytes_AS_STRING(fs);
    if ((size_t)PyBytes_GET_SIZE(fs) != strlen(path)) {
        Py_DECREF(fs);
        ccpy_invalid(st, "path", "path contains a NUL character");
        return -1;
    }
    cc_store *store = NULL;
    cc_ledger *l = NULL;
    cc_error e;
    cc_rc rc;
    /* A postgresql:// URI selects the PostgreSQL store (farm mode); `path`
    ** then keeps the URI without its password. */
    int pg = cc_store_is_pg_uri(path);
    char shown[300];
    if (pg) cc_store_pg_describe(path, shown, sizeof shown);
    Py_BEGIN_ALLOW_THREADS
    rc = pg ? cc_store_pg_open(path, busy, &store, &e) : cc_store_sqlite_open(path, busy, &store, &e);
    /* wait_for_database (PostgreSQL only): opened even while the server is
    ** unreachable; every call fails with StorageError until it answers. */
    if (rc == CC_OK && pg && wait) cc_store_pg_wait_for_server(store, 1);
    if (rc == CC_OK) rc = cc_ledger_open(store, readers, &l, &e);
    Py_END_ALLOW_THREADS
    if (rc != CC_OK) {
        Py_DECREF(fs);
        ccpy_raise(st, &e);
        return -1;
    }
    self->l = l;
    Py_XSETREF(self->path, pg ? PyUnicode_FromString(shown) : PyUnicode_DecodeFSDefault(path));
    Py_DECREF(fs);
    return self->path ? 0 : -1;
}

static void L_dealloc(LedgerObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->l) {
        CC_ASSERT(self->busy == 0); /* a running call holds a reference to self */
        cc_ledger_close(self->l);
        self->l = NULL;
    }
    Py_CLEAR(self->path);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int L_traverse(LedgerObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->path);
    return 0;
}

static PyObject *L_get_path(LedgerObject *self, void *Py_UNUSED(c)) {
    return Py_NewRef(self->path ? self->path : Py_None);
}

static PyObject *L_get_closed(LedgerObject *self, void *Py_UNUSED(c)) { return PyBool_FromLong(self->l == NULL); }

#define KW (METH_VARARGS | METH_KEYWORDS)
#define FN(f) (PyCFunction)(void (*)(void))(f)
static PyMethodDef L_methods[] = {
    {"grant", FN(L_grant), KW, "grant(key, account_id, amount, note='') -> result: promo credits"},
    {"test_purchase", FN(L_test_purchase), KW,
     "test_purchase(key, account_id, amount, currency, amount_minor, method, external_ref) -> result: TEST credits"},
    {"purchase", FN(L_purchase), KW,
     "purchase(key, account_id, amount, currency, amount_minor, method, external_ref) -> result"},
    {"hold", FN(L_hold), KW,
     "hold(key, account_id, amount, ttl_ms, prompt_id='', node_id='', node_class='', model='') -> result"},
    {"settle", FN(L_settle), KW,
     "settle(key, hold_id, amount, tokens_in=None, tokens_out=None, images=None, seconds_ms=None, model=None)"},
    {"void", FN(L_void), KW, "void(key, hold_id, note='') -> result: release a hold"},
    {"expire", FN(L_expire), KW, "expire(now_ms=0, limit=0) -> number of holds expired"},
    {"execute", FN(L_execute), METH_O, "execute([{'op': 'hold', ...}, ...]) -> per-op results, one commit"},
    {"create_account", FN(L_create_account), KW, "create_account(email, display_name='', role='user') -> account"},
    {"update_account", FN(L_update_account), KW,
     "update_account(account_id, *, active=None, role=None, display_name=None) -> account"},
    {"account", FN(L_account), METH_O, "account(account_id) -> account"},
    {"account_by_email", FN(L_account_by_email), METH_O, "account_by_email(email) -> account"},
    {"accounts", FN(L_accounts), KW, "accounts(after_id=0, limit=1000) -> [account]"},
    {"history", FN(L_history), KW,
     "history(account_id, *, limit=50, cursor=None, kinds=None, since_ms=None, until_ms=None)"},
    {"entry", FN(L_entry), METH_O, "entry(key) -> the entry an idempotency key produced"},
    {"get_hold", FN(L_get_hold), METH_O, "get_hold(hold_id) -> hold"},
    {"verify", FN(L_verify), KW, "verify(max_problems=100) -> report of every invariant"},
    {"create_credential", FN(L_create_credential), KW,
     "create_credential(account_id, kind, label='', ttl_ms=0) -> {token (shown once), id, hint, expires_ms}"},
    {"check_credential", FN(L_check_credential), KW,
     "check_credential(token, *, wait=True) -> {credential, account}. wait=False never waits for a reader "
     "connection (nor releases the GIL): None when it would have to"},
    {"revoke_credential", FN(L_revoke_credential), KW, "revoke_credential(account_id, kind, id=0) -> count"},
    {"list_credentials", FN(L_list_credentials), KW, "list_credentials(account_id, kind, *, expired=False) -> the unrevoked ones that work now "
     "(expired=True: expired ones too, which still do not work)"},
    {"key_limits", FN(L_key_limits), KW,
     "key_limits(key_id, cap_micro, expires_ms, *, owner_id=None) -> the key: its spending cap (micro-credits over "
     "its life, None = none) and expiry (epoch ms, None = never); owner_id: only that account's key. Its 'was' is "
     "{cap_micro, expires_ms} as they were before (read in the same transaction)"},
    {"usage", FN(L_usage), KW, "usage(account_id, since_ms, until_ms) -> [{day, node_class, charged, runs}]"},
    {"set_password", FN(L_set_password), KW, "set_password(account_id, password): scrypt-hashed"},
    {"sign_in", FN(L_sign_in), KW, "sign_in(email, password) -> account; NotFound for wrong email or password"},
    {"fulfil_checkout", FN(L_fulfil_checkout), KW,
     "fulfil_checkout(session_json, *, test=False) -> {state: credited|already_credited|pending|not_paid|"
     "needs_attention, reason, ...}; test=True records TEST credits (sandbox / Stripe test mode)"},
    {"set_test_spendable", FN(L_set_test_spendable), METH_O,
     "set_test_spendable(bool): may TEST credits pay for runs? Only while the upstream is the simulated one"},
    {"counters", FN(L_counters), METH_NOARGS, "group-commit counters {ops, commits}"},
    {"close", FN(L_close), METH_NOARGS, "close the ledger"},
    {"__enter__", FN(L_enter), METH_NOARGS, NULL},
    {"__exit__", FN(L_exit), METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef L_getset[] = {
    {"path", (getter)L_get_path, NULL, "database path", NULL},
    {"closed", (getter)L_get_closed, NULL, "True after close()", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot L_slots[] = {
    {Py_tp_doc, "Ledger(path, *, readers=4, busy_timeout_ms=10000, wait_for_database=False): the credits ledger on SQLite "
                           "(a file path) or PostgreSQL (a postgresql:// URI; busy_timeout_ms bounds every statement; "
                           "wait_for_database: open even while PostgreSQL is unreachable, every call failing with "
                           "StorageError until it answers)."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, L_init},
    {Py_tp_dealloc, L_dealloc},
    {Py_tp_traverse, L_traverse},
    {Py_tp_methods, L_methods},
    {Py_tp_getset, L_getset},
    {0, NULL},
};

static PyType_Spec L_spec = {
    .name = "comfy_credits_ext._core.Ledger",
    .basicsize = sizeof(LedgerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = L_slots,
};

int ccpy_ledger_init(PyObject *m, ccpy_state *st) {
    st->LedgerType = PyType_FromModuleAndSpec(m, &L_spec, NULL);
    if (!st->LedgerType) return -1;
    return PyModule_AddObjectRef(m, "Ledger", st->LedgerType);
}
