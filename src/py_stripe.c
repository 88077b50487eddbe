/*
** py_stripe.c — the Stripe heap type and webhook verification: a thin
** binding of stripe.h. Network calls run with the GIL released. The secret
** key lives only in C memory; no method returns it.
*/
#include "py_util.h"
#include "stripe.h"
#include "money.h"

typedef struct {
    PyObject_HEAD
    cc_stripe *s;
} StripeObject;

static ccpy_state *sstate(PyObject *o) { return ccpy_state_from_type(Py_TYPE(o)); }

static PyObject *session_dict(const cc_checkout_session *s) {
    return Py_BuildValue("{sssssssssssLsLsLsLsLsssssssssssL}", "id", s->id, "url", s->url, "status", s->status,
                         "payment_status", s->payment_status, "currency", s->currency, "amount_total",
                         (long long)s->amount_total, "account_id", (long long)s->account_id, "credits_micro",
                         (long long)s->credits_micro, "priced_amount_minor", (long long)s->priced_amount_minor,
                         "rate_micro", (long long)s->rate_micro,
                         "priced_currency", s->priced_currency, "customer_email", s->customer_email,
                         "methods_offered", s->methods_offered, "method_used", s->method_used, "payment_intent",
                         s->payment_intent, "created_s", (long long)s->created_s);
}

static int St_init(StripeObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"api_base", "secret_key", "timeout_ms", "api_version", NULL};
    ccpy_state *st = sstate((PyObject *)self);
    PyObject *b_o, *k_o, *v_o = NULL;
    int to = 30000;
    if (self->s) { ccpy_invalid(st, "self", "Stripe client is already open"); return -1; }
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|$iO:Stripe", kwlist, &b_o, &k_o, &to, &v_o)) return -1;
    const char *b, *k, *v = NULL;
    if (ccpy_str(st, b_o, "api_base", &b) < 0 || ccpy_str(st, k_o, "secret_key", &k) < 0) return -1;
    if (v_o && v_o != Py_None && ccpy_str(st, v_o, "api_version", &v) < 0) return -1;
    cc_error e;
    if (cc_stripe_open(b, k, v, to, &self->s, &e) != CC_OK) { ccpy_raise(st, &e); return -1; }
    return 0;
}

static int method_bits(ccpy_state *st, PyObject *o, int *out) {
    *out = 0;
    if (!o || o == Py_None) { *out = CC_PAY_CARD; return 0; }
    PyObject *seq = PySequence_Fast(o, "methods must be a list");
    if (!seq) { PyErr_Clear(); ccpy_invalid(st, "methods", "methods must be a list of card, wechat_pay, alipay"); return -1; }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        const char *m;
        if (ccpy_str(st, PySequence_Fast_GET_ITEM(seq, i), "methods", &m) < 0 || !m) { Py_DECREF(seq); return -1; }
        if (!strcmp(m, "card")) *out |= CC_PAY_CARD;
        else if (!strcmp(m, "wechat_pay")) *out |= CC_PAY_WECHAT;
        else if (!strcmp(m, "alipay")) *out |= CC_PAY_ALIPAY;
        else { Py_DECREF(seq); ccpy_invalid(st, "methods", "methods are card, wechat_pay and alipay"); return -1; }
    }
    Py_DECREF(seq);
    if (!*out) { ccpy_invalid(st, "methods", "choose at least one payment method"); return -1; }
    return 0;
}

static PyObject *St_create(StripeObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"currency", "amount_minor", "credits_micro", "account_id", "customer_email",
                             "success_url", "cancel_url", "idempotency_key", "methods", "product_name",
                             "expires_at_s", "rate_micro", NULL};
    ccpy_state *st = sstate((PyObject *)self);
    PyObject *cur = NULL, *amt = NULL, *cr = NULL, *acct = NULL, *email = NULL, *ok = NULL, *cancel = NULL,
             *idem = NULL, *methods = NULL, *name = NULL, *exp = NULL, *rate = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|$OOOOOOOOOOOO:create_checkout", kwlist, &cur, &amt, &cr, &acct,
                                     &email, &ok, &cancel, &idem, &methods, &name, &exp, &rate))
        return NULL;
    PyObject *required[] = {cur, amt, cr, acct, email, ok, cancel, idem, rate};
    static const char *req_names[] = {"currency", "amount_minor", "credits_micro", "account_id", "customer_email",
                                      "success_url", "cancel_url", "idempotency_key", "rate_micro"};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        if (!required[i]) {
            char msg[96];
            snprintf(msg, sizeof msg, "%s is required", req_names[i]);
            return ccpy_invalid(st, req_names[i], msg);
        }
    cc_checkout_params p = {0};
    if (ccpy_str(st, cur, "currency", &p.currency) < 0 || ccpy_i64(st, amt, "amount_minor", &p.amount_minor) < 0 ||
        ccpy_i64(st, cr, "credits_micro", &p.credits_micro) < 0 || ccpy_i64(st, acct, "account_id", &p.account_id) < 0 ||
        ccpy_str(st, email, "customer_email", &p.customer_email) < 0 ||
        ccpy_str(st, ok, "success_url", &p.success_url) < 0 || ccpy_str(st, cancel, "cancel_url", &p.cancel_url) < 0 ||
        ccpy_str(st, idem, "idempotency_key", &p.idempotency_key) < 0 || method_bits(st, methods, &p.methods) < 0 ||
        ccpy_str(st, name, "product_name", &p.product_name) < 0 ||
        ccpy_opt_i64(st, exp, "expires_at_s", 0, &p.expires_at_s) < 0 || ccpy_i64(st, rate, "rate_micro", &p.rate_micro) < 0)
        return NULL;
    if (!p.currency) return ccpy_invalid(st, "currency", "currency is required");
    cc_checkout_session s;
    cc_error e;
    cc_rc rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cc_stripe_checkout_create(self->s, &p, &s, &e);
    Py_END_ALLOW_THREADS
    if (rc != CC_OK) return ccpy_raise(st, &e);
    return session_dict(&s);
}

