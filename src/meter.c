/*
** meter.c — per-hold usage totals. See meter.h.
*/
#include "meter.h"
#include "i64map.h"

#include <pthread.h>

typedef struct slot {
    cc_usage sum;   /* creating calls, added */
    cc_usage peak;  /* reads, largest seen */
    int64_t calls;
} slot;

struct cc_meter {
    pthread_mutex_t mu;
    i64map map;
};

cc_rc cc_meter_open(cc_meter **out, cc_error *err) {
    cc_meter *m = calloc(1, sizeof *m);
    if (!m || i64map_init(&m->map, CC_METER_HOLDS_MAX) != 0) {
        free(m);
        return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return CC_OK;
}

void cc_meter_close(cc_meter *m) {
    if (!m) return;
    i64map_destroy(&m->map, free);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static void add(int64_t *acc, int64_t v) {
    if (v < 0) return;
    if (*acc < 0) *acc = 0;
    /* Counters are capped rather than overflowing: a cap is still "a lot". */
    *acc = (*acc > CC_AMOUNT_MAX - v) ? CC_AMOUNT_MAX : *acc + v;
}

static void peak(int64_t *acc, int64_t v) {
    if (v > *acc) *acc = v > CC_AMOUNT_MAX ? CC_AMOUNT_MAX : v;
}

cc_rc cc_meter_record(cc_meter *m, int64_t hold_id, int creating, const cc_usage *u, cc_error *err) {
    if (hold_id <= 0) return cc_fail(err, CC_ERR_INVALID, "hold_id", "hold_id must be positive");
    pthread_mutex_lock(&m->mu);
    slot *s = i64map_get(&m->map, hold_id);
    if (!s) {
        s = malloc(sizeof *s);
        if (!s) {
            pthread_mutex_unlock(&m->mu);
            return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
        }
        cc_usage_init(&s->sum);
        cc_usage_init(&s->peak);
        s->calls = 0;
        if (i64map_put(&m->map, hold_id, s) != 0) {
            pthread_mutex_unlock(&m->mu);
            free(s);
            return cc_fail(err, CC_ERR_LIMIT, "hold_id", "more than %d runs are being metered at once",
                           CC_METER_HOLDS_MAX);
        }
    }
    s->calls++;
    void (*f)(int64_t *, int64_t) = creating ? add : peak;
    cc_usage *t = creating ? &s->sum : &s->peak;
    f(&t->credits_used_micro, u->credits_used_micro);
    f(&t->input_tokens, u->input_tokens);
    f(&t->output_tokens, u->output_tokens);
    f(&t->images, u->images);
    f(&t->seconds_ms, u->seconds_ms);
    pthread_mutex_unlock(&m->mu);
    return CC_OK;
}

static int64_t combine(int64_t sum, int64_t pk) {
    if (sum < 0) return pk;
    if (pk < 0) return sum;
    return sum > pk ? sum : pk; /* a poll of a created task repeats its usage */
}

void cc_meter_take(cc_meter *m, int64_t hold_id, cc_usage *out, int64_t *calls) {
    cc_usage_init(out);
    *calls = 0;
    if (hold_id <= 0) return;
    pthread_mutex_lock(&m->mu);
    slot *s = i64map_remove(&m->map, hold_id);
    pthread_mutex_unlock(&m->mu);
    if (!s) return;
    out->credits_used_micro = combine(s->sum.credits_used_micro, s->peak.credits_used_micro);
    out->input_tokens = combine(s->sum.input_tokens, s->peak.input_tokens);
    out->output_tokens = combine(s->sum.output_tokens, s->peak.output_tokens);
    out->images = combine(s->sum.images, s->peak.images);
    out->seconds_ms = combine(s->sum.seconds_ms, s->peak.seconds_ms);
    *calls = s->calls;
    free(s);
}
