/*
** py_pricing.c — the PriceTable heap type: a thin binding of pricing.h.
**
** Inputs arrive as a dict (a ComfyUI prompt node's "inputs") or as JSON
** text; a dict is serialised with the json module and parsed by the C core,
** so exactly one parser (cJSON) decides what a price is.
*/
#include "py_util.h"
#include "pricing.h"

typedef struct {
    PyObject_HEAD
    cc_price_table *t;
    int pins;        /* borrowed by other objects (Runs): the table may not change */
} PriceTableObject;

static ccpy_state *pstate(PriceTableObject *self) { return ccpy_state_from_type(Py_TYPE(self)); }

/* Returns a new reference to UTF-8 bytes of the JSON text, or NULL. */
PyObject *ccpy_inputs_json(ccpy_state *st, PyObject *inputs) {
    if (!inputs || inputs == Py_None) return PyBytes_FromString("{}");
    if (PyUnicode_Check(inputs)) return PyUnicode_AsUTF8String(inputs);
    if (!PyDict_Check(inputs)) return ccpy_invalid(st, "inputs", "inputs must be a dict or JSON text");
    PyObject *json = PyImport_ImportModule("json");
    if (!json) return NULL;
    PyObject *text = PyObject_CallMethod(json, "dumps", "O", inputs);
    Py_DECREF(json);
    if (!text) {
        PyErr_Clear();
        return ccpy_invalid(st, "inputs", "inputs are not JSON-serialisable");
    }
    PyObject *b = PyUnicode_AsUTF8String(text);
    Py_DECREF(text);
    return b;
}

static PyObject *price_dict(const cc_price_result *r) {
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    int bad = ccpy_set_i64(d, "micro", r->micro) | ccpy_set_bool(d, "used_default", r->used_default) |
              ccpy_set_bool(d, "from_usage", r->from_usage) | ccpy_set_str(d, "rule", r->rule) |
              ccpy_set_str(d, "family", r->family) | ccpy_set_str(d, "model", r->model) |
              ccpy_set_str(d, "warning", r->warning);
    if (bad) { Py_DECREF(d); return NULL; }
    return d;
}

static PyObject *P_estimate(PriceTableObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"node_class", "inputs", NULL};
    ccpy_state *st = pstate(self);
    PyObject *cls_o, *inputs = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:estimate", kwlist, &cls_o, &inputs)) return NULL;
    const char *cls;
    if (ccpy_str(st, cls_o, "node_class", &cls) < 0) return NULL;
    if (!cls) return ccpy_invalid(st, "node_class", "node_class must be a string");
    PyObject *js = ccpy_inputs_json(st, inputs);
    if (!js) return NULL;
    cc_price_result r;
    cc_error e;
    cc_rc rc = cc_price_estimate(self->t, cls, PyBytes_AS_STRING(js), (size_t)PyBytes_GET_SIZE(js), &r, &e);
    Py_DECREF(js);
    if (rc != CC_OK) return ccpy_raise(st, &e);
    return price_dict(&r);
}

static int usage_field(ccpy_state *st, PyObject *usage, const char *k, int64_t *out) {
    PyObject *v = PyDict_GetItemString(usage, k);
    return ccpy_opt_i64(st, v, k, -1, out);
}

static PyObject *P_actual(PriceTableObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"node_class", "inputs", "usage", "hold_micro", NULL};
    ccpy_state *st = pstate(self);
    PyObject *cls_o, *inputs, *usage, *hold_o;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOO:actual", kwlist, &cls_o, &inputs, &usage, &hold_o))
        return NULL;
    const char *cls;
    int64_t hold;
    if (ccpy_str(st, cls_o, "node_class", &cls) < 0 || ccpy_i64(st, hold_o, "hold_micro", &hold) < 0) return NULL;
    if (!cls) return ccpy_invalid(st, "node_class", "node_class must be a string");
    if (!PyDict_Check(usage)) return ccpy_invalid(st, "usage", "usage must be a dict");
    static const char *known[] = {"credits_used_micro", "input_tokens", "output_tokens", "images", "seconds_ms", NULL};
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(usage, &pos, &k, &v)) {
        const char *name;
        if (ccpy_str(st, k, "usage", &name) < 0) return NULL;
        int ok = 0;
        for (int i = 0; known[i]; i++) ok |= name && !strcmp(name, known[i]);
        if (!ok) return ccpy_invalid(st, "usage", "usage keys are credits_used_micro, input_tokens, "
                                                  "output_tokens, images, seconds_ms");
    }
    cc_usage u;
    cc_usage_init(&u);
    if (usage_field(st, usage, "credits_used_micro", &u.credits_used_micro) < 0 ||
        usage_field(st, usage, "input_tokens", &u.input_tokens) < 0 ||
        usage_field(st, usage, "output_tokens", &u.output_tokens) < 0 ||
        usage_field(st, usage, "images", &u.images) < 0 || usage_field(st, usage, "seconds_ms", &u.seconds_ms) < 0)
        return NULL;
    PyObject *js = ccpy_inputs_json(st, inputs);
    if (!js) return NULL;
    cc_price_result r;
    cc_error e;
    cc_rc rc = cc_price_actual(self->t, cls, PyBytes_AS_STRING(js), (size_t)PyBytes_GET_SIZE(js), &u, hold, &r, &e);
    Py_DECREF(js);
    if (rc != CC_OK) return ccpy_raise(st, &e);
    return price_dict(&r);
}