static PyObject *by_id(StripeObject *self, PyObject *arg, int expire) {
    ccpy_state *st = sstate((PyObject *)self);
    const char *id;
    if (ccpy_str(st, arg, "session_id", &id) < 0) return NULL;
    if (!id) return ccpy_invalid(st, "session_id", "session_id must be a string");
    cc_checkout_session s;
    cc_error e;
    cc_rc rc;
    Py_BEGIN_ALLOW_THREADS
    rc = expire ? cc_stripe_checkout_expire(self->s, id, &s, &e) : cc_stripe_checkout_retrieve(self->s, id, &s, &e);
    Py_END_ALLOW_THREADS
    if (rc != CC_OK) return ccpy_raise(st, &e);
    return session_dict(&s);
}

static PyObject *St_api_version(StripeObject *self, PyObject *Py_UNUSED(ignored)) {
    return PyUnicode_FromString(cc_stripe_api_version(self->s));
}

static PyObject *St_receipt(StripeObject *self, PyObject *arg) {
    ccpy_state *st = sstate((PyObject *)self);
    const char *id;
    if (ccpy_str(st, arg, "payment_intent", &id) < 0) return NULL;
    if (!id) return ccpy_invalid(st, "payment_intent", "payment_intent must be a string");
    cc_payment_receipt *r = malloc(sizeof *r);
    if (!r) return PyErr_NoMemory();
    cc_error e;
    cc_rc rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cc_stripe_payment_receipt(self->s, id, r, &e);
    Py_END_ALLOW_THREADS
    PyObject *d = rc != CC_OK ? ccpy_raise(st, &e)
        : Py_BuildValue("{s:s,s:s,s:s,s:s,s:s,s:O}", "payment_intent", r->payment_intent, "status", r->status,
                        "charge", r->charge, "receipt_url", r->receipt_url, "method_used", r->method_used,
                        "livemode", r->livemode ? Py_True : Py_False);
    free(r);
    return d;
}

static PyObject *St_retrieve(StripeObject *self, PyObject *arg) { return by_id(self, arg, 0); }
static PyObject *St_expire(StripeObject *self, PyObject *arg) { return by_id(self, arg, 1); }

