/*
** py_module.c — module object, state, exception hierarchy and the small
** money helpers of comfy_credits_ext._core. See py_module.h.
*/
#include "py_module.h"
#include "password.h"
#include "py_util.h"
#include "money.h"
#include "ledger.h"
#include "tls.h"

/* The version comes as three integers (packaging/native_build.py: a quoted
** string in a /D option is fragile on MSVC's command line), or as a string. */
#if !defined(CC_VERSION) && defined(CC_VERSION_MAJOR) && defined(CC_VERSION_MINOR) && defined(CC_VERSION_PATCH)
#define CC_STR_(x) #x
#define CC_STR(x) CC_STR_(x)
#define CC_VERSION CC_STR(CC_VERSION_MAJOR) "." CC_STR(CC_VERSION_MINOR) "." CC_STR(CC_VERSION_PATCH)
#endif
#ifndef CC_VERSION
#error "build with -DCC_VERSION_MAJOR=x -DCC_VERSION_MINOR=y -DCC_VERSION_PATCH=z (packaging/native_build.py reads them from comfy_credits_ext/__init__.py)"
#endif

static PyModuleDef ccpy_moduledef;

ccpy_state *ccpy_get_state(PyObject *module) {
    void *s = PyModule_GetState(module);
    CC_ASSERT(s != NULL);
    return (ccpy_state *)s;
}

#if PY_VERSION_HEX < 0x030B0000
/* Python 3.10 lacks PyType_GetModuleByDef: the same walk over the MRO as
** CPython 3.11's typeobject.c (the first heap type defined by our module). */
static PyObject *PyType_GetModuleByDef(PyTypeObject *tp, PyModuleDef *def) {
    PyObject *mro = tp->tp_mro;
    CC_ASSERT(mro != NULL && PyTuple_Check(mro));
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *t = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (!PyType_HasFeature(t, Py_TPFLAGS_HEAPTYPE)) continue;
        PyObject *m = ((PyHeapTypeObject *)t)->ht_module;
        if (m && PyModule_GetDef(m) == def) return m;
    }
    PyErr_SetString(PyExc_TypeError, "PyType_GetModuleByDef: no module found");
    return NULL;
}
#endif

ccpy_state *ccpy_state_from_type(PyTypeObject *tp) {
    PyObject *m = PyType_GetModuleByDef(tp, &ccpy_moduledef);
    CC_ASSERT(m != NULL);
    return ccpy_get_state(m);
}

PyObject *ccpy_raise(ccpy_state *st, const cc_error *err) {
    PyObject *type;
    switch (err->rc) {
    case CC_ERR_INVALID:
    case CC_ERR_LIMIT: type = st->InvalidArgument; break;
    case CC_ERR_NOT_FOUND: type = st->NotFound; break;
    case CC_ERR_INSUFFICIENT: type = st->InsufficientCredits; break;
    case CC_ERR_CONFLICT: type = st->IdempotencyConflict; break;
    case CC_ERR_STATE: type = st->InvalidState; break;
    case CC_ERR_EXISTS: type = st->AlreadyExists; break;
    case CC_ERR_NOMEM: return PyErr_NoMemory();
    default: type = st->StorageError; break;
    }
    PyObject *exc = PyObject_CallFunction(type, "s", err->message[0] ? err->message : cc_rc_name(err->rc));
    if (!exc) return NULL;
    PyObject *code = PyUnicode_FromString(cc_rc_name(err->rc));
    PyObject *field = err->field[0] ? PyUnicode_FromString(err->field) : Py_NewRef(Py_None);
    if (code && field && PyObject_SetAttrString(exc, "code", code) == 0 &&
        PyObject_SetAttrString(exc, "field", field) == 0)
        PyErr_SetObject(type, exc);
    Py_XDECREF(code);
    Py_XDECREF(field);
    Py_DECREF(exc);
    return NULL;
}

PyObject *ccpy_invalid(ccpy_state *st, const char *field, const char *msg) {
    cc_error e;
    cc_fail(&e, CC_ERR_INVALID, field, "%s", msg);
    return ccpy_raise(st, &e);
}

