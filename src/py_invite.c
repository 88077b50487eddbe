/*
** py_invite.c — _core.invite_mint / _core.invite_verify: a thin binding of
** invite.h (pure computation, so the GIL is kept).
*/
#include "py_util.h"
#include "invite.h"

static int key_from(ccpy_state *st, PyObject *o, const unsigned char **key) {
    if (!PyBytes_Check(o) || PyBytes_GET_SIZE(o) != CC_INVITE_KEY_BYTES) {
        ccpy_invalid(st, "key", "the invite key is 32 bytes");
        return -1;
    }
    *key = (const unsigned char *)PyBytes_AS_STRING(o);
    return 0;
}

static PyObject *invite_mint(PyObject *module, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"key", "email", "ttl_ms", "now_ms", NULL};
    ccpy_state *st = ccpy_get_state(module);
    PyObject *key_o, *email_o, *ttl_o, *now_o = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO|$O:invite_mint", kwlist, &key_o, &email_o, &ttl_o, &now_o))
        return NULL;
    const unsigned char *key;
    const char *email;
    int64_t ttl, now;
    if (key_from(st, key_o, &key) < 0 || ccpy_str(st, email_o, "email", &email) < 0 ||
        ccpy_i64(st, ttl_o, "ttl_ms", &ttl) < 0 || ccpy_opt_i64(st, now_o, "now_ms", cc_now_ms(), &now) < 0)
        return NULL;
    char out[CC_INVITE_BYTES_MAX + 1];
    cc_error e;
    if (cc_invite_mint(key, email ? email : "", now, ttl, out, sizeof out, &e) != CC_OK) return ccpy_raise(st, &e);
    return PyUnicode_FromString(out);
}

static PyObject *invite_verify(PyObject *module, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"key", "invite", "now_ms", NULL};
    ccpy_state *st = ccpy_get_state(module);
    PyObject *key_o, *inv_o, *now_o = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|$O:invite_verify", kwlist, &key_o, &inv_o, &now_o)) return NULL;
    const unsigned char *key;
    const char *inv;
    int64_t now;
    if (key_from(st, key_o, &key) < 0 || ccpy_str(st, inv_o, "invite", &inv) < 0 ||
        ccpy_opt_i64(st, now_o, "now_ms", cc_now_ms(), &now) < 0)
        return NULL;
    char email[CC_EMAIL_BYTES_MAX + 1];
    int64_t exp = 0;
    cc_error e;
    if (cc_invite_verify(key, inv, now, email, sizeof email, &exp, &e) != CC_OK) return ccpy_raise(st, &e);
    return Py_BuildValue("{sssL}", "email", email, "expires_ms", (long long)exp);
}

static PyMethodDef invite_functions[] = {
    {"invite_mint", (PyCFunction)(void (*)(void))invite_mint, METH_VARARGS | METH_KEYWORDS,
     "invite_mint(key, email, ttl_ms, *, now_ms=now) -> a one-time invite for email (invite.h)"},
    {"invite_verify", (PyCFunction)(void (*)(void))invite_verify, METH_VARARGS | METH_KEYWORDS,
     "invite_verify(key, invite, *, now_ms=now) -> {email, expires_ms}; InvalidArgument when not valid, "
     "InvalidState when expired"},
    {NULL, NULL, 0, NULL},
};

int ccpy_invite_init(PyObject *m, ccpy_state *st) {
    (void)st;
    if (PyModule_AddObject(m, "INVITE_TTL_MS_MAX", PyLong_FromLongLong(CC_INVITE_TTL_MS_MAX)) < 0) return -1;
    return PyModule_AddFunctions(m, invite_functions);
}