static void St_dealloc(StripeObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    cc_stripe_close(self->s);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int St_traverse(PyObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static PyObject *St_getattro(StripeObject *self, PyObject *name) {
    if (!self->s && PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, "__class__") != 0) {
        PyObject *a = PyObject_GenericGetAttr((PyObject *)self, name);
        if (a && PyCallable_Check(a) && !PyType_Check(a)) {
            Py_DECREF(a);
            return ccpy_invalid(sstate((PyObject *)self), "self", "Stripe client was not initialised");
        }
        return a;
    }
    return PyObject_GenericGetAttr((PyObject *)self, name);
}

#define KW (METH_VARARGS | METH_KEYWORDS)
#define FN(f) (PyCFunction)(void (*)(void))(f)
static PyMethodDef St_methods[] = {
    {"create_checkout", FN(St_create), KW,
     "create_checkout(*, currency, amount_minor, credits_micro, account_id, customer_email, success_url, "
     "cancel_url, idempotency_key, rate_micro, methods=['card'], product_name=None, expires_at_s=None) -> session"},
    {"api_version", FN(St_api_version), METH_NOARGS, "api_version() -> the Stripe-Version sent on every request"},
    {"retrieve_checkout", FN(St_retrieve), METH_O, "retrieve_checkout(session_id) -> session"},
    {"expire_checkout", FN(St_expire), METH_O, "expire_checkout(session_id) -> session"},
    {"payment_receipt", FN(St_receipt), METH_O,
     "payment_receipt(payment_intent_id) -> {payment_intent, status, charge, receipt_url, method_used, livemode}: "
     "the intent retrieved with expand[]=latest_charge"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot St_slots[] = {
    {Py_tp_doc, "Stripe(api_base, secret_key, *, timeout_ms=30000): the Checkout client."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, St_init},
    {Py_tp_dealloc, St_dealloc},
    {Py_tp_traverse, St_traverse},
    {Py_tp_getattro, St_getattro},
    {Py_tp_methods, St_methods},
    {0, NULL},
};

static PyType_Spec St_spec = {
    .name = "comfy_credits_ext._core.Stripe",
    .basicsize = sizeof(StripeObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = St_slots,
};

static PyObject *verify_webhook(PyObject *m, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"secret", "signature_header", "body", "now_s", "tolerance_s", NULL};
    ccpy_state *st = ccpy_get_state(m);
    PyObject *sec_o, *hdr_o, *now_o = NULL;
    Py_buffer body;
    long long tol = CC_STRIPE_TOLERANCE_S_DEFAULT;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOy*|OL:verify_webhook", kwlist, &sec_o, &hdr_o, &body, &now_o, &tol))
        return NULL;
    const char *sec, *hdr;
    int64_t now;
    PyObject *out = NULL;
    if (ccpy_str(st, sec_o, "secret", &sec) < 0 || ccpy_str(st, hdr_o, "signature_header", &hdr) < 0 ||
        ccpy_opt_i64(st, now_o, "now_s", cc_now_ms() / 1000, &now) < 0)
        goto done;
    cc_error e;
    if (cc_stripe_webhook_verify(sec, hdr, body.buf, (size_t)body.len, now, tol, &e) != CC_OK) {
        ccpy_raise(st, &e);
        goto done;
    }
    out = Py_NewRef(Py_True);
done:
    PyBuffer_Release(&body);
    return out;
}

static PyObject *parse_checkout(PyObject *m, PyObject *arg) {
    ccpy_state *st = ccpy_get_state(m);
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) return NULL;
    cc_checkout_session s;
    cc_error e;
    cc_rc rc = cc_stripe_session_parse(b.buf, (size_t)b.len, &s, &e);
    PyBuffer_Release(&b);
    if (rc != CC_OK) return ccpy_raise(st, &e);
    return session_dict(&s);
}

static PyObject *methods_allowed(PyObject *m, PyObject *arg) {
    ccpy_state *st = ccpy_get_state(m);
    const char *cur;
    if (ccpy_str(st, arg, "currency", &cur) < 0) return NULL;
    if (!cur || cc_currency_exponent(cur) < 0) return ccpy_invalid(st, "currency", "unknown currency");
    int bits = cc_stripe_methods_allowed(cur);
    PyObject *l = PyList_New(0);
    static const struct { int bit; const char *name; } M[] = {
        {CC_PAY_CARD, "card"}, {CC_PAY_WECHAT, "wechat_pay"}, {CC_PAY_ALIPAY, "alipay"}};
    for (size_t i = 0; l && i < 3; i++) {
        if (!(bits & M[i].bit)) continue;
        PyObject *s = PyUnicode_FromString(M[i].name);
        if (!s || PyList_Append(l, s) < 0) Py_CLEAR(l);
        Py_XDECREF(s);
    }
    return l;
}

static PyObject *min_charge(PyObject *m, PyObject *arg) {
    ccpy_state *st = ccpy_get_state(m);
    const char *cur;
    if (ccpy_str(st, arg, "currency", &cur) < 0) return NULL;
    if (!cur || cc_currency_exponent(cur) < 0) return ccpy_invalid(st, "currency", "unknown currency");
    return PyLong_FromLongLong((long long)cc_stripe_min_charge_minor(cur));
}

static PyObject *api_version_default(PyObject *m, PyObject *Py_UNUSED(ignored)) {
    (void)m;
    return PyUnicode_FromString(CC_STRIPE_API_VERSION_DEFAULT);
}

static PyMethodDef stripe_functions[] = {
    {"verify_webhook", (PyCFunction)(void (*)(void))verify_webhook, METH_VARARGS | METH_KEYWORDS,
     "verify_webhook(secret, signature_header, body, now_s=None, tolerance_s=300) -> True, or raises"},
    {"parse_checkout_session", parse_checkout, METH_O, "a Checkout Session (or an event carrying one) -> dict"},
    {"payment_methods", methods_allowed, METH_O, "payment methods offered in a currency (WeChat/Alipay: USD only)"},
    {"stripe_min_charge", min_charge, METH_O, "Stripe's minimum charge in a currency, in minor units (0: none published)"},
    {"stripe_api_version_default", api_version_default, METH_NOARGS, "the Stripe-Version pinned by default"},
    {NULL, NULL, 0, NULL},
};

int ccpy_stripe_init(PyObject *m, ccpy_state *st) {
    PyObject *t = PyType_FromModuleAndSpec(m, &St_spec, NULL);
    if (!t) return -1;
    st->StripeType = t;
    if (PyModule_AddObjectRef(m, "Stripe", t) < 0) return -1;
    return PyModule_AddFunctions(m, stripe_functions);
}
