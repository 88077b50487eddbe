/*
** run.h — one state machine per API-node run: the money lifecycle from the
** hold to its one resolution, and the credits prompts reserve at admission.
**
** Contract:
**   - cc_run_begin places the hold (the worst case of the rule for the node's
**     actual inputs), registers the run and mints its token, all or nothing:
**     when anything after the hold fails, the hold is voided before the error
**     is returned. A run of a prompt with a reservation (cc_runs_reserve)
**     draws its hold from that reservation, so no node of an admitted prompt
**     is refused for credits; a hold beyond what the prompt reserved must fit
**     in credits no other queued prompt reserved.
**   - The gateway wraps every upstream request in cc_run_call_begin and
**     cc_run_call_end. call_begin verifies the token (HMAC, expiry; a run's
**     own token while the run is open is recognised byte for byte without
**     the HMAC, its expiry still checked on every call), and
**     refuses (CC_ERR_STATE) once the run is closing or closed, refuses
**     (CC_ERR_INVALID, field "path") a path outside the run's prefixes, and
**     refuses (CC_ERR_LIMIT) more than CC_RUN_CREATING_CALLS_MAX - 1 creating
**     calls beyond the calls the hold covers (one, or the batch size of a
**     node that calls once per image: pricing.h calls_per_batch_of). It keeps the hold alive: when less than half of hold_ttl_ms is
**     left, the hold is extended (no expiry under a running node).
**     cc_run_call_headers records X-Comfy-Credits-Used as soon as the
**     headers arrived; cc_run_call_end records the body's usage counters and
**     how the call ended.
**   - cc_run_finish(outcome) closes the run to new calls, waits at most
**     finish_wait_ms for calls in flight, applies the policy below once and
**     resolves the hold once (settle or void). A second finish returns the
**     first result (`replayed` set); concurrent finishes wait for the first.
**   - The policy. billed = what the upstream billed for requests it accepted:
**       1. the credits the upstream reported (X-Comfy-Credits-Used: creating
**          calls add up, polls count their largest report) when any call
**          reported them;
**       2. else, when no billable call happened: 0 (the run is free);
**       3. else the usage counters priced by the rule, when it has unit
**          prices for a reported counter;
**       4. else the rule's price of one call for these inputs (the hold
**          divided by the calls it covers) times the billable calls.
**     A billable call is a creating request (not GET/HEAD/DELETE, not a POST
**     poll (.../poll, .../status, .../download), not an upload
**     (/customers/storage, .../upload)) that the upstream answered 2xx, or that
**     timed out or was still in flight at the deadline (the upstream may have
**     accepted it; each retry of ComfyUI's client counts). The charge is at
**     most the hold; the rest of billed is recorded as uncollected. The same
**     policy applies whether the run succeeded, failed or was interrupted;
**     with charge_interrupted = 0 an interrupted run is charged nothing and
**     all of billed is recorded as uncollected.
**   - Memory is bounded: at most CC_RUNS_OPEN_MAX open runs (begin refuses
**     before any hold is placed), the last CC_RUNS_CLOSED_KEPT_MAX closed
**     runs are remembered for late reports and repeated finishes, at most
**     CC_RUNS_RESERVATIONS_MAX reservations.
**   - Thread-safe. Functions that touch the ledger block; Python callers
**     release the GIL around them.
*/
#ifndef CC_RUN_H
#define CC_RUN_H

#include "ledger.h"
#include "pricing.h"
#include "token.h"

#define CC_RUNS_OPEN_MAX 65536
#define CC_RUNS_CLOSED_KEPT_MAX 4096
#define CC_RUNS_RESERVATIONS_MAX 65536
#define CC_RUNS_PLACING_ACCOUNTS_MAX 4096   /* accounts with a hold being committed at once */
#define CC_RUN_PLACING_WAIT_MS_MAX 30000    /* a check waits this long at most for holds being committed */
#define CC_RUN_CREATING_CALLS_MAX 8         /* a one-call node's creating calls incl. the client's retries */
#define CC_RUN_PREFIXES_BYTES_MAX 1024      /* '\n'-separated path prefixes */
#define CC_RUN_FINISH_WAIT_MS_MAX (3600 * 1000)
#define CC_RUN_TOKEN_TTL_MS CC_HOLD_TTL_MS_MAX /* a token works only while its run is open */
#define CC_RUN_REASON_BYTES_MAX 160

