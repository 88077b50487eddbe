/*
** py_module.h — shared state of the comfy_credits_ext._core binding.
**
** Contract: the binding is thin. It converts Python values to C, releases
** the GIL around every call that can block (SQLite, network, KDF), converts
** results back, and maps cc_error to one exception hierarchy:
**
**   CreditsError(Exception)
**     InvalidArgument(CreditsError, ValueError)   CC_ERR_INVALID, CC_ERR_LIMIT
**     NotFound(CreditsError, LookupError)         CC_ERR_NOT_FOUND
**     InsufficientCredits(CreditsError)           CC_ERR_INSUFFICIENT
**     IdempotencyConflict(CreditsError)           CC_ERR_CONFLICT
**     InvalidState(CreditsError)                  CC_ERR_STATE
**     AlreadyExists(CreditsError)                 CC_ERR_EXISTS
**     StorageError(CreditsError, OSError)         CC_ERR_STORAGE, CC_ERR_NOMEM
**
** Every raised exception carries `.code` (cc_rc_name) and `.field` (the
** offending input or None). No business logic lives in py_*.c files.
*/
#ifndef PY_MODULE_H
#define PY_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "cc_common.h"

typedef struct ccpy_state {
    PyObject *CreditsError;
    PyObject *InvalidArgument;
    PyObject *NotFound;
    PyObject *InsufficientCredits;
    PyObject *IdempotencyConflict;
    PyObject *InvalidState;
    PyObject *AlreadyExists;
    PyObject *StorageError;
    PyObject *LedgerType;
    PyObject *PriceTableType;
    PyObject *GatewayType;
    PyObject *GatewayStreamType;
    PyObject *TokenKeyType;
    PyObject *StripeType;
    PyObject *RunsType;
} ccpy_state;

ccpy_state *ccpy_get_state(PyObject *module);
/* State reached from an instance of one of our heap types. */
ccpy_state *ccpy_state_from_type(PyTypeObject *tp);

/* Raises the exception for err and returns NULL. */
PyObject *ccpy_raise(ccpy_state *st, const cc_error *err);

/* Raises InvalidArgument naming `field`; returns NULL. */
PyObject *ccpy_invalid(ccpy_state *st, const char *field, const char *msg);

/* Per-concept registration, called from module exec. Return 0 or -1. */
int ccpy_pricing_init(PyObject *module, ccpy_state *st);
int ccpy_ledger_init(PyObject *module, ccpy_state *st);
int ccpy_gateway_init(PyObject *module, ccpy_state *st);
int ccpy_stripe_init(PyObject *module, ccpy_state *st);
int ccpy_run_init(PyObject *module, ccpy_state *st);
int ccpy_listener_init(PyObject *module, ccpy_state *st);
/* The C objects behind a Gateway / Runs, kept open while pinned (close()
** refuses meanwhile); NULL with an exception set when o is not one or closed. */
struct cc_gateway *ccpy_gateway_pin(ccpy_state *st, PyObject *o);
void ccpy_gateway_unpin(PyObject *o);
struct cc_runs *ccpy_runs_pin(ccpy_state *st, PyObject *o);
void ccpy_runs_unpin(PyObject *o);
int ccpy_history_init(PyObject *module, ccpy_state *st);
int ccpy_invite_init(PyObject *module, ccpy_state *st);
int ccpy_ops_init(PyObject *module, ccpy_state *st);
int ccpy_attention_init(PyObject *module, ccpy_state *st);

#endif
