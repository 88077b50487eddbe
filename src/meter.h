/*
** meter.h — usage reported by the upstream, accumulated per hold.
**
** Contract:
**   - The gateway records what each upstream response reported for the hold
**     its token names; the node wrapper takes the total when it settles.
**   - Creating calls (POST/PUT/PATCH) add up: a node that generates twice
**     pays for both. Reads (GET: polling a task) report the state of one
**     resource again and again, so for them the largest value seen counts,
**     never the sum (a poll that repeats "usage" must not double the bill).
**   - X-Comfy-Credits-Used is handled the same way, in micro-credits.
**   - At most CC_METER_HOLDS_MAX holds are tracked; recording for one more
**     fails with CC_ERR_LIMIT (the gateway then refuses the call rather than
**     lose a charge). Thread-safe.
*/
#ifndef CC_METER_H
#define CC_METER_H

#include "cc_common.h"
#include "pricing.h"

#define CC_METER_HOLDS_MAX 65536

typedef struct cc_meter cc_meter;

cc_rc cc_meter_open(cc_meter **out, cc_error *err);
void cc_meter_close(cc_meter *m);

/* creating: 1 for POST/PUT/PATCH, 0 for GET. */
cc_rc cc_meter_record(cc_meter *m, int64_t hold_id, int creating, const cc_usage *u, cc_error *err);

/* Moves the hold's totals out (all -1 when nothing was recorded).
** *calls = number of upstream calls recorded. */
void cc_meter_take(cc_meter *m, int64_t hold_id, cc_usage *out, int64_t *calls);

#endif
