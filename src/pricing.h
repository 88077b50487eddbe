/*
** pricing.h — what an API-node run costs, in micro-credits.
**
** Contract:
**   - A price table is parsed from JSON (cJSON) once; afterwards it is
**     immutable and may be shared by any number of threads without locks.
**   - cc_price_estimate(table, node_class, inputs_json) -> worst-case
**     micro-credits for a hold. `inputs_json` is the node's "inputs" object
**     exactly as in a ComfyUI prompt: a literal value, or a link written as
**     [node_id, slot]. A linked (non-literal) input is priced at its worst
**     case (the maximum over every value the rule knows for it). A node class
**     with no rule is priced with the table's default rule and the result's
**     `used_default` flag is set, never at zero.
**   - A rule with "calls_per_batch_of": "<input>" prices a node that makes
**     one upstream call per item of that tensor input's batch (Recraft's
**     upscale, vectorize, background and image-to-image nodes loop over
**     `image.shape[0]`). At execution the glue writes a tensor input as
**     ["comfy_credits_batch", N] (N = its first dimension; link-shaped, so
**     every other part of a rule prices it as a link); the estimate is the
**     per-call price x N and `calls` = N. Where the batch is not known yet
**     (a link in a queued prompt) it counts as one call. N above
**     CC_PRICE_BATCH_MAX is refused (CC_ERR_LIMIT): nothing is held.
**   - cc_price_estimate_tree(): the same for inputs already parsed (a
**     whole prompt priced in one call from Python; see below).
**   - cc_price_actual(table, node_class, inputs, usage, hold_micro) -> micro-credits
**     from what the upstream reported: `credits_used_micro` (the
**     X-Comfy-Credits-Used header) when present; otherwise the usage counters
**     times the rule's unit prices when the rule has unit prices for a
**     reported counter; otherwise the estimate the hold was placed for.
**   - Prices in JSON are decimal strings ("0.04") parsed exactly; JSON
**     numbers with a fraction are refused (they are binary floats).
*/
#ifndef CC_PRICING_H
#define CC_PRICING_H

#include "cc_common.h"

#define CC_PRICE_RULES_MAX 4096      /* node classes in one table */
#define CC_PRICE_TABLE_BYTES_MAX (4 * 1024 * 1024)
#define CC_PRICE_INPUTS_BYTES_MAX (1024 * 1024)
#define CC_PRICE_BATCH_MARK "comfy_credits_batch" /* [mark, N]: a tensor input of batch N */
#define CC_PRICE_BATCH_MAX 4096      /* items of one tensor batch (ComfyUI's EmptyImage batch_size max) */

typedef struct cc_price_table cc_price_table;

typedef struct cc_usage {
    int64_t credits_used_micro;  /* -1 when the upstream sent no header */
    int64_t input_tokens;        /* -1 when not reported */
    int64_t output_tokens;       /* -1 when not reported */
    int64_t images;              /* -1 when not reported */
    int64_t seconds_ms;          /* -1 when not reported (video/audio length) */
} cc_usage;

void cc_usage_init(cc_usage *u); /* everything "not reported" */

typedef struct cc_price_result {
    int64_t micro;               /* credits in micro-credits, >= 0 */
    int64_t calls;               /* estimate(): upstream calls it covers, >= 1 (micro = per call x calls) */
    int used_default;            /* 1: no rule for this class, default used */
    int from_usage;              /* actual(): 1 if computed from usage/header */
    char rule[128];              /* node class of the rule used, or "default" */
    char family[64];             /* e.g. "OpenAI", "Kling"; "" if unknown */
    char model[128];             /* model name for history ("" if none) */
    char warning[256];           /* "" or why the price is approximate */
} cc_price_result;

cc_rc cc_price_table_parse(const char *json, size_t len, cc_price_table **out,
                           cc_error *err);
void cc_price_table_free(cc_price_table *t);

/* Number of rules (node classes) in the table. */
int cc_price_table_count(const cc_price_table *t);
/* Name of rule i (0 <= i < count), for listing. */
const char *cc_price_table_name(const cc_price_table *t, int i);
int cc_price_table_has(const cc_price_table *t, const char *node_class);
/* The rule's display family ("" when unknown). */
const char *cc_price_table_family(const cc_price_table *t, const char *node_class);

cc_rc cc_price_estimate(const cc_price_table *t, const char *node_class,
                        const char *inputs_json, size_t inputs_len,
                        cc_price_result *out, cc_error *err);

/* cc_price_estimate with the inputs already parsed: `inputs` is a cJSON
** object (NULL: no inputs), only read. Same result and errors as
** cc_price_estimate on the tree's JSON text, except the text-size limit
** (CC_PRICE_INPUTS_BYTES_MAX), which the caller applies. For callers that
** price a whole prompt in one pass without writing JSON text per node (the
** CPython binding's estimate_many). */
struct cJSON;
cc_rc cc_price_estimate_tree(const cc_price_table *t, const char *node_class, const struct cJSON *inputs,
                             cc_price_result *out, cc_error *err);

/* inputs_json (may be NULL) selects model-dependent unit prices the same
** way estimate() does. */
cc_rc cc_price_actual(const cc_price_table *t, const char *node_class,
                      const char *inputs_json, size_t inputs_len,
                      const cc_usage *usage, int64_t hold_micro,
                      cc_price_result *out, cc_error *err);

#endif
