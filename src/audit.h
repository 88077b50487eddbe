/*
** audit.h — the append-only log of admin actions (who, what, when, from
** where), in its own SQLite file beside the ledger.
**
** Contract:
**   - Records are only ever appended: the schema refuses UPDATE and DELETE
**     by trigger, and no function here changes or removes one.
**   - Each record carries the SHA-256 of the previous record's hash and its
**     own fields (a hash chain), so cc_audit_verify finds a record edited or
**     removed behind the log's back (e.g. with the sqlite3 shell).
**   - Appends from several threads and processes are serialised by the
**     database (BEGIN IMMEDIATE) and are durable when cc_audit_append
**     returns (WAL, synchronous=FULL).
**   - Fields are bounded (sizes below); an empty action or actor, a field too
**     long, or a NUL-less buffer is CC_ERR_INVALID naming the field, and
**     nothing is written.
**   - Thread-safe (one connection behind a mutex); calls block on I/O.
*/
#ifndef CC_AUDIT_H
#define CC_AUDIT_H

#include "cc_common.h"

#define CC_AUDIT_ACTION_BYTES_MAX 48
#define CC_AUDIT_ACTOR_BYTES_MAX CC_EMAIL_BYTES_MAX
#define CC_AUDIT_TARGET_BYTES_MAX 300
#define CC_AUDIT_DETAIL_BYTES_MAX 2000   /* JSON text: amounts, notes, caps */
#define CC_AUDIT_SOURCE_BYTES_MAX 64     /* client address, or "cli" */
#define CC_AUDIT_PAGE_MAX 1000
#define CC_AUDIT_HASH_HEX_BYTES 64

typedef struct cc_audit_record {
    int64_t id;                 /* assigned, strictly increasing */
    int64_t at_ms;              /* assigned: wall clock */
    int64_t actor_id;           /* the admin's account id, 0 for the CLI */
    char actor[CC_AUDIT_ACTOR_BYTES_MAX + 1];
    char action[CC_AUDIT_ACTION_BYTES_MAX + 1];
    char target[CC_AUDIT_TARGET_BYTES_MAX + 1];
    char detail[CC_AUDIT_DETAIL_BYTES_MAX + 1];
    char source[CC_AUDIT_SOURCE_BYTES_MAX + 1];
    char hash[CC_AUDIT_HASH_HEX_BYTES + 1];   /* assigned */
} cc_audit_record;

typedef struct cc_audit cc_audit;

cc_rc cc_audit_open(const char *path, cc_audit **out, cc_error *err);
void cc_audit_close(cc_audit *a);

/* Appends in->actor_id, actor, action, target, detail, source; fills out
** (may be NULL) with the stored record. */
cc_rc cc_audit_append(cc_audit *a, const cc_audit_record *in, cc_audit_record *out, cc_error *err);

/* Newest first: records with id < before_id (0 = newest), at most limit
** (1..CC_AUDIT_PAGE_MAX). *next_before is the cursor for the next page. */
cc_rc cc_audit_list(cc_audit *a, int64_t before_id, int limit, cc_audit_record *out, int *n_out,
                    int64_t *next_before, cc_error *err);

/* Recomputes the chain. *records = how many; *first_bad = the id of the
** first record that does not match (0 when the chain holds). */
cc_rc cc_audit_verify(cc_audit *a, int64_t *records, int64_t *first_bad, cc_error *err);

#endif
