/*
** py_util.h — argument and result conversion shared by the py_*.c files.
**
** Contract: each converter returns 0 on success or -1 with InvalidArgument
** (naming `field`) set. Strings are borrowed UTF-8 views valid while the
** Python object lives; the caller keeps a reference across any GIL release.
*/
#ifndef PY_UTIL_H
#define PY_UTIL_H

#include "py_module.h"

int ccpy_i64(ccpy_state *st, PyObject *o, const char *field, int64_t *out);
int ccpy_opt_i64(ccpy_state *st, PyObject *o, const char *field, int64_t dflt, int64_t *out);
int ccpy_str(ccpy_state *st, PyObject *o, const char *field, const char **out); /* None -> NULL */

int ccpy_set_i64(PyObject *d, const char *k, int64_t v);
int ccpy_set_str(PyObject *d, const char *k, const char *v);
int ccpy_set_bool(PyObject *d, const char *k, int v);

#endif