typedef struct cc_runs cc_runs;

typedef struct cc_runs_config {
    int64_t hold_ttl_ms;        /* hold lifetime and keep-alive step, 1..CC_HOLD_TTL_MS_MAX */
    int64_t finish_wait_ms;     /* bound on waiting for calls in flight, 0..CC_RUN_FINISH_WAIT_MS_MAX */
    int charge_interrupted;     /* 1: interrupted runs pay what the upstream billed (default) */
} cc_runs_config;

/* The ledger and price table must outlive the registry. */
cc_rc cc_runs_open(cc_ledger *ledger, const cc_price_table *prices, const cc_runs_config *cfg, cc_runs **out,
                   cc_error *err);
void cc_runs_close(cc_runs *r);

/* ---- reservations (prompt admission) */

/* Reserves `micro` for a prompt of an account: CC_ERR_INSUFFICIENT when the
** account's balance minus its holds minus what its other prompts reserve
** does not cover it. CC_ERR_EXISTS when the prompt already has one. */
cc_rc cc_runs_reserve(cc_runs *r, const char *prompt_id, int64_t account_id, int64_t micro, cc_error *err);
/* cc_runs_reserve for a caller that may not wait (the queue gate on the
** event loop, holding Python's GIL): never waits for a lock held by another
** check, a hold being committed or a free reader connection of the ledger
** (it still reads SQLite, which in WAL mode does not wait for the writer);
** then *busy = 1 and nothing is
** reserved (call cc_runs_reserve from a thread that may wait). Otherwise
** *busy = 0 and the answer is cc_runs_reserve's. */
cc_rc cc_runs_reserve_nowait(cc_runs *r, const char *prompt_id, int64_t account_id, int64_t micro, int *busy,
                             cc_error *err);
/* Drops what is left of a prompt's reservation; returns that amount (0 if none).
** Never waits for the network: in farm mode the shared row (farm_resv.h) stays
** until cc_runs_unshare, or its expiry. */
int64_t cc_runs_release(cc_runs *r, const char *prompt_id);
/* Farm mode: deletes the shared row of a released prompt (a round trip; call
** it from a thread that may wait). CC_OK and nothing done otherwise. */
cc_rc cc_runs_unshare(cc_runs *r, const char *prompt_id, cc_error *err);
/* Credits an account's queued prompts still reserve, with the holds of its
** runs being committed right now (reserved until the ledger holds them). */
int64_t cc_runs_reserved(cc_runs *r, int64_t account_id);
/* Farm mode: what the other servers' queued prompts reserve for the account
** (a round trip; *out = 0 and CC_OK when reservations are not shared). */
cc_rc cc_runs_reserved_elsewhere(cc_runs *r, int64_t account_id, int64_t *out, cc_error *err);
/* What is left of one prompt's reservation (-1 when it has none). */
int64_t cc_runs_reservation(cc_runs *r, const char *prompt_id);

/* ---- runs */

typedef struct cc_run_begin_args {
    const char *key;            /* the hold's idempotency key */
    int64_t account_id;
    const char *prompt_id, *node_id, *node_class;
    const char *inputs_json;    /* the node's actual inputs (pricing.h) */
    size_t inputs_len;
    const char *prefixes;       /* '\n'-separated path prefixes the token may reach */
    int64_t credential_id;      /* the personal API key the prompt came with (its cap, auth.h), 0 = none */
} cc_run_begin_args;

