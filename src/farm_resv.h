/*
** farm_resv.h — prompt reservations shared by the servers of a farm.
**
** Contract:
**   - run.c keeps each server's reservations (credits held back for the API
**     nodes of queued prompts) in memory. When the ledger's store is shared
**     by several servers (PostgreSQL), each reservation is also a row of the
**     store, (server, prompt) -> account, what is left, expiry, so that every
**     server's admission counts what the others reserved.
**   - Rows expire: a server renews its rows' expiry periodically
**     (cc_ledger_resv_renew, from its keepalive); rows of a server that died
**     stop counting at their expiry and are deleted by any server's renewal.
**   - Every call uses a reader connection: one round trip, no writer lock,
**     no fsync waited for (soft state; money never depends on it alone: the
**     ledger's hold rule still refuses anything beyond the balance).
**   - With a store that only one server uses (SQLite) shared() is 0 and the
**     other calls must not be made.
*/
#ifndef CC_FARM_RESV_H
#define CC_FARM_RESV_H

#include "ledger.h"

#define CC_SERVER_ID_BYTES 16    /* hex characters of a server's random id */

int cc_ledger_resv_shared(cc_ledger *l);
cc_rc cc_ledger_resv_put(cc_ledger *l, const char *server, const char *prompt_id, int64_t account_id, int64_t left,
                         int64_t expires_ms, cc_error *err);
cc_rc cc_ledger_resv_drop(cc_ledger *l, const char *server, const char *prompt_id, cc_error *err);
/* Σ of what live rows of other servers reserve for the account. */
cc_rc cc_ledger_resv_others(cc_ledger *l, const char *server, int64_t account_id, int64_t now_ms, int64_t *sum,
                            cc_error *err);
cc_rc cc_ledger_resv_renew(cc_ledger *l, const char *server, int64_t now_ms, int64_t expires_ms, cc_error *err);

#endif