static PyObject *P_names(PriceTableObject *self, PyObject *Py_UNUSED(ignored)) {
    int n = cc_price_table_count(self->t);
    PyObject *l = PyList_New(n);
    for (int i = 0; l && i < n; i++) {
        PyObject *s = PyUnicode_FromString(cc_price_table_name(self->t, i));
        if (!s) { Py_CLEAR(l); break; }
        PyList_SET_ITEM(l, i, s);
    }
    return l;
}

static PyObject *P_family(PriceTableObject *self, PyObject *arg) {
    const char *cls;
    if (ccpy_str(pstate(self), arg, "node_class", &cls) < 0) return NULL;
    return PyUnicode_FromString(cls ? cc_price_table_family(self->t, cls) : "");
}

static Py_ssize_t P_len(PriceTableObject *self) { return self->t ? cc_price_table_count(self->t) : 0; }

static int P_contains(PriceTableObject *self, PyObject *key) {
    if (!self->t || !PyUnicode_Check(key)) return 0;
    const char *s = PyUnicode_AsUTF8(key);
    if (!s) { PyErr_Clear(); return 0; }
    return cc_price_table_has(self->t, s);
}

static int P_init(PriceTableObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"json_text", NULL};
    ccpy_state *st = pstate(self);
    PyObject *text;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O:PriceTable", kwlist, &text)) return -1;
    if (self->pins) {
        cc_error e;
        cc_fail(&e, CC_ERR_STATE, "", "this price table is in use; make a new one");
        ccpy_raise(st, &e);
        return -1;
    }
    const char *s;
    if (ccpy_str(st, text, "json_text", &s) < 0) return -1;
    if (!s) { ccpy_invalid(st, "json_text", "the price table must be JSON text"); return -1; }
    cc_price_table *t = NULL;
    cc_error e;
    if (cc_price_table_parse(s, strlen(s), &t, &e) != CC_OK) { ccpy_raise(st, &e); return -1; }
    cc_price_table_free(self->t);
    self->t = t;
    return 0;
}

const cc_price_table *ccpy_prices_pin(ccpy_state *st, PyObject *o) {
    if (!o || Py_TYPE(o) != (PyTypeObject *)st->PriceTableType || !((PriceTableObject *)o)->t) {
        ccpy_invalid(st, "prices", "expected a PriceTable");
        return NULL;
    }
    ((PriceTableObject *)o)->pins++;
    return ((PriceTableObject *)o)->t;
}

void ccpy_prices_unpin(PyObject *o) {
    CC_ASSERT(((PriceTableObject *)o)->pins > 0);
    ((PriceTableObject *)o)->pins--;
}

static void P_dealloc(PriceTableObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    cc_price_table_free(self->t);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int P_traverse(PriceTableObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static PyObject *P_new(PyTypeObject *tp, PyObject *args, PyObject *kw) {
    (void)args; (void)kw;
    return tp->tp_alloc(tp, 0);
}

/* Methods refuse to run on an object whose __init__ failed. */
static PyObject *P_getattro(PriceTableObject *self, PyObject *name) {
    if (!self->t && PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, "__class__") != 0) {
        PyObject *attr = PyObject_GenericGetAttr((PyObject *)self, name);
        if (attr && PyCallable_Check(attr) && !PyType_Check(attr)) {
            Py_DECREF(attr);
            return ccpy_invalid(pstate(self), "self", "PriceTable was not initialised");
        }
        return attr;
    }
    return PyObject_GenericGetAttr((PyObject *)self, name);
}

#define KW (METH_VARARGS | METH_KEYWORDS)
#define FN(f) (PyCFunction)(void (*)(void))(f)
static PyMethodDef P_methods[] = {
    {"estimate", FN(P_estimate), KW, "estimate(node_class, inputs) -> worst-case price for a hold"},
    {"actual", FN(P_actual), KW, "actual(node_class, inputs, usage, hold_micro) -> price from usage"},
    {"names", FN(P_names), METH_NOARGS, "node classes that have a rule"},
    {"family", FN(P_family), METH_O, "family(node_class) -> display family, '' if unknown"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot P_slots[] = {
    {Py_tp_doc, "PriceTable(json_text): an immutable price table, safe to share between threads."},
    {Py_tp_new, P_new},
    {Py_tp_init, P_init},
    {Py_tp_dealloc, P_dealloc},
    {Py_tp_traverse, P_traverse},
    {Py_tp_getattro, P_getattro},
    {Py_tp_methods, P_methods},
    {Py_sq_length, P_len},
    {Py_sq_contains, P_contains},
    {0, NULL},
};

static PyType_Spec P_spec = {
    .name = "comfy_credits_ext._core.PriceTable",
    .basicsize = sizeof(PriceTableObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = P_slots,
};

int ccpy_pricing_init(PyObject *m, ccpy_state *st) {
    st->PriceTableType = PyType_FromModuleAndSpec(m, &P_spec, NULL);
    if (!st->PriceTableType) return -1;
    return PyModule_AddObjectRef(m, "PriceTable", st->PriceTableType);
}
