/*
** attention.c — needs-attention purchases in the ledger's store. See attention.h.
*/
#include "attention.h"
#include "commit.h"

#include <ctype.h>

/* Copies at most cap - 1 bytes, never ending inside a UTF-8 sequence. */
static void cut_copy(char *dst, size_t cap, const char *src) {
    size_t n = src ? strlen(src) : 0;
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80) n--; /* src[n] starts the cut-off part */
    }
    if (n) memcpy(dst, src, n);
    dst[n] = 0;
}

static int blank(const char *s) {
    for (; *s; s++)
        if (!isspace((unsigned char)*s)) return 0;
    return 1;
}

typedef struct att_job {
    const cc_attention *rec;    /* record: the verdict */
    const char *session_id;     /* resolve */
    const char *note;
    cc_attention *out;
    int changed;
    cc_rc rc;
    cc_error err;
} att_job;

static cc_rc att_apply(cc_ledger *l, cc_conn *w, void *arg, int64_t now, int64_t *nops, cc_error *why) {
    (void)l;
    att_job *j = arg;
    cc_error_clear(&j->err);
    cc_rc rc;
    if (j->rec) {
        cc_attention a = *j->rec;
        a.last_ms = now;
        rc = w->v->attention_record(w, &a, &j->err);
        if (rc == CC_OK) rc = w->v->attention_get(w, a.session_id, j->out, &j->err);
    } else {
        rc = w->v->attention_resolve(w, j->session_id, j->note, now, &j->changed, &j->err);
        if (rc == CC_OK && !j->changed)
            rc = cc_fail(&j->err, CC_ERR_NOT_FOUND, "session_id", "no open needs-attention purchase %.80s",
                         j->session_id);
        if (rc == CC_OK) rc = w->v->attention_get(w, j->session_id, j->out, &j->err);
    }
    *nops = rc == CC_OK;
    return ledger_outcome(rc, &j->rc, &j->err, why);
}

static void att_fail(void *arg, const cc_error *why) {
    att_job *j = arg;
    ledger_rolled_back(&j->rc, &j->err, why);
}

static cc_rc att_run(cc_ledger *l, att_job *j, cc_error *err) {
    cc_commit_job job = {.apply = att_apply, .fail = att_fail, .arg = j, .nops = 1};
    ledger_commit(l, &job);
    if (j->rc != CC_OK && err) *err = j->err;
    return j->rc;
}

cc_rc cc_ledger_attention_record(cc_ledger *l, const cc_attention *a, cc_attention *out, cc_error *err) {
    if (!l) return cc_fail(err, CC_ERR_INVALID, "ledger", "ledger is closed");
    size_t n = a ? strnlen(a->session_id, CC_REF_BYTES_MAX + 1) : 0;
    if (n == 0 || n > CC_REF_BYTES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "session_id", "a checkout session id is 1..%d bytes", CC_REF_BYTES_MAX);
    cc_attention rec;
    memset(&rec, 0, sizeof rec);
    memcpy(rec.session_id, a->session_id, n + 1);
    rec.account_id = a->account_id > 0 ? a->account_id : 0;
    rec.amount_minor = a->amount_minor;
    rec.credits_micro = a->credits_micro;
    cut_copy(rec.currency, sizeof rec.currency, a->currency);
    cut_copy(rec.method, sizeof rec.method, a->method);
    cut_copy(rec.reason, sizeof rec.reason, *a->reason ? a->reason : "unknown");
    cc_attention tmp;
    att_job j = {.rec = &rec, .out = out ? out : &tmp};
    return att_run(l, &j, err);
}

cc_rc cc_ledger_attention_resolve(cc_ledger *l, const char *session_id, const char *note, cc_attention *out,
                                  cc_error *err) {
    if (!l) return cc_fail(err, CC_ERR_INVALID, "ledger", "ledger is closed");
    size_t n = session_id ? strnlen(session_id, CC_REF_BYTES_MAX + 1) : 0;
    if (n == 0 || n > CC_REF_BYTES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "session_id", "a checkout session id is 1..%d bytes", CC_REF_BYTES_MAX);
    size_t m = note ? strnlen(note, CC_ATTENTION_NOTE_BYTES_MAX + 1) : 0;
    if (m == 0 || m > CC_ATTENTION_NOTE_BYTES_MAX || blank(note))
        return cc_fail(err, CC_ERR_INVALID, "note", "say how it was settled (1..%d bytes)",
                       CC_ATTENTION_NOTE_BYTES_MAX);
    cc_attention tmp;
    att_job j = {.session_id = session_id, .note = note, .out = out ? out : &tmp};
    return att_run(l, &j, err);
}

cc_rc cc_ledger_attention_get(cc_ledger *l, const char *session_id, cc_attention *out, cc_error *err) {
    if (!l) return cc_fail(err, CC_ERR_INVALID, "ledger", "ledger is closed");
    size_t n = session_id ? strnlen(session_id, CC_REF_BYTES_MAX + 1) : 0;
    if (n == 0 || n > CC_REF_BYTES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "session_id", "a checkout session id is 1..%d bytes", CC_REF_BYTES_MAX);
    int slot;
    cc_conn *c = ledger_reader_take(l, &slot);
    cc_rc rc = c->v->attention_get(c, session_id, out, err);
    ledger_reader_give(l, slot);
    return rc;
}

cc_rc cc_ledger_attention_list(cc_ledger *l, int include_resolved, cc_attention *out, int cap, int *n_out,
                               cc_error *err) {
    *n_out = 0;
    if (!l) return cc_fail(err, CC_ERR_INVALID, "ledger", "ledger is closed");
    if (cap < 1 || cap > CC_ATTENTION_LIST_MAX)
        return cc_fail(err, CC_ERR_INVALID, "limit", "limit must be 1..%d", CC_ATTENTION_LIST_MAX);
    int slot;
    cc_conn *c = ledger_reader_take(l, &slot);
    cc_rc rc = c->v->attention_list(c, include_resolved != 0, out, cap, n_out, err);
    ledger_reader_give(l, slot);
    return rc;
}
