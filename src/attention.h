/*
** attention.h — paid checkouts that could not be credited ("needs attention").
**
** Contract:
**   - fulfil.c decides that a paid Stripe session cannot be credited; the
**     caller records the verdict here so it is never answered "rejected" and
**     forgotten. The list lives in the ledger's own store (a table of the
**     SQLite file, or of the PostgreSQL database in farm mode), so every
**     server of a farm, the CLI and the admin dashboard see one list.
**   - Nothing here moves credits: the operator settles a purchase by hand
**     (e.g. a grant) and resolves it with a note saying how.
**   - record(): a new session is kept with reports = 1; the same session
**     again refreshes reason and last_ms and counts the report (two servers
**     recording it at once give one row, reports = 2). Texts longer than the
**     store allows are cut at a UTF-8 boundary (they are notes, not money);
**     the session id must be 1..CC_REF_BYTES_MAX bytes.
**   - resolve(): only an open one (CC_ERR_NOT_FOUND otherwise); the note
**     must say something, 1..CC_ATTENTION_NOTE_BYTES_MAX bytes.
**   - Writes are jobs of the group commit (durable when they return); reads
**     use a reader connection. Thread-safe like the rest of the ledger.
*/
#ifndef CC_ATTENTION_H
#define CC_ATTENTION_H

#include "ledger.h"

#define CC_ATTENTION_NOTE_BYTES_MAX 500

/* Records (or refreshes) a verdict; *out (if not NULL) is the row as stored. */
cc_rc cc_ledger_attention_record(cc_ledger *l, const cc_attention *a, cc_attention *out, cc_error *err);
cc_rc cc_ledger_attention_get(cc_ledger *l, const char *session_id, cc_attention *out, cc_error *err);
/* At most cap (1..CC_ATTENTION_LIST_MAX) rows, oldest first. */
cc_rc cc_ledger_attention_list(cc_ledger *l, int include_resolved, cc_attention *out, int cap, int *n_out,
                               cc_error *err);
cc_rc cc_ledger_attention_resolve(cc_ledger *l, const char *session_id, const char *note, cc_attention *out,
                                  cc_error *err);

#endif
