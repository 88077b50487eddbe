/*
** run.c — per-run money lifecycle and prompt reservations. See run.h.
**
** Two locks: `mu` guards the maps and every run's fields (short critical
** sections, never held across a ledger call); `place_mu` serialises the
** check-then-hold of reservations and run holds so that what queued prompts
** reserve is never handed to another hold in between.
**
** place_mu is never held across a ledger write: a hold being placed (its
** commit, an fsync, in flight) is counted as "placing" for its account
** until the commit returns, so admission (cc_runs_reserve, on ComfyUI's
** event loop) never waits for a disk. A placement that has already
** committed may be counted twice for a moment (in the ledger's held and as
** placing): that can only make an answer smaller, so a check that would
** refuse while the account has placements in flight waits for them and
** looks again; answers are exactly those of checking after every earlier
** placement committed.
*/
#include "run.h"
#include "farm_resv.h"
#include "i64map.h"

#include <errno.h>
#include <string.h>
#include <time.h>

enum { RUN_OPEN = 0, RUN_CLOSING = 1, RUN_CLOSED = 2 };

typedef struct run {
    int64_t id, account_id, hold_micro, hold_expires_ms;
    int64_t calls_planned;      /* upstream calls the hold covers (>= 1); hold_micro = per call x this */
    char node_class[CC_CLASS_BYTES_MAX + 1];
    char *inputs;
    size_t inputs_len;
    char prefixes[CC_RUN_PREFIXES_BYTES_MAX + 1];
    int state;
    int finishing;              /* a finish is applying the policy now */
    int in_flight, in_flight_billable;
    int64_t calls, creating_calls, billable_calls, late_calls;
    int credits_reported;
    cc_usage sum, peak;         /* creating calls add up, polls peak */
    /* The token minted for this run, while it is open (wiped when it starts
    ** closing): a call presenting exactly these bytes needs no HMAC, they are
    ** what cc_token_mint signed. Expiry is still checked on every call. */
    char token[CC_TOKEN_BYTES_MAX + 1];
    int64_t token_expires_ms;
    cc_run_result result;       /* valid once state == RUN_CLOSED */
} run;

typedef struct resv {
    char prompt_id[CC_CTX_ID_BYTES_MAX + 1];
    int64_t account_id, left;
} resv;

struct cc_runs {
    cc_ledger *ledger;
    const cc_price_table *prices;
    cc_runs_config cfg;
    cc_token_key key;

    cc_mutex_t mu, place_mu;
    cc_cond_t cv;          /* a call ended or a run closed */
    i64map runs;                /* run id -> run */
    int64_t open_count;
    int64_t closed_ring[CC_RUNS_CLOSED_KEPT_MAX];
    int closed_head, closed_count;
    i64map resvs;               /* hash(prompt id) -> resv */
    i64map acct_reserved;       /* account id -> int64_t total reserved */
    i64map acct_placing;        /* account id -> int64_t total of holds being committed */
    cc_cond_t placed_cv;        /* a placement ended */
    /* Farm mode (farm_resv.h): reservations are also rows of the shared
    ** store under this server's random id, and every check subtracts what
    ** the other servers reserve for the account. */
    int shared;
    char server[CC_SERVER_ID_BYTES + 1];
    int64_t token_macs;         /* tokens checked by their MAC (not a run's own known token) */
    int64_t (*clock_ms)(void *);  /* the runs' clock (cc_runs_set_clock), NULL: cc_now_ms */
    void *clock_ud;
};

/* The time a run's hold and token expiries are counted in. The farm's shared
** reservation rows keep cc_now_ms: other servers compare them with theirs. */
static int64_t runs_now(const cc_runs *r) { return r->clock_ms ? r->clock_ms(r->clock_ud) : cc_now_ms(); }

void cc_runs_set_clock(cc_runs *r, int64_t (*clock_ms)(void *ud), void *ud) {
    r->clock_ms = clock_ms;
    r->clock_ud = ud;
}

/* ------------------------------------------------------------ helpers */

static void run_free(void *p) {
    run *x = p;
    if (!x) return;
    free(x->inputs);
    free(x);
}

static int64_t prompt_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    h &= INT64_MAX;
    return h ? (int64_t)h : 1;
}

static void add_counter(int64_t *acc, int64_t v) {
    if (v < 0) return;
    if (*acc < 0) *acc = 0;
    *acc = (*acc > CC_AMOUNT_MAX - v) ? CC_AMOUNT_MAX : *acc + v; /* capped, never wraps */
}

static void peak_counter(int64_t *acc, int64_t v) {
    if (v > *acc) *acc = v > CC_AMOUNT_MAX ? CC_AMOUNT_MAX : v;
}

static int64_t combine(int64_t sum, int64_t pk) {
    if (sum < 0) return pk;
    if (pk < 0) return sum;
    return sum > pk ? sum : pk; /* a poll of a created task repeats its usage */
}

static void record_usage(run *x, int creating, const cc_usage *u) {
    void (*f)(int64_t *, int64_t) = creating ? add_counter : peak_counter;
    cc_usage *t = creating ? &x->sum : &x->peak;
    f(&t->input_tokens, u->input_tokens);
    f(&t->output_tokens, u->output_tokens);
    f(&t->images, u->images);
    f(&t->seconds_ms, u->seconds_ms);
}

