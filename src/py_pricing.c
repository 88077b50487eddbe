/*
** py_pricing.c — the PriceTable heap type: a thin binding of pricing.h.
**
** Inputs arrive as a dict (a ComfyUI prompt node's "inputs") or as JSON
** text; a dict is serialised with the json module and parsed by the C core,
** so exactly one parser (cJSON) decides what a price is.
**
** estimate_many() prices a whole prompt's API nodes in one call (the queue
** gate's admission). It builds each node's cJSON tree straight from the
** dict, the tree cJSON would parse from json.dumps(dict), for the plain
** cases json.loads produces (exact dict/list/str/int/float/bool/None, str
** keys, int64 ints, finite floats, no NUL, depth <= 64, text surely under the
** size limit); anything else takes estimate()'s own text path for that
** node. So its results and errors are estimate()'s, node by node
** (tests/test_pricing.py checks that against estimate()).
**
** api_nodes() is the gate's walk over a prompt before that (which nodes to
** price): the same lists as gate.py api_node_items' Python loop, which class
** is an API node still answered by Python (tests/test_admission_glue.py).
*/
#include "py_util.h"
#include "pricing.h"

#include <cjson/cJSON.h>

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

/* ------------------------------------------------------------ estimate_many */

#define TREE_DEPTH_MAX 64    /* deeper inputs take the text path */

/* Upper bound of json.dumps' text for a string of `n` UTF-8 bytes with
** ensure_ascii: at most 6 characters per byte ("\u00e9", "\ud83d\ude00"
** is 12 for 4 bytes), plus the quotes. */
static size_t str_bound(Py_ssize_t n) { return (size_t)n * 6 + 2; }

/* The tree cJSON would parse from json.dumps(o), or NULL with *plain = 0
** when o is not a plain case (the caller then takes the text path); NULL
** with *plain = 1 and an exception set on a Python error (out of memory).
** *bound grows by an upper bound of o's text length. Runs no Python code.
** Strings and keys are not copied: the tree points into the str objects'
** UTF-8 (kept by them), so it may live only while `o` is alive and unchanged,
** i.e. until the caller next runs Python code (estimate_one deletes it first). */
static cJSON *to_tree(PyObject *o, int depth, size_t *bound, int *plain) {
    cJSON *j = NULL;
    if (o == Py_None) {
        *bound += 4;
        j = cJSON_CreateNull();
    } else if (o == Py_True || o == Py_False) {
        *bound += 5;
        j = cJSON_CreateBool(o == Py_True);
    } else if (PyLong_CheckExact(o)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (overflow || (v == -1 && PyErr_Occurred())) { PyErr_Clear(); *plain = 0; return NULL; }
        *bound += 20;
        j = cJSON_CreateNumber((double)v); /* strtod of the digits rounds the same way */
    } else if (PyFloat_CheckExact(o)) {
        double d = PyFloat_AS_DOUBLE(o);
        if (!isfinite(d)) { *plain = 0; return NULL; } /* NaN/Infinity: cJSON refuses the text */
        *bound += 32;
        j = cJSON_CreateNumber(d); /* repr() round-trips: strtod gives d back */
    } else if (PyUnicode_CheckExact(o)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(o, &n);
        if (!s) { PyErr_Clear(); *plain = 0; return NULL; } /* lone surrogates */
        if (memchr(s, 0, (size_t)n)) { *plain = 0; return NULL; }
        *bound += str_bound(n);
        j = cJSON_CreateStringReference(s); /* not copied: see to_tree's contract */
    } else if (PyList_CheckExact(o) || PyDict_CheckExact(o)) {
        if (depth >= TREE_DEPTH_MAX) { *plain = 0; return NULL; }
        int is_list = PyList_CheckExact(o);
        j = is_list ? cJSON_CreateArray() : cJSON_CreateObject();
        if (!j) { PyErr_NoMemory(); return NULL; }
        *bound += 2;
        Py_ssize_t pos = 0, n = is_list ? PyList_GET_SIZE(o) : 0;
        PyObject *k = NULL, *v = NULL;
        for (Py_ssize_t i = 0;; i++) {
            if (is_list) {
                if (i >= n) break;
                v = PyList_GET_ITEM(o, i);
            } else if (!PyDict_Next(o, &pos, &k, &v)) {
                break;
            }
            const char *key = NULL;
            if (!is_list) {
                Py_ssize_t kn;
                if (!PyUnicode_CheckExact(k) || !(key = PyUnicode_AsUTF8AndSize(k, &kn))) {
                    PyErr_Clear();
                    cJSON_Delete(j);
                    *plain = 0;
                    return NULL;
                }
                if (memchr(key, 0, (size_t)kn)) { cJSON_Delete(j); *plain = 0; return NULL; }
                *bound += str_bound(kn) + 2; /* ": " */
            }
            *bound += 2; /* ", " */
            cJSON *c = to_tree(v, depth + 1, bound, plain);
            if (!c) { cJSON_Delete(j); return NULL; }
            if (is_list ? !cJSON_AddItemToArray(j, c) : !cJSON_AddItemToObjectCS(j, key, c)) {
                cJSON_Delete(c);
                cJSON_Delete(j);
                PyErr_NoMemory();
                return NULL;
            }
            if (*bound > CC_PRICE_INPUTS_BYTES_MAX) { cJSON_Delete(j); *plain = 0; return NULL; }
        }
        return j;
    } else {
        *plain = 0; /* tuples, subclasses, other objects: json.dumps decides */
        return NULL;
    }
    if (!j) PyErr_NoMemory();
    return j;
}