/* ------------------------------------------------------------ conversion helpers */

int ccpy_i64(ccpy_state *st, PyObject *o, const char *field, int64_t *out) {
    if (!o || !PyLong_Check(o) || PyBool_Check(o)) {
        char msg[120];
        snprintf(msg, sizeof msg, "%s must be an integer", field);
        ccpy_invalid(st, field, msg);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        char msg[120];
        snprintf(msg, sizeof msg, "%s is out of the 64-bit range", field);
        ccpy_invalid(st, field, msg);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

int ccpy_opt_i64(ccpy_state *st, PyObject *o, const char *field, int64_t dflt, int64_t *out) {
    if (!o || o == Py_None) { *out = dflt; return 0; }
    return ccpy_i64(st, o, field, out);
}

int ccpy_str(ccpy_state *st, PyObject *o, const char *field, const char **out) {
    if (!o || o == Py_None) { *out = NULL; return 0; }
    if (!PyUnicode_Check(o)) {
        char msg[120];
        snprintf(msg, sizeof msg, "%s must be a string", field);
        ccpy_invalid(st, field, msg);
        return -1;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(o, &n);
    if (!s) {
        PyErr_Clear();
        char msg[120];
        snprintf(msg, sizeof msg, "%s is not valid Unicode", field);
        ccpy_invalid(st, field, msg);
        return -1;
    }
    if ((size_t)n != strlen(s)) {
        char msg[120];
        snprintf(msg, sizeof msg, "%s contains a NUL character", field);
        ccpy_invalid(st, field, msg);
        return -1;
    }
    *out = s;
    return 0;
}

int ccpy_set_i64(PyObject *d, const char *k, int64_t v) {
    PyObject *o = PyLong_FromLongLong(v);
    if (!o) return -1;
    int r = PyDict_SetItemString(d, k, o);
    Py_DECREF(o);
    return r;
}

int ccpy_set_str(PyObject *d, const char *k, const char *v) {
    PyObject *o = PyUnicode_DecodeUTF8(v, (Py_ssize_t)strlen(v), "replace");
    if (!o) return -1;
    int r = PyDict_SetItemString(d, k, o);
    Py_DECREF(o);
    return r;
}

int ccpy_set_bool(PyObject *d, const char *k, int v) {
    return PyDict_SetItemString(d, k, v ? Py_True : Py_False);
}

/* ------------------------------------------------------------ module functions */

static int rates_from(ccpy_state *st, PyObject *rates_obj, cc_rates *rates) {
    cc_rates_default(rates);
    if (!rates_obj || rates_obj == Py_None) return 0;
    if (!PyDict_Check(rates_obj)) {
        ccpy_invalid(st, "rates", "rates must be a dict of currency -> micro-credits per unit");
        return -1;
    }
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(rates_obj, &pos, &k, &v)) {
        const char *cur;
        int64_t micro;
        if (ccpy_str(st, k, "currency", &cur) < 0 || !cur) {
            if (!PyErr_Occurred()) ccpy_invalid(st, "currency", "currency must be a string");
            return -1;
        }
        if (ccpy_i64(st, v, "rate", &micro) < 0) return -1;
        cc_error e;
        if (cc_rates_set(rates, cur, micro, &e) != CC_OK) { ccpy_raise(st, &e); return -1; }
    }
    return 0;
}

static PyObject *py_convert(PyObject *m, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"currency", "amount_minor", "rates", NULL};
    ccpy_state *st = ccpy_get_state(m);
    PyObject *cur_o, *amt_o, *rates_o = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O:convert", kwlist, &cur_o, &amt_o, &rates_o))
        return NULL;
    const char *cur;
    int64_t amt, micro;
    cc_rates rates;
    if (ccpy_str(st, cur_o, "currency", &cur) < 0 || ccpy_i64(st, amt_o, "amount_minor", &amt) < 0 ||
        rates_from(st, rates_o, &rates) < 0)
        return NULL;
    cc_error e;
    if (cc_rates_convert(&rates, cur, amt, &micro, &e) != CC_OK) return ccpy_raise(st, &e);
    return PyLong_FromLongLong(micro);
}

static PyObject *py_currency_exponent(PyObject *m, PyObject *arg) {
    ccpy_state *st = ccpy_get_state(m);
    const char *cur;
    if (ccpy_str(st, arg, "currency", &cur) < 0) return NULL;
    int e = cc_currency_exponent(cur);
    if (e < 0) return ccpy_invalid(st, "currency", "unknown currency code");
    return PyLong_FromLong(e);
}

static PyObject *py_parse_credits(PyObject *m, PyObject *arg) {
    ccpy_state *st = ccpy_get_state(m);
    const char *s;
    if (ccpy_str(st, arg, "credits", &s) < 0) return NULL;
    if (!s) return ccpy_invalid(st, "credits", "credits must be a decimal string");
    int64_t v;
    cc_error e;
    if (cc_decimal_to_scaled(s, 6, &v, "credits", &e) != CC_OK) return ccpy_raise(st, &e);
    return PyLong_FromLongLong(v);
}

static PyObject *py_format_credits(PyObject *m, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"micro", "min_decimals", NULL};
    ccpy_state *st = ccpy_get_state(m);
    PyObject *v_o;
    int min_frac = 2;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|i:format_credits", kwlist, &v_o, &min_frac))
        return NULL;
    int64_t v;
    if (ccpy_i64(st, v_o, "micro", &v) < 0) return NULL;
    if (min_frac < 0 || min_frac > 6) return ccpy_invalid(st, "min_decimals", "min_decimals must be 0..6");
    char buf[48];
    CC_ASSERT(cc_scaled_to_decimal(v, 6, min_frac, buf, sizeof buf) > 0);
    return PyUnicode_FromString(buf);
}

