/*
** farm_resv.c — prompt reservations shared by the servers of a farm. See farm_resv.h.
*/
#include "farm_resv.h"
#include "ledger_int.h"

int cc_ledger_resv_shared(cc_ledger *l) { return l && l->writer->v->resv_put != NULL; }

#define WITH_READER(call)                                   \
    do {                                                    \
        CC_ASSERT(cc_ledger_resv_shared(l));                \
        int slot_;                                          \
        cc_conn *c = ledger_reader_take(l, &slot_);         \
        cc_rc rc_ = (call);                                 \
        ledger_reader_give(l, slot_);                       \
        return rc_;                                         \
    } while (0)

cc_rc cc_ledger_resv_put(cc_ledger *l, const char *server, const char *prompt_id, int64_t account_id, int64_t left,
                         int64_t expires_ms, cc_error *err) {
    CC_ASSERT(left >= 0 && account_id > 0);
    WITH_READER(c->v->resv_put(c, server, prompt_id, account_id, left, expires_ms, err));
}

cc_rc cc_ledger_resv_drop(cc_ledger *l, const char *server, const char *prompt_id, cc_error *err) {
    WITH_READER(c->v->resv_drop(c, server, prompt_id, err));
}

cc_rc cc_ledger_resv_others(cc_ledger *l, const char *server, int64_t account_id, int64_t now_ms, int64_t *sum,
                            cc_error *err) {
    *sum = 0;
    WITH_READER(c->v->resv_others(c, server, account_id, now_ms, sum, err));
}

cc_rc cc_ledger_resv_renew(cc_ledger *l, const char *server, int64_t now_ms, int64_t expires_ms, cc_error *err) {
    WITH_READER(c->v->resv_renew(c, server, now_ms, expires_ms, err));
}