/* Moves the raised exception into *out when it is one of ours (a node that
** cannot be priced); returns -1 for anything else (left raised). */
static int take_error(ccpy_state *st, PyObject **out) {
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
    if (!exc) return -1;
    if (!PyObject_TypeCheck(exc, (PyTypeObject *)st->CreditsError)) {
        PyErr_SetRaisedException(exc);
        return -1;
    }
    *out = exc;
    return 0;
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (!type) return -1;
    PyErr_NormalizeException(&type, &value, &tb);
    if (!value || !PyObject_TypeCheck(value, (PyTypeObject *)st->CreditsError)) {
        PyErr_Restore(type, value, tb);
        return -1;
    }
    if (tb) PyException_SetTraceback(value, tb);
    Py_DECREF(type);
    Py_XDECREF(tb);
    *out = value;
    return 0;
#endif
}

/* What hold_many() gives per node: (micro, used_default), all admission needs. */
static PyObject *hold_pair(const cc_price_result *r) {
    PyObject *m = PyLong_FromLongLong(r->micro);
    if (!m) return NULL;
    PyObject *t = PyTuple_New(2);
    if (!t) { Py_DECREF(m); return NULL; }
    PyTuple_SET_ITEM(t, 0, m);
    PyTuple_SET_ITEM(t, 1, Py_NewRef(r->used_default ? Py_True : Py_False));
    return t;
}

/* One node: the estimate dict (brief: hold_pair), or NULL with an exception set. */
static PyObject *estimate_one(PriceTableObject *self, ccpy_state *st, PyObject *cls_o, PyObject *inputs, int brief) {
    const char *cls;
    if (ccpy_str(st, cls_o, "node_class", &cls) < 0) return NULL;
    if (!cls) return ccpy_invalid(st, "node_class", "node_class must be a string");
    cc_price_result r;
    cc_error e;
    cc_rc rc;
    int plain = 1;
    size_t bound = 0;
    cJSON *tree = NULL;
    if (inputs && inputs != Py_None) {
        if (PyDict_CheckExact(inputs)) {
            tree = to_tree(inputs, 0, &bound, &plain);
            if (!tree && plain) return NULL; /* out of memory */
        } else {
            plain = 0;
        }
    }
    if (plain) {
        rc = cc_price_estimate_tree(self->t, cls, tree, &r, &e);
        cJSON_Delete(tree);
    } else { /* the text path, exactly as estimate() */
        PyObject *js = ccpy_inputs_json(st, inputs);
        if (!js) return NULL;
        rc = cc_price_estimate(self->t, cls, PyBytes_AS_STRING(js), (size_t)PyBytes_GET_SIZE(js), &r, &e);
        Py_DECREF(js);
    }
    if (rc != CC_OK) return ccpy_raise(st, &e);
    return brief ? hold_pair(&r) : price_dict(&r);
}

static PyObject *many(PriceTableObject *self, PyObject *items, int brief) {
    ccpy_state *st = pstate(self);
    PyObject *seq = PySequence_Fast(items, "items must be a sequence of (node_class, inputs) pairs");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *out = PyList_New(n);
    if (!out) { Py_DECREF(seq); return NULL; }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *it = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyTuple_Check(it) || PyTuple_GET_SIZE(it) != 2) {
            Py_DECREF(seq);
            Py_DECREF(out);
            return ccpy_invalid(st, "items", "each item must be a (node_class, inputs) tuple");
        }
        Py_INCREF(it); /* json.dumps on the text path may run code that changes the list */
        PyObject *r = estimate_one(self, st, PyTuple_GET_ITEM(it, 0), PyTuple_GET_ITEM(it, 1), brief);
        Py_DECREF(it);
        if (!r && take_error(st, &r) < 0) {
            Py_DECREF(seq);
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, r);
    }
    Py_DECREF(seq);
    return out;
}