typedef struct cc_run_info {
    int64_t run_id;             /* == the hold id */
    int64_t hold_micro;         /* the worst case held */
    int64_t from_reservation;   /* the part of it the prompt had reserved */
    int64_t calls_planned;      /* upstream calls the hold covers (the batch; pricing.h), >= 1 */
    int used_default;           /* no rule: the default price */
    char model[128];
    char token[CC_TOKEN_BYTES_MAX + 1];
} cc_run_info;

cc_rc cc_run_begin(cc_runs *r, const cc_run_begin_args *a, cc_run_info *out, cc_error *err);

typedef enum cc_call_kind {
    CC_CALL_READ = 0,           /* GET/HEAD/DELETE: polls, downloads */
    CC_CALL_BILLABLE = 1,       /* a creating request */
    CC_CALL_UPLOAD = 2          /* a creating request that only uploads */
} cc_call_kind;

/* Verifies the token and admits one call. Fills run_id and kind. */
cc_rc cc_run_call_begin(cc_runs *r, const char *token, const char *method, const char *path, int64_t *run_id,
                        int *kind, cc_error *err);
/* cc_run_call_begin for a caller that may not block (the gateway's I/O
** thread): it never touches the ledger. When the hold needs extending,
** *extend_id is its run id (else 0) and the caller must call cc_run_extend
** with it from a thread that may block (the call proceeds meanwhile, as it
** does when an extension fails; the hold had up to half of hold_ttl_ms left,
** and the runtime's periodic cc_runs_keepalive extends it as well). */
cc_rc cc_run_call_begin_nowait(cc_runs *r, const char *token, const char *method, const char *path, int64_t *run_id,
                               int *kind, int64_t *extend_id, cc_error *err);
void cc_run_extend(cc_runs *r, int64_t run_id);
/* The answer's headers arrived: status and X-Comfy-Credits-Used (-1 if absent). */
void cc_run_call_headers(cc_runs *r, int64_t run_id, int kind, int status, int64_t credits_used_micro);
/* The call ended. status 0: no answer (timed_out says whether it was a
** timeout after the request was sent); usage: the body's counters (its
** credits_used_micro is ignored: headers report those). */
void cc_run_call_end(cc_runs *r, int64_t run_id, int kind, int status, int timed_out, const cc_usage *usage);

typedef enum cc_run_outcome {
    CC_RUN_SUCCEEDED = 1,
    CC_RUN_FAILED = 2,
    CC_RUN_INTERRUPTED = 3
} cc_run_outcome;

typedef struct cc_run_result {
    int replayed;               /* a second finish: the first result */
    int settled;                /* 1 settled, 0 voided (free) */
    int hold_lost;              /* the hold was resolved elsewhere (e.g. expired): billed went uncollected */
    int64_t hold_micro;
    int64_t billed;             /* what the upstream billed */
    int64_t charged;            /* what the person paid (<= hold) */
    int64_t uncollected;        /* billed - charged */
    int64_t calls, billable_calls, late_calls, in_flight_at_deadline;
    cc_usage usage;             /* combined counters for history */
    int outcome;
    char reason[CC_RUN_REASON_BYTES_MAX];
} cc_run_result;

cc_rc cc_run_finish(cc_runs *r, int64_t run_id, cc_run_outcome outcome, cc_run_result *out, cc_error *err);

/* Extends the holds of open runs with less than half of hold_ttl_ms left.
** Returns how many were extended. Called periodically (before expiry). */
int cc_runs_keepalive(cc_runs *r);

/* Test seam: the clock this registry counts its runs' hold and token expiries
** in (hold keep-alive, CC_RUN_TOKEN_TTL_MS), instead of cc_now_ms (NULL: back
** to cc_now_ms). Set it before the registry is used from other threads. */
void cc_runs_set_clock(cc_runs *r, int64_t (*clock_ms)(void *ud), void *ud);

/* Counters: open runs, closed runs remembered, reservations. */
/* How many tokens call_begin checked by their HMAC (every token but an open
** run's own, which is known): for tests and profiles. */
int64_t cc_runs_token_macs(cc_runs *r);
void cc_runs_counts(cc_runs *r, int64_t *open, int64_t *closed, int64_t *reservations);

#endif