static int64_t *acct_total(cc_runs *r, int64_t account_id, int create) {
    int64_t *t = i64map_get(&r->acct_reserved, account_id);
    if (t || !create) return t;
    t = calloc(1, sizeof *t);
    if (!t) return NULL;
    if (i64map_put(&r->acct_reserved, account_id, t) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

static void acct_sub(cc_runs *r, int64_t account_id, int64_t v) {
    if (v == 0) return;
    int64_t *t = acct_total(r, account_id, 0);
    CC_ASSERT(t && *t >= v);
    *t -= v;
    if (*t == 0) free(i64map_remove(&r->acct_reserved, account_id));
}

/* Holds of an account being committed now (mu held). */
static int64_t placing_of(cc_runs *r, int64_t account_id) {
    int64_t *t = i64map_get(&r->acct_placing, account_id);
    return t ? *t : 0;
}

static resv *resv_get(cc_runs *r, const char *prompt_id) {
    if (!prompt_id || !*prompt_id) return NULL;
    resv *v = i64map_get(&r->resvs, prompt_hash(prompt_id));
    return (v && strcmp(v->prompt_id, prompt_id) == 0) ? v : NULL;
}

static void fmt_credits(char *buf, size_t cap, int64_t micro) {
    snprintf(buf, cap, "%lld.%02lld", (long long)(micro / CC_MICRO), (long long)((micro % CC_MICRO) / 10000));
}

/* ------------------------------------------------------------ open/close */

cc_rc cc_runs_open(cc_ledger *ledger, const cc_price_table *prices, const cc_runs_config *cfg, cc_runs **out,
                   cc_error *err) {
    *out = NULL;
    if (!ledger || !prices || !cfg) return cc_fail(err, CC_ERR_INVALID, "ledger", "ledger and prices are required");
    if (cfg->hold_ttl_ms < 1 || cfg->hold_ttl_ms > CC_HOLD_TTL_MS_MAX)
        return cc_fail(err, CC_ERR_INVALID, "hold_ttl_ms", "hold_ttl_ms must be 1..%lld",
                       (long long)CC_HOLD_TTL_MS_MAX);
    if (cfg->finish_wait_ms < 0 || cfg->finish_wait_ms > CC_RUN_FINISH_WAIT_MS_MAX)
        return cc_fail(err, CC_ERR_INVALID, "finish_wait_ms", "finish_wait_ms must be 0..%d",
                       CC_RUN_FINISH_WAIT_MS_MAX);
    cc_runs *r = calloc(1, sizeof *r);
    if (!r) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    r->ledger = ledger;
    r->prices = prices;
    r->cfg = *cfg;
    r->cfg.charge_interrupted = cfg->charge_interrupted ? 1 : 0;
    cc_rc rc = cc_token_key_random(&r->key, err);
    if (rc != CC_OK) { free(r); return rc; }
    r->shared = cc_ledger_resv_shared(ledger);
    if (r->shared) {
        cc_token_key id;
        rc = cc_token_key_random(&id, err);
        if (rc != CC_OK) { free(r); return rc; }
        CC_ASSERT(CC_SERVER_ID_BYTES / 2 <= CC_TOKEN_SECRET_BYTES);
        cc_hex_encode(id.secret, CC_SERVER_ID_BYTES / 2, r->server);
        r->server[CC_SERVER_ID_BYTES] = 0;
    }
    if (i64map_init(&r->runs, CC_RUNS_OPEN_MAX + CC_RUNS_CLOSED_KEPT_MAX) != 0 ||
        i64map_init(&r->resvs, CC_RUNS_RESERVATIONS_MAX) != 0 ||
        i64map_init(&r->acct_reserved, CC_RUNS_RESERVATIONS_MAX) != 0 ||
        i64map_init(&r->acct_placing, CC_RUNS_PLACING_ACCOUNTS_MAX) != 0) {
        i64map_destroy(&r->runs, NULL);
        i64map_destroy(&r->resvs, NULL);
        i64map_destroy(&r->acct_reserved, NULL);
        i64map_destroy(&r->acct_placing, NULL);
        free(r);
        return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    cc_mutex_init(&r->mu);
    cc_mutex_init(&r->place_mu);
    cc_cond_init(&r->cv); /* monotonic timed waits (cc_platform.h) */
    cc_cond_init(&r->placed_cv);
    *out = r;
    return CC_OK;
}

void cc_runs_close(cc_runs *r) {
    if (!r) return;
    i64map_destroy(&r->runs, run_free);
    i64map_destroy(&r->resvs, free);
    i64map_destroy(&r->acct_reserved, free);
    i64map_destroy(&r->acct_placing, free);
    cc_cond_destroy(&r->cv);
    cc_cond_destroy(&r->placed_cv);
    cc_mutex_destroy(&r->mu);
    cc_mutex_destroy(&r->place_mu);
    memset(r->key.secret, 0, sizeof r->key.secret);
    free(r);
}

/* ------------------------------------------------------------ reservations */

/* Unreserved credits of an account: balance - held (- TEST credits when they
** may not pay) - what its queued prompts reserve - holds being placed
** (place_mu held, mu not). The reserved and placing totals are read before
** the ledger: none can grow meanwhile (they grow under place_mu), and a
** placement committing meanwhile is at worst counted twice. *placing is
** what was counted as placing. */
static cc_rc unreserved(cc_runs *r, int64_t account_id, int wait, int64_t *avail, int64_t *balance,
                        int64_t *placing, cc_error *err) {
    cc_mutex_lock(&r->mu);
    int64_t *t = acct_total(r, account_id, 0);
    int64_t res = t ? *t : 0;
    *placing = placing_of(r, account_id);
    cc_mutex_unlock(&r->mu);
    cc_account a;
    int busy = 0;
    int64_t others = 0;
    if (r->shared && !wait) /* a round trip to the shared store */
        return cc_fail(err, CC_ERR_STATE, "busy", "the shared reservations are read over the network");
    /* Farm mode: the other servers' reservations are read BEFORE the account.
    ** A server lowers a prompt's row only after the hold it went to committed
    ** (share_left), so a row read already lowered means that hold is in the
    ** account read after it: at worst counted twice, never missed. In the
    ** other order a hold committed and its row lowered between the two reads
    ** was counted nowhere, and both servers admitted a prompt beyond the
    ** balance (seen once in the two-server race test: 4 admitted for 3). */
    cc_rc rc = CC_OK;
    if (r->shared) rc = cc_ledger_resv_others(r->ledger, r->server, account_id, cc_now_ms(), &others, err);
    if (rc == CC_OK)
        rc = wait ? cc_ledger_account(r->ledger, account_id, &a, err)
                  : cc_ledger_account_nowait(r->ledger, account_id, &a, &busy, err); /* busy: field "busy" */
    if (rc != CC_OK) return rc;
    if (!a.active) return cc_fail(err, CC_ERR_STATE, "account_id", "account %lld is disabled", (long long)a.id);
    int64_t usable = a.balance - a.held;
    if (!cc_ledger_test_spendable(r->ledger)) /* TEST credits never pay a real upstream (ledger.h) */
        usable = usable > a.test_balance ? usable - a.test_balance : 0;
    *avail = usable - res - *placing - others;
    *balance = a.balance;
    return CC_OK;
}

/* unreserved(), exact when it matters: while `need` does not fit and the
** account has holds being placed (maybe counted twice), waits for those
** placements to end and looks again (place_mu held; placements end without
** it). With wait = 0 it returns CC_ERR_STATE with field "busy" instead of
** waiting. */
static cc_rc unreserved_for(cc_runs *r, int64_t account_id, int64_t need, int wait, int64_t *avail,
                            int64_t *balance, cc_error *err) {
    const int64_t until_ms = cc_monotonic_ms() + CC_RUN_PLACING_WAIT_MS_MAX;
    for (;;) {
        int64_t placing = 0;
        cc_rc rc = unreserved(r, account_id, wait, avail, balance, &placing, err);
        if (rc != CC_OK || placing == 0 || (*balance > 0 && *avail >= need)) return rc;
        if (!wait) return cc_fail(err, CC_ERR_STATE, "busy", "a hold of this account is being placed");
        cc_mutex_lock(&r->mu);
        int timed_out = 0;
        while (placing_of(r, account_id) > 0 && !timed_out)
            timed_out = cc_cond_timedwait_ms(&r->placed_cv, &r->mu, until_ms - cc_monotonic_ms());
        cc_mutex_unlock(&r->mu);
        if (timed_out) return unreserved(r, account_id, wait, avail, balance, &placing, err); /* conservative */
    }
}

/* Starts (+micro) or ends (-micro) a placement (mu held). */
static int placing_add(cc_runs *r, int64_t account_id, int64_t micro) {
    int64_t *t = i64map_get(&r->acct_placing, account_id);
    if (!t) {
        CC_ASSERT(micro > 0);
        if (!(t = calloc(1, sizeof *t))) return -1;
        if (i64map_put(&r->acct_placing, account_id, t) != 0) {
            free(t);
            return -1;
        }
    }
    *t += micro;
    CC_ASSERT(*t >= 0);
    if (*t == 0) {
        free(i64map_remove(&r->acct_placing, account_id));
        cc_cond_broadcast(&r->placed_cv);
    }
    return 0;
}

static cc_rc reserve(cc_runs *r, const char *prompt_id, int64_t account_id, int64_t micro, int wait,
                     cc_error *err) {
    size_t n = prompt_id ? strnlen(prompt_id, CC_CTX_ID_BYTES_MAX + 1) : 0;
    if (n == 0 || n > CC_CTX_ID_BYTES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "prompt_id", "prompt_id must be 1..%d bytes", CC_CTX_ID_BYTES_MAX);
    if (account_id <= 0) return cc_fail(err, CC_ERR_INVALID, "account_id", "account_id must be positive");
    if (micro < 0 || micro > CC_AMOUNT_MAX)
        return cc_fail(err, CC_ERR_INVALID, "micro", "a reservation must be 0..%lld", (long long)CC_AMOUNT_MAX);
    if (wait) {
        cc_mutex_lock(&r->place_mu);
    } else if (!cc_mutex_trylock(&r->place_mu)) {
        return cc_fail(err, CC_ERR_STATE, "busy", "another reservation or hold is being checked");
    }
    int64_t avail = 0, balance = 0;
    cc_rc rc = CC_OK;
    /* Farm mode: the row first, then the check. Two servers reserving for one
    ** account at once each check after their own row is visible, so the
    ** later check sees the other's row: at worst both refuse, never both
    ** admit beyond the balance. */
    if (r->shared && wait)
        rc = cc_ledger_resv_put(r->ledger, r->server, prompt_id, account_id, micro,
                                cc_now_ms() + r->cfg.hold_ttl_ms, err);
    if (rc == CC_OK) rc = unreserved_for(r, account_id, micro, wait, &avail, &balance, err);
    if (rc == CC_OK && (balance <= 0 || avail < micro)) {
        char need[32], have[32];
        fmt_credits(need, sizeof need, micro);
        fmt_credits(have, sizeof have, avail > 0 ? avail : 0);
        rc = cc_fail(err, CC_ERR_INSUFFICIENT, "amount",
                     "not enough credits: this prompt needs up to %s, available %s (credits already reserved by "
                     "queued prompts are not available)", need, have);
    }
    if (rc == CC_OK) {
        cc_mutex_lock(&r->mu);
        int64_t h = prompt_hash(prompt_id);
        resv *v = NULL;
        int64_t *t = NULL;
        if (i64map_get(&r->resvs, h)) {
            rc = cc_fail(err, CC_ERR_EXISTS, "prompt_id", "prompt %s already has a reservation", prompt_id);
        } else if (!(v = calloc(1, sizeof *v)) || !(t = acct_total(r, account_id, 1))) {
            free(v);
            rc = cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
        } else if (i64map_put(&r->resvs, h, v) != 0) {
            free(v);
            if (*t == 0) free(i64map_remove(&r->acct_reserved, account_id));
            rc = cc_fail(err, CC_ERR_LIMIT, "prompt_id", "more than %d prompts hold reservations",
                         CC_RUNS_RESERVATIONS_MAX);
        } else {
            memcpy(v->prompt_id, prompt_id, n + 1);
            v->account_id = account_id;
            v->left = micro;
            *t += micro;
        }
        cc_mutex_unlock(&r->mu);
    }
    if (rc != CC_OK && r->shared && wait && !(rc == CC_ERR_EXISTS && strcmp(err->field, "prompt_id") == 0)) {
        cc_error ignored; /* if this fails the row expires: it only ever makes answers smaller */
        cc_ledger_resv_drop(r->ledger, r->server, prompt_id, &ignored);
    }
    cc_mutex_unlock(&r->place_mu);
    return rc;
}

cc_rc cc_runs_reserve(cc_runs *r, const char *prompt_id, int64_t account_id, int64_t micro, cc_error *err) {
    return reserve(r, prompt_id, account_id, micro, 1, err);
}

cc_rc cc_runs_reserve_nowait(cc_runs *r, const char *prompt_id, int64_t account_id, int64_t micro, int *busy,
                             cc_error *err) {
    cc_rc rc = reserve(r, prompt_id, account_id, micro, 0, err);
    *busy = rc == CC_ERR_STATE && strcmp(err->field, "busy") == 0;
    return rc;
}

int64_t cc_runs_release(cc_runs *r, const char *prompt_id) {
    if (!prompt_id) return 0;
    cc_mutex_lock(&r->mu);
    resv *v = resv_get(r, prompt_id);
    int64_t left = 0;
    if (v) {
        left = v->left;
        acct_sub(r, v->account_id, v->left);
        i64map_remove(&r->resvs, prompt_hash(prompt_id));
        free(v);
    }
    cc_mutex_unlock(&r->mu);
    return left;
}

cc_rc cc_runs_unshare(cc_runs *r, const char *prompt_id, cc_error *err) {
    if (!r->shared || !prompt_id || !*prompt_id) return CC_OK;
    cc_mutex_lock(&r->mu);
    int mine = resv_get(r, prompt_id) != NULL;
    cc_mutex_unlock(&r->mu);
    if (mine) return CC_OK; /* still reserved here (not released) */
    return cc_ledger_resv_drop(r->ledger, r->server, prompt_id, err);
}

/* After a run took from (or gave back to) a prompt's reservation: the shared
** row says what is left, once the hold it went to is committed (before, the
** row would count less than the ledger holds). Failures leave the row larger
** than what is left: answers only get smaller, until the prompt ends. */
static void share_left(cc_runs *r, const char *prompt_id) {
    if (!r->shared || !prompt_id || !*prompt_id) return;
    cc_mutex_lock(&r->mu);
    resv *v = resv_get(r, prompt_id);
    int64_t left = v ? v->left : -1, acct = v ? v->account_id : 0;
    cc_mutex_unlock(&r->mu);
    cc_error ignored;
    if (left >= 0)
        cc_ledger_resv_put(r->ledger, r->server, prompt_id, acct, left, cc_now_ms() + r->cfg.hold_ttl_ms, &ignored);
}

cc_rc cc_runs_reserved_elsewhere(cc_runs *r, int64_t account_id, int64_t *out, cc_error *err) {
    *out = 0;
    if (!r->shared) return CC_OK;
    return cc_ledger_resv_others(r->ledger, r->server, account_id, cc_now_ms(), out, err);
}

int64_t cc_runs_reserved(cc_runs *r, int64_t account_id) {
    cc_mutex_lock(&r->mu);
    int64_t *t = acct_total(r, account_id, 0);
    int64_t v = (t ? *t : 0) + placing_of(r, account_id); /* a hold being committed stays reserved until it is */
    cc_mutex_unlock(&r->mu);
    return v;
}

int64_t cc_runs_reservation(cc_runs *r, const char *prompt_id) {
    cc_mutex_lock(&r->mu);
    resv *v = resv_get(r, prompt_id);
    int64_t left = v ? v->left : -1;
    cc_mutex_unlock(&r->mu);
    return left;
}

/* ------------------------------------------------------------ begin */

#define RESOLVE_KEY_BYTES 48

/* The operation that resolves a run's hold, keyed "<prefix>:<hold id>" in key. */
static void resolve_op(cc_op *op, cc_op_kind kind, const char *prefix, int64_t hold_id, const char *note,
                       char key[RESOLVE_KEY_BYTES]) {
    snprintf(key, RESOLVE_KEY_BYTES, "%s:%lld", prefix, (long long)hold_id);
    cc_op_init(op, kind);
    op->key = key;
    op->hold_id = hold_id;
    op->note = note;
}

static cc_rc ledger_void(cc_runs *r, int64_t hold_id, const char *note, cc_result *res) {
    char key[RESOLVE_KEY_BYTES];
    cc_op op;
    resolve_op(&op, CC_OP_VOID, "void", hold_id, note, key);
    return cc_ledger_execute1(r->ledger, &op, res);
}

cc_rc cc_run_begin(cc_runs *r, const cc_run_begin_args *a, cc_run_info *out, cc_error *err) {
    memset(out, 0, sizeof *out);
    if (!a || !a->key || !a->node_class || !*a->node_class)
        return cc_fail(err, CC_ERR_INVALID, "node_class", "a run needs a hold key and a node class");
    if (strlen(a->node_class) > CC_CLASS_BYTES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "node_class", "node class is longer than %d bytes", CC_CLASS_BYTES_MAX);
    size_t pl = a->prefixes ? strnlen(a->prefixes, CC_RUN_PREFIXES_BYTES_MAX + 1) : 0;
    if (pl == 0 || pl > CC_RUN_PREFIXES_BYTES_MAX)
        return cc_fail(err, CC_ERR_INVALID, "prefixes", "a run needs 1..%d bytes of path prefixes",
                       CC_RUN_PREFIXES_BYTES_MAX);
    if (a->account_id <= 0) return cc_fail(err, CC_ERR_INVALID, "account_id", "account_id must be positive");
    const char *inputs = a->inputs_json ? a->inputs_json : "{}";
    size_t ilen = a->inputs_json ? a->inputs_len : 2;
    cc_price_result est;
    cc_rc rc = cc_price_estimate(r->prices, a->node_class, inputs, ilen, &est, err);
    if (rc != CC_OK) return rc;
    int64_t w = est.micro;
    run *x = calloc(1, sizeof *x);
    char *icopy = malloc(ilen + 1);
    if (!x || !icopy) {
        free(x);
        free(icopy);
        return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    }
    memcpy(icopy, inputs, ilen);
    icopy[ilen] = '\0';

    cc_mutex_lock(&r->place_mu);
    cc_mutex_lock(&r->mu);
    int full = r->open_count >= CC_RUNS_OPEN_MAX;
    resv *v = resv_get(r, a->prompt_id);
    int64_t covered = v ? (v->left < w ? v->left : w) : 0;
    if (v && v->account_id != a->account_id) covered = 0; /* never another account's reservation */
    cc_mutex_unlock(&r->mu);
    if (full) {
        rc = cc_fail(err, CC_ERR_LIMIT, "", "more than %d API-node runs are open at once", CC_RUNS_OPEN_MAX);
    } else if (covered < w) {
        /* Beyond the prompt's reservation: only credits nobody reserved. */
        int64_t avail = 0, balance = 0;
        rc = unreserved_for(r, a->account_id, w - covered, 1, &avail, &balance, err);
        if (rc == CC_OK && (balance <= 0 || avail < w - covered)) {
            char need[32], have[32];
            fmt_credits(need, sizeof need, w);
            fmt_credits(have, sizeof have, covered + (avail > 0 ? avail : 0));
            char per[96] = "";
            if (est.calls > 1) /* a node that calls once per image of its batch (pricing.h) */
                snprintf(per, sizeof per, " (%lld images, one paid call each)", (long long)est.calls);
            rc = cc_fail(err, CC_ERR_INSUFFICIENT, "amount", "not enough credits: this run needs up to %s%s, available %s",
                         need, per, have);
        }
    }
    if (rc == CC_OK) {
        /* Counted as placing, and the covered part taken from the reservation, before
        ** place_mu is let go: the commit below runs without it. */
        cc_mutex_lock(&r->mu);
        v = resv_get(r, a->prompt_id);
        if (covered > 0 && (!v || v->account_id != a->account_id)) covered = 0; /* released meanwhile */
        if (placing_add(r, a->account_id, w) != 0) {
            rc = cc_fail(err, CC_ERR_LIMIT, "", "more than %d accounts are placing holds at once",
                         CC_RUNS_PLACING_ACCOUNTS_MAX);
        } else if (covered > 0) {
            v->left -= covered;
            acct_sub(r, v->account_id, covered);
        }
        cc_mutex_unlock(&r->mu);
    }
    cc_mutex_unlock(&r->place_mu);
    cc_result hr;
    memset(&hr, 0, sizeof hr);
    int placed = rc == CC_OK;
    if (rc == CC_OK) {
        cc_op op;
        cc_op_init(&op, CC_OP_HOLD);
        op.key = a->key;
        op.account_id = a->account_id;
        op.amount = w;
        op.ttl_ms = r->cfg.hold_ttl_ms;
        op.ctx.prompt_id = a->prompt_id;
        op.ctx.node_id = a->node_id;
        op.ctx.node_class = a->node_class;
        op.ctx.model = est.model;
        op.credential_id = a->credential_id;
        rc = cc_ledger_execute1(r->ledger, &op, &hr);
        if (rc != CC_OK) *err = hr.err;
        else if (hr.replayed) rc = cc_fail(err, CC_ERR_CONFLICT, "key", "hold key '%.64s' was used before", a->key);
    }
    if (placed) {
        cc_mutex_lock(&r->mu);
        int prc = placing_add(r, a->account_id, -w); /* the entry exists: never fails */
        CC_ASSERT(prc == 0);
        if (rc != CC_OK && covered > 0) {
            /* no hold: what it took goes back to the prompt, unless the prompt ended meanwhile */
            v = resv_get(r, a->prompt_id);
            int64_t *t = v ? acct_total(r, v->account_id, 1) : NULL;
            if (v && t) {
                v->left += covered;
                *t += covered;
            }
        }
        cc_mutex_unlock(&r->mu);
        if (covered > 0) share_left(r, a->prompt_id);
    }
    if (rc != CC_OK) {
        free(x);
        free(icopy);
        return rc;
    }

    int64_t now = runs_now(r);
    x->id = hr.hold_id;
    x->account_id = a->account_id;
    x->hold_micro = w;
    x->calls_planned = est.calls;
    CC_ASSERT(est.calls >= 1 && w % est.calls == 0);
    x->hold_expires_ms = now + r->cfg.hold_ttl_ms;
    snprintf(x->node_class, sizeof x->node_class, "%s", a->node_class);
    x->inputs = icopy;
    x->inputs_len = ilen;
    memcpy(x->prefixes, a->prefixes, pl);
    x->prefixes[pl] = '\0';
    x->state = RUN_OPEN;
    cc_usage_init(&x->sum);
    cc_usage_init(&x->peak);
    rc = cc_token_mint(&r->key, x->id, a->account_id, now + CC_RUN_TOKEN_TTL_MS, out->token, sizeof out->token, err);
    if (rc == CC_OK) {
        CC_ASSERT(strlen(out->token) < sizeof x->token);
        memcpy(x->token, out->token, strlen(out->token) + 1);
        x->token_expires_ms = now + CC_RUN_TOKEN_TTL_MS;
        cc_mutex_lock(&r->mu);
        if (i64map_put(&r->runs, x->id, x) != 0)
            rc = cc_fail(err, CC_ERR_LIMIT, "", "too many runs are tracked");
        else
            r->open_count++;
        cc_mutex_unlock(&r->mu);
    }
    if (rc != CC_OK) {
        cc_result vr;
        cc_rc vrc = ledger_void(r, x->id, "the run could not start", &vr);
        (void)vrc; /* if even this fails, expiry releases the hold; it is never charged */
        run_free(x);
        memset(out, 0, sizeof *out);
        return rc;
    }
    out->run_id = x->id;
    out->hold_micro = w;
    out->from_reservation = covered;
    out->calls_planned = est.calls;
    out->used_default = est.used_default;
    snprintf(out->model, sizeof out->model, "%s", est.model);
    return CC_OK;
}

/* ------------------------------------------------------------ calls */

static int path_allowed(const char *prefixes, const char *path) {
    const char *p = prefixes;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > 0 && strncmp(path, p, n) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* Some providers poll with POST (ComfyUI 0.3.64: /proxy/veo/<model>/poll,
** /proxy/rodin/api/v2/status and /download) and upload with POST
** (/customers/storage, /proxy/pixverse/image/upload): neither starts work. */
static int classify(const char *method, const char *path) {
    if (!strcmp(method, "GET") || !strcmp(method, "HEAD") || !strcmp(method, "DELETE")) return CC_CALL_READ;
    if (ends_with(path, "/poll") || ends_with(path, "/status") || ends_with(path, "/download")) return CC_CALL_READ;
    if (!strncmp(path, "/customers/storage", 18) || ends_with(path, "/upload")) return CC_CALL_UPLOAD;
    return CC_CALL_BILLABLE;
}

/* Keeps a run's hold alive; the ledger call happens without `mu`. */
static void extend_hold(cc_runs *r, int64_t run_id) {
    cc_op op;
    cc_op_init(&op, CC_OP_HOLD_EXTEND);
    op.hold_id = run_id;
    op.ttl_ms = r->cfg.hold_ttl_ms;
    cc_result res;
    if (cc_ledger_execute1(r->ledger, &op, &res) != CC_OK) return; /* resolved meanwhile, or storage: expiry decides */
    cc_mutex_lock(&r->mu);
    run *x = i64map_get(&r->runs, run_id);
    if (x && res.expires_ms > x->hold_expires_ms) x->hold_expires_ms = res.expires_ms;
    cc_mutex_unlock(&r->mu);
}

static cc_rc call_begin(cc_runs *r, const char *token, const char *method, const char *path, int64_t *run_id,
                        int *kind, int64_t *extend_id, cc_error *err) {
    *extend_id = 0;
    if (!method || !path) return cc_fail(err, CC_ERR_INVALID, "path", "a call needs a method and a path");
    int64_t hold_id = 0, account_id = 0, expires_ms = 0;
    int64_t now = runs_now(r);
    cc_rc rc = CC_OK;
    /* The run's own token, byte for byte: what cc_token_verify would accept
    ** (we signed exactly these bytes), so only its expiry is left to check,
    ** with the same answer. Anything else goes through the MAC. */
    int64_t named = token ? cc_token_hold_of(token) : 0;
    int known = 0;
    run *x = NULL;
    cc_mutex_lock(&r->mu);
    if (named > 0 && (x = i64map_get(&r->runs, named)) != NULL && x->token[0] && cc_token_same(token, x->token)) {
        known = 1;
        hold_id = x->id;
        account_id = x->account_id;
        expires_ms = x->token_expires_ms;
    } else {
        r->token_macs++;
    }
    cc_mutex_unlock(&r->mu);
    if (!known) rc = cc_token_verify(&r->key, token, now, &hold_id, &account_id, &expires_ms, err);
    else if (now >= expires_ms) rc = cc_fail(err, CC_ERR_STATE, "token", "hold token expired");
    if (rc != CC_OK) return rc;
    cc_mutex_lock(&r->mu);
    x = i64map_get(&r->runs, hold_id);
    int extend = 0;
    if (!x || x->account_id != account_id) {
        rc = cc_fail(err, CC_ERR_STATE, "token", "the run this token belongs to is not open");
    } else if (x->state != RUN_OPEN) {
        rc = cc_fail(err, CC_ERR_STATE, "token", "the run has finished; its token no longer works");
    } else if (!path_allowed(x->prefixes, path)) {
        rc = cc_fail(err, CC_ERR_INVALID, "path", "this run's token does not reach %.200s", path);
    } else {
        int k = classify(method, path);
        if (k == CC_CALL_BILLABLE && x->creating_calls >= x->calls_planned + CC_RUN_CREATING_CALLS_MAX - 1) {
            rc = cc_fail(err, CC_ERR_LIMIT, "token", "a run makes at most %lld creating calls",
                         (long long)(x->calls_planned + CC_RUN_CREATING_CALLS_MAX - 1));
        } else {
            x->calls++;
            x->in_flight++;
            if (k == CC_CALL_BILLABLE) {
                x->creating_calls++;
                x->in_flight_billable++;
            }
            extend = x->hold_expires_ms - now < r->cfg.hold_ttl_ms / 2;
            *run_id = x->id;
            *kind = k;
        }
    }
    cc_mutex_unlock(&r->mu);
    if (rc == CC_OK && extend) *extend_id = hold_id;
    return rc;
}

cc_rc cc_run_call_begin(cc_runs *r, const char *token, const char *method, const char *path, int64_t *run_id,
                        int *kind, cc_error *err) {
    int64_t extend_id;
    cc_rc rc = call_begin(r, token, method, path, run_id, kind, &extend_id, err);
    if (rc == CC_OK && extend_id) extend_hold(r, extend_id);
    return rc;
}

cc_rc cc_run_call_begin_nowait(cc_runs *r, const char *token, const char *method, const char *path, int64_t *run_id,
                               int *kind, int64_t *extend_id, cc_error *err) {
    return call_begin(r, token, method, path, run_id, kind, extend_id, err);
}

void cc_run_extend(cc_runs *r, int64_t run_id) {
    if (run_id > 0) extend_hold(r, run_id);
}

void cc_run_call_headers(cc_runs *r, int64_t run_id, int kind, int status, int64_t credits_used_micro) {
    if (credits_used_micro < 0 || status < 200 || status > 299) return;
    cc_mutex_lock(&r->mu);
    run *x = i64map_get(&r->runs, run_id);
    if (x && x->state != RUN_CLOSED) {
        if (kind == CC_CALL_READ) peak_counter(&x->peak.credits_used_micro, credits_used_micro);
        else add_counter(&x->sum.credits_used_micro, credits_used_micro);
        x->credits_reported = 1;
    } else if (x) {
        x->late_calls++; /* reported after the run was resolved: counted, never charged twice */
    }
    cc_mutex_unlock(&r->mu);
}

void cc_run_call_end(cc_runs *r, int64_t run_id, int kind, int status, int timed_out, const cc_usage *usage) {
    cc_mutex_lock(&r->mu);
    run *x = i64map_get(&r->runs, run_id);
    if (x) {
        CC_ASSERT(x->in_flight > 0);
        x->in_flight--;
        if (kind == CC_CALL_BILLABLE) x->in_flight_billable--;
        if (x->state == RUN_CLOSED) {
            x->late_calls++;
        } else {
            int ok = status >= 200 && status <= 299;
            if (ok && usage) record_usage(x, kind != CC_CALL_READ, usage);
            if (kind == CC_CALL_BILLABLE && (ok || (status == 0 && timed_out))) x->billable_calls++;
        }
        cc_cond_broadcast(&r->cv);
    }
    cc_mutex_unlock(&r->mu);
}

/* ------------------------------------------------------------ finish */

static void closed_push(cc_runs *r, int64_t id) {
    /* mu held */
    if (r->closed_count == CC_RUNS_CLOSED_KEPT_MAX) {
        int64_t old = r->closed_ring[r->closed_head];
        run *o = i64map_get(&r->runs, old);
        if (o && o->state == RUN_CLOSED && o->in_flight == 0) run_free(i64map_remove(&r->runs, old));
        r->closed_ring[r->closed_head] = id;
        r->closed_head = (r->closed_head + 1) % CC_RUNS_CLOSED_KEPT_MAX;
    } else {
        r->closed_ring[(r->closed_head + r->closed_count) % CC_RUNS_CLOSED_KEPT_MAX] = id;
        r->closed_count++;
    }
}

static const char *outcome_word(int o) {
    return o == CC_RUN_SUCCEEDED ? "succeeded" : o == CC_RUN_FAILED ? "failed" : "interrupted";
}

cc_rc cc_run_finish(cc_runs *r, int64_t run_id, cc_run_outcome outcome, cc_run_result *out, cc_error *err) {
    memset(out, 0, sizeof *out);
    if (outcome != CC_RUN_SUCCEEDED && outcome != CC_RUN_FAILED && outcome != CC_RUN_INTERRUPTED)
        return cc_fail(err, CC_ERR_INVALID, "outcome", "outcome must be succeeded, failed or interrupted");
    cc_mutex_lock(&r->mu);
    run *x = i64map_get(&r->runs, run_id);
    if (!x) {
        cc_mutex_unlock(&r->mu);
        return cc_fail(err, CC_ERR_NOT_FOUND, "run_id", "no run %lld", (long long)run_id);
    }
    while (x->finishing) cc_cond_wait(&r->cv, &r->mu);
    if (x->state == RUN_CLOSED) {
        *out = x->result;
        out->replayed = 1;
        cc_mutex_unlock(&r->mu);
        return CC_OK;
    }
    x->state = RUN_CLOSING; /* no new call from here on */
    memset(x->token, 0, sizeof x->token); /* and its token is checked by its MAC again (then refused) */
    x->finishing = 1;
    int64_t deadline_ms = cc_monotonic_ms() + r->cfg.finish_wait_ms;
    while (x->in_flight > 0) {
        int64_t left_ms = deadline_ms - cc_monotonic_ms();
        if (left_ms <= 0 || cc_cond_timedwait_ms(&r->cv, &r->mu, left_ms)) break;
    }

    /* The policy (run.h), on a snapshot. */
    cc_run_result res;
    memset(&res, 0, sizeof res);
    res.outcome = outcome;
    res.hold_micro = x->hold_micro;
    res.calls = x->calls;
    res.in_flight_at_deadline = x->in_flight;
    res.billable_calls = x->billable_calls + x->in_flight_billable; /* unknown answers: the upstream may have billed */
    cc_usage u;
    cc_usage_init(&u);
    u.credits_used_micro = combine(x->sum.credits_used_micro, x->peak.credits_used_micro);
    u.input_tokens = combine(x->sum.input_tokens, x->peak.input_tokens);
    u.output_tokens = combine(x->sum.output_tokens, x->peak.output_tokens);
    u.images = combine(x->sum.images, x->peak.images);
    u.seconds_ms = combine(x->sum.seconds_ms, x->peak.seconds_ms);
    int credits_reported = x->credits_reported;
    char node_class[CC_CLASS_BYTES_MAX + 1];
    memcpy(node_class, x->node_class, sizeof node_class);
    cc_mutex_unlock(&r->mu);

    int64_t billed = 0;
    cc_rc rc = CC_OK;
    if (credits_reported) {
        billed = u.credits_used_micro;
    } else if (res.billable_calls > 0) {
        cc_price_result act;
        cc_usage counters = u;
        counters.credits_used_micro = -1;
        rc = cc_price_actual(r->prices, node_class, x->inputs, x->inputs_len, &counters, x->hold_micro, &act, err);
        if (rc == CC_OK) {
            if (act.from_usage) billed = act.micro;
            else if (cc_mul_i64(x->hold_micro / x->calls_planned, res.billable_calls, &billed)) billed = CC_AMOUNT_MAX;
        }
    }
    if (billed > CC_AMOUNT_MAX) billed = CC_AMOUNT_MAX;
    res.billed = billed;
    res.usage = u;
    int waive = outcome == CC_RUN_INTERRUPTED && !r->cfg.charge_interrupted;
    if (billed == 0)
        snprintf(res.reason, sizeof res.reason, "%s; the provider billed nothing, so the run is free",
                 outcome == CC_RUN_INTERRUPTED ? "interrupted before the provider started the task"
                                               : outcome_word(outcome));
    else if (outcome == CC_RUN_INTERRUPTED)
        snprintf(res.reason, sizeof res.reason, "interrupted after the provider started the task%s",
                 waive ? "; not charged (operator setting)" : "");
    else if (outcome == CC_RUN_FAILED)
        snprintf(res.reason, sizeof res.reason, "failed after the provider accepted the request");
    else
        res.reason[0] = '\0';

    cc_result lr;
    memset(&lr, 0, sizeof lr);
    if (rc == CC_OK) {
        if (billed == 0) {
            rc = ledger_void(r, run_id, res.reason, &lr);
        } else {
            char key[RESOLVE_KEY_BYTES];
            cc_op op;
            resolve_op(&op, CC_OP_SETTLE, "settle", run_id, res.reason, key);
            op.amount = billed;
            op.charge_max = waive ? 0 : -1;
            op.usage.tokens_in = u.input_tokens;
            op.usage.tokens_out = u.output_tokens;
            op.usage.images = u.images;
            op.usage.seconds_ms = u.seconds_ms;
            rc = cc_ledger_execute1(r->ledger, &op, &lr);
            res.settled = rc == CC_OK;
        }
        if (rc == CC_OK) {
            res.charged = -lr.delta;
            res.uncollected = lr.uncollected;
        } else if (rc == CC_ERR_STATE) {
            /* Resolved elsewhere (expired while nobody kept it alive): what
            ** the upstream billed could not be collected. */
            res.hold_lost = 1;
            res.settled = 0;
            res.charged = 0;
            res.uncollected = billed;
            rc = CC_OK;
        } else {
            *err = lr.err;
        }
    }

    cc_mutex_lock(&r->mu);
    x->finishing = 0;
    if (rc == CC_OK) {
        res.late_calls = x->late_calls;
        x->result = res;
        x->state = RUN_CLOSED;
        r->open_count--;
        closed_push(r, run_id);
        *out = res;
    }
    /* else: stays closing; a later finish retries with the same keys */
    cc_cond_broadcast(&r->cv);
    cc_mutex_unlock(&r->mu);
    return rc;
}

/* ------------------------------------------------------------ keepalive, counts */

#define KEEPALIVE_PER_CALL_MAX 4096

int cc_runs_keepalive(cc_runs *r) {
    int64_t *ids = malloc(sizeof(int64_t) * KEEPALIVE_PER_CALL_MAX);
    if (!ids) return 0;
    int n = 0;
    int64_t now = runs_now(r);
    cc_mutex_lock(&r->mu);
    for (size_t i = 0; i <= r->runs.mask && n < KEEPALIVE_PER_CALL_MAX; i++) {
        run *x = r->runs.keys[i] ? r->runs.vals[i] : NULL;
        if (x && x->state != RUN_CLOSED && x->hold_expires_ms - now < r->cfg.hold_ttl_ms / 2) ids[n++] = x->id;
    }
    cc_mutex_unlock(&r->mu);
    for (int i = 0; i < n; i++) extend_hold(r, ids[i]);
    free(ids);
    if (r->shared) { /* this server's shared reservations live on; dead servers' ones go */
        cc_error ignored;
        int64_t wall = cc_now_ms(); /* shared rows: the wall clock (runs_now) */
        cc_ledger_resv_renew(r->ledger, r->server, wall, wall + r->cfg.hold_ttl_ms, &ignored);
    }
    return n;
}

int64_t cc_runs_token_macs(cc_runs *r) {
    cc_mutex_lock(&r->mu);
    int64_t n = r->token_macs;
    cc_mutex_unlock(&r->mu);
    return n;
}

void cc_runs_counts(cc_runs *r, int64_t *open, int64_t *closed, int64_t *reservations) {
    cc_mutex_lock(&r->mu);
    *open = r->open_count;
    *closed = (int64_t)r->runs.count - r->open_count;
    *reservations = (int64_t)r->resvs.count;
    cc_mutex_unlock(&r->mu);
}