static PyObject *P_estimate_many(PriceTableObject *self, PyObject *items) { return many(self, items, 0); }

/* The queue gate's admission: estimate_many() without the 7-key dict per node. */
static PyObject *P_hold_many(PriceTableObject *self, PyObject *items) { return many(self, items, 1); }

/* ------------------------------------------------------------ api_nodes */

/* The queue gate's first step (comfy_credits_ext/gate.py api_node_items), node by node the same, for the
** prompt dicts json.loads makes: each value that is a dict, whose "class_type" is_api(class_type) calls an
** API node (asked once per class, by the caller: the decision stays in Python), gives its key (str() of a
** key that is not a str) and (class_type, inputs) with inputs {} when not a dict. No pricing here. */
static PyObject *P_api_nodes(PriceTableObject *self, PyObject *args) {
    (void)self;
    PyObject *prompt, *is_api;
    if (!PyArg_ParseTuple(args, "OO:api_nodes", &prompt, &is_api)) return NULL;
    if (!PyDict_CheckExact(prompt)) {
        PyErr_SetString(PyExc_TypeError, "prompt must be a dict");
        return NULL;
    }
    PyObject *ids = PyList_New(0), *items = PyList_New(0), *seen = PyDict_New();
    PyObject *k_class = PyUnicode_FromString("class_type"), *k_inputs = PyUnicode_FromString("inputs");
    PyObject *out = NULL;
    if (!ids || !items || !seen || !k_class || !k_inputs) goto done;
    Py_ssize_t pos = 0;
    PyObject *key, *node;
    while (PyDict_Next(prompt, &pos, &key, &node)) {
        if (!PyDict_Check(node)) continue;
        Py_INCREF(key); /* is_api runs Python code: keep what we hold alive whatever it does */
        Py_INCREF(node);
        PyObject *cls = PyDict_GetItemWithError(node, k_class);
        PyObject *id = NULL, *inputs = NULL, *pair = NULL;
        int yes = -1;
        if (!cls && PyErr_Occurred()) goto node_done;
        cls = Py_NewRef(cls ? cls : Py_None);
        PyObject *known = PyDict_GetItemWithError(seen, cls); /* an unhashable class_type raises here */
        if (known) {
            yes = known == Py_True;
        } else if (!PyErr_Occurred()) {
            PyObject *r = PyObject_CallOneArg(is_api, cls);
            if (r) {
                yes = PyObject_IsTrue(r);
                Py_DECREF(r);
                if (yes >= 0 && PyDict_SetItem(seen, cls, yes ? Py_True : Py_False) < 0) yes = -1;
            }
        }
        if (yes == 1) {
            inputs = PyDict_GetItemWithError(node, k_inputs);
            if (!inputs && PyErr_Occurred()) {
                yes = -1;
                goto node_done;
            }
            inputs = inputs && PyDict_Check(inputs) ? Py_NewRef(inputs) : PyDict_New();
            id = PyUnicode_CheckExact(key) ? Py_NewRef(key) : PyObject_Str(key);
            pair = inputs ? PyTuple_Pack(2, cls, inputs) : NULL;
            if (!id || !pair || PyList_Append(ids, id) < 0 || PyList_Append(items, pair) < 0) yes = -1;
        }
    node_done:
        Py_XDECREF(pair);
        Py_XDECREF(id);
        Py_XDECREF(inputs);
        Py_XDECREF(cls);
        Py_DECREF(node);
        Py_DECREF(key);
        if (yes < 0) goto done;
    }
    out = PyTuple_Pack(2, ids, items);
done:
    Py_XDECREF(ids);
    Py_XDECREF(items);
    Py_XDECREF(seen);
    Py_XDECREF(k_class);
    Py_XDECREF(k_inputs);
    return out;
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
    {"estimate_many", FN(P_estimate_many), METH_O,
     "estimate_many([(node_class, inputs), ...]) -> one item per node, in order: estimate()'s dict, or the "
     "exception estimate() would raise (returned, not raised) when that node cannot be priced"},
    {"hold_many", FN(P_hold_many), METH_O,
     "hold_many([(node_class, inputs), ...]) -> estimate_many() with (micro, used_default) per node instead of "
     "estimate()'s dict (or, as there, the exception returned, not raised)"},
    {"api_nodes", FN(P_api_nodes), METH_VARARGS,
     "api_nodes(prompt, is_api) -> (node_ids, [(class_type, inputs), ...]): the prompt's nodes whose class_type "
     "is_api(class_type) calls an API node (asked once per class), as hold_many() takes them"},
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