static PyObject *py_email_valid(PyObject *m, PyObject *arg) {
    ccpy_state *st = ccpy_get_state(m);
    const char *s;
    if (ccpy_str(st, arg, "email", &s) < 0) return NULL;
    return PyBool_FromLong(s && cc_email_valid(s));
}

static PyObject *py_password_check(PyObject *m, PyObject *arg) {
    ccpy_state *st = ccpy_get_state(m);
    const char *s;
    if (ccpy_str(st, arg, "password", &s) < 0) return NULL;
    cc_error e;
    if (cc_password_check(s, &e) != CC_OK) return ccpy_raise(st, &e);
    Py_RETURN_NONE;
}

static PyObject *py_set_ca_bundle(PyObject *m, PyObject *arg) {
    ccpy_state *st = ccpy_get_state(m);
    const char *path;
    if (ccpy_str(st, arg, "ca_bundle", &path) < 0) return NULL;
    cc_error e;
    if (cc_tls_set_ca_bundle(path, &e) != CC_OK) return ccpy_raise(st, &e);
    Py_RETURN_NONE;
}

static PyObject *py_ca_bundle(PyObject *m, PyObject *unused) {
    (void)m;
    (void)unused;
    char buf[CC_TLS_PATH_BYTES_MAX + 1];
    if (cc_tls_ca_bundle(buf, sizeof buf) == 0) Py_RETURN_NONE;
    return PyUnicode_DecodeFSDefault(buf);
}

static PyObject *py_copy_to_pg(PyObject *m, PyObject *args) {
    ccpy_state *st = ccpy_get_state(m);
    const char *path, *uri;
    if (!PyArg_ParseTuple(args, "ss:copy_sqlite_to_pg", &path, &uri)) return NULL;
    if (!cc_store_is_pg_uri(uri)) return ccpy_invalid(st, "uri", "the target must be a postgresql:// URI");
    cc_copy_stats s;
    cc_error e;
    cc_rc rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cc_store_copy_sqlite_to_pg(path, uri, &s, &e);
    Py_END_ALLOW_THREADS
    if (rc != CC_OK) return ccpy_raise(st, &e);
    return Py_BuildValue("{sLsLsLsLsLsLsLsLsLsL}", "accounts", (long long)s.accounts, "entries", (long long)s.entries,
                         "attention", (long long)s.attention,
                         "holds", (long long)s.holds, "credentials", (long long)s.credentials, "passwords",
                         (long long)s.passwords, "accounts_checked", (long long)s.accounts_checked, "balance_total",
                         (long long)s.balance_total, "held_total", (long long)s.held_total, "delta_total",
                         (long long)s.delta_total);
}

