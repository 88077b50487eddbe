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

/* Shared by the readers of the ledger (py_ledger.c defines them):
** ccpy_set_counter: a usage counter, None when not reported (< 0);
** ccpy_set_entry_run: an entry's run and payment fields (prompt_id, node_id,
**   node_class, model, tokens_in/out, images, seconds_ms, currency,
**   amount_minor, method), as the ledger's history shows them;
** ccpy_names_mask: a list of names -> OR of bit(name) (0 = unknown name:
**   InvalidArgument with bad_msg; not a list: list_msg);
** ccpy_page: {key: list, "next_cursor": next or None}, stealing list (NULL
**   passes through, for an error already set);
** ccpy_rows: the answer of a read that filled n rows of `size` bytes at
**   `rows` (a PyMem buffer, freed here in every case): rc's error raised, or
**   the list of row(each); NULL when either failed. */
struct cc_entry;
int ccpy_set_counter(PyObject *d, const char *k, int64_t v);
int ccpy_set_entry_run(PyObject *d, const struct cc_entry *e);
int ccpy_names_mask(ccpy_state *st, PyObject *o, const char *field, const char *list_msg, const char *bad_msg,
                    unsigned (*bit)(const char *name), unsigned *mask);
PyObject *ccpy_page(const char *key, PyObject *list, int64_t next);
PyObject *ccpy_rows(ccpy_state *st, cc_rc rc, const cc_error *e, void *rows, size_t size, int n,
                    PyObject *(*row)(const void *));

/* A call into the core that may block (a reader or the writer of the
** ledger, a disk, the network), made with the GIL released and counted in
** *busy meanwhile (close() refuses while it is not 0): `call` is a
** statement, e.g. CCPY_BLOCKING(&self->busy, rc = cc_ledger_account(...)).
** It must not touch Python objects. */
#define CCPY_BLOCKING(busy, call)                                              \
    do {                                                                       \
        (*(busy))++;                                                           \
        Py_BEGIN_ALLOW_THREADS                                                 \
        call;                                                                  \
        Py_END_ALLOW_THREADS                                                   \
        (*(busy))--;                                                           \
    } while (0)

/* Usage counters (pricing.h cc_usage) from/to a dict; absent = not reported. */
struct cc_usage;
int ccpy_usage_from_dict(ccpy_state *st, PyObject *d, struct cc_usage *u);
PyObject *ccpy_usage_dict(const struct cc_usage *u);

/* Borrow the C object of a Ledger / PriceTable for as long as another object
** keeps it: while pinned, Ledger.close() and PriceTable.__init__ refuse.
** NULL with InvalidArgument/InvalidState set when o is not one, or closed. */
struct cc_ledger;
struct cc_price_table;
struct cc_ledger *ccpy_ledger_pin(ccpy_state *st, PyObject *o);
void ccpy_ledger_unpin(PyObject *o);
const struct cc_price_table *ccpy_prices_pin(ccpy_state *st, PyObject *o);
void ccpy_prices_unpin(PyObject *o);

/* An account as the Ledger returns it (py_ledger.c), caps included. */
struct cc_account;
PyObject *ccpy_account_dict(const struct cc_account *a);

/* A node's inputs (dict or JSON text) as UTF-8 JSON bytes (new reference). */
PyObject *ccpy_inputs_json(ccpy_state *st, PyObject *inputs);

#endif