static PyMethodDef module_methods[] = {
    {"copy_sqlite_to_pg", py_copy_to_pg, METH_VARARGS,
     "copy_sqlite_to_pg(sqlite_path, postgresql_uri) -> counts and sums: copies a SQLite ledger into an empty "
     "PostgreSQL ledger, committed only if every account matches"},
    {"set_ca_bundle", py_set_ca_bundle, METH_O,
     "set_ca_bundle(path or None): CA bundle file for every HTTPS call (upstream, Stripe); None = libcurl default"},
    {"ca_bundle", py_ca_bundle, METH_NOARGS, "the CA bundle file in use, or None for libcurl's default"},
    {"convert", (PyCFunction)(void (*)(void))py_convert, METH_VARARGS | METH_KEYWORDS,
     "convert(currency, amount_minor, rates=None) -> micro-credits bought, half-up to whole credits"},
    {"currency_exponent", py_currency_exponent, METH_O, "minor-unit exponent of an ISO currency"},
    {"parse_credits", py_parse_credits, METH_O, "exact decimal credits string -> micro-credits"},
    {"format_credits", (PyCFunction)(void (*)(void))py_format_credits, METH_VARARGS | METH_KEYWORDS,
     "micro-credits -> decimal credits string"},
    {"email_valid", py_email_valid, METH_O, "whether the ledger accepts this email address"},
    {"check_password", py_password_check, METH_O,
     "check_password(password): InvalidArgument unless it meets the one password rule (8+ characters, at most "
     "1,024 bytes, not only spaces)"},
    {NULL, NULL, 0, NULL},
};

static PyObject *new_exc(PyObject *m, const char *name, PyObject *bases, const char *doc) {
    char full[96];
    snprintf(full, sizeof full, "comfy_credits_ext._core.%s", name);
    PyObject *t = PyErr_NewExceptionWithDoc(full, doc, bases, NULL);
    if (!t) return NULL;
    if (PyModule_AddObjectRef(m, name, t) < 0) { Py_DECREF(t); return NULL; }
    return t;
}

static PyObject *exc_with(PyObject *m, const char *name, PyObject *base, PyObject *extra,
                          const char *doc) {
    PyObject *bases = extra ? PyTuple_Pack(2, base, extra) : PyTuple_Pack(1, base);
    if (!bases) return NULL;
    PyObject *t = new_exc(m, name, bases, doc);
    Py_DECREF(bases);
    return t;
}

static int module_exec(PyObject *m) {
    ccpy_state *st = ccpy_get_state(m);
    PyObject *b = PyTuple_Pack(1, PyExc_Exception);
    if (!b) return -1;
    st->CreditsError = new_exc(m, "CreditsError", b, "Base class of every comfy-credits error.");
    Py_DECREF(b);
    if (!st->CreditsError) return -1;
    if (!(st->InvalidArgument = exc_with(m, "InvalidArgument", st->CreditsError, PyExc_ValueError,
                                         "An argument is malformed or out of range; .field names it.")) ||
        !(st->NotFound = exc_with(m, "NotFound", st->CreditsError, PyExc_LookupError,
                                  "No such account, hold or entry.")) ||
        !(st->InsufficientCredits = exc_with(m, "InsufficientCredits", st->CreditsError, NULL,
                                             "Not enough available credits.")) ||
        !(st->IdempotencyConflict = exc_with(m, "IdempotencyConflict", st->CreditsError, NULL,
                                             "Key reused with different fields; .field names the first.")) ||
        !(st->InvalidState = exc_with(m, "InvalidState", st->CreditsError, NULL,
                                      "Hold already resolved, account disabled, ledger busy or closed.")) ||
        !(st->AlreadyExists = exc_with(m, "AlreadyExists", st->CreditsError, NULL,
                                       "A unique value (such as an email) is taken.")) ||
        !(st->StorageError = exc_with(m, "StorageError", st->CreditsError, PyExc_OSError,
                                      "The database failed; nothing was written.")))
        return -1;
    /* The pack refuses to start unless this equals its own version (the
    ** build passes CC_VERSION from comfy_credits_ext/__init__.py). */
    if (PyModule_AddStringConstant(m, "__version__", CC_VERSION) < 0) return -1;
    if (PyModule_AddIntConstant(m, "MICRO", (long)CC_MICRO) < 0 ||
        PyModule_AddObject(m, "AMOUNT_MAX", PyLong_FromLongLong(CC_AMOUNT_MAX)) < 0 ||
        PyModule_AddIntConstant(m, "KEY_BYTES_MAX", CC_KEY_BYTES_MAX) < 0 ||
        PyModule_AddIntConstant(m, "CREDITS_PER_USD_DEFAULT", CC_CREDITS_PER_USD_DEFAULT) < 0)
        return -1;
    if (ccpy_ledger_init(m, st) < 0) return -1;
    if (ccpy_pricing_init(m, st) < 0) return -1;
    if (ccpy_gateway_init(m, st) < 0) return -1;
    if (ccpy_stripe_init(m, st) < 0) return -1;
    if (ccpy_run_init(m, st) < 0) return -1;
    if (ccpy_listener_init(m, st) < 0) return -1;
    if (ccpy_history_init(m, st) < 0) return -1;
    if (ccpy_invite_init(m, st) < 0) return -1;
    if (ccpy_ops_init(m, st) < 0) return -1;
    if (ccpy_attention_init(m, st) < 0) return -1;
    return 0;
}

static int module_traverse(PyObject *m, visitproc visit, void *arg) {
    ccpy_state *st = PyModule_GetState(m);
    if (!st) return 0;
    Py_VISIT(st->CreditsError); Py_VISIT(st->InvalidArgument); Py_VISIT(st->NotFound);
    Py_VISIT(st->InsufficientCredits); Py_VISIT(st->IdempotencyConflict); Py_VISIT(st->InvalidState);
    Py_VISIT(st->AlreadyExists); Py_VISIT(st->StorageError); Py_VISIT(st->LedgerType);
    Py_VISIT(st->PriceTableType); Py_VISIT(st->GatewayType); Py_VISIT(st->GatewayStreamType);
    Py_VISIT(st->TokenKeyType); Py_VISIT(st->StripeType); Py_VISIT(st->RunsType);
    return 0;
}

static int module_clear(PyObject *m) {
    ccpy_state *st = PyModule_GetState(m);
    if (!st) return 0;
    Py_CLEAR(st->CreditsError); Py_CLEAR(st->InvalidArgument); Py_CLEAR(st->NotFound);
    Py_CLEAR(st->InsufficientCredits); Py_CLEAR(st->IdempotencyConflict); Py_CLEAR(st->InvalidState);
    Py_CLEAR(st->AlreadyExists); Py_CLEAR(st->StorageError); Py_CLEAR(st->LedgerType);
    Py_CLEAR(st->PriceTableType); Py_CLEAR(st->GatewayType); Py_CLEAR(st->GatewayStreamType);
    Py_CLEAR(st->TokenKeyType); Py_CLEAR(st->StripeType); Py_CLEAR(st->RunsType);
    return 0;
}

static void module_free(void *m) { module_clear((PyObject *)m); }

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static PyModuleDef ccpy_moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "comfy_credits_ext._core",
    .m_doc = "comfy-credits C core: ledger, pricing and money helpers (integer micro-credits).",
    .m_size = sizeof(ccpy_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__core(void) { return PyModuleDef_Init(&ccpy_moduledef); }
