/* caps.c — spending caps per account (see caps.h). */
#include "caps.h"
#include "commit.h"

#include <stdio.h>
#include <time.h>

#define DAY_MS INT64_C(86400000)

/* ---------------------------------------------------------------- calendar (UTC, proleptic Gregorian) */

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int64_t *m, int64_t *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

int64_t cc_caps_day(int64_t ms) { return ms >= 0 ? ms / DAY_MS : -((-ms + DAY_MS - 1) / DAY_MS); }

int64_t cc_caps_month(int64_t ms) {
    int64_t y, m, d;
    civil_from_days(cc_caps_day(ms), &y, &m, &d);
    return y * 12 + m - 1;
}

int64_t cc_caps_month_start_ms(int64_t month) {
    int64_t y = month >= 0 ? month / 12 : -((-month + 11) / 12);
    return days_from_civil(y, month - y * 12 + 1, 1) * DAY_MS;
}

void cc_caps_init(cc_account *a) {
    a->cap_daily = a->cap_monthly = a->own_cap_daily = a->own_cap_monthly = CC_CAP_NONE;
    a->cap_day = a->cap_day_used = a->cap_month = a->cap_month_used = 0;
}

/* ---------------------------------------------------------------- the rule */

static int64_t effective(int64_t admin, int64_t own, int *own_binds) {
    *own_binds = own != CC_CAP_NONE && (admin == CC_CAP_NONE || own < admin);
    return *own_binds ? own : admin;
}

/* The account's counters moved to the windows of `now`. */
static void roll(cc_account *a, int64_t now) {
    int64_t day = cc_caps_day(now), month = cc_caps_month(now);
    if (a->cap_day != day) { a->cap_day = day; a->cap_day_used = 0; }
    if (a->cap_month != month) { a->cap_month = month; a->cap_month_used = 0; }
}

static void fmt_credits(char *out, size_t cap, int64_t micro) {
    if (micro < 0) micro = 0;
    int64_t whole = micro / CC_MICRO, frac = micro % CC_MICRO;
    if (frac % 10000 == 0) snprintf(out, cap, "%lld.%02lld", (long long)whole, (long long)(frac / 10000));
    else snprintf(out, cap, "%lld.%06lld", (long long)whole, (long long)frac);
}

static void fmt_time(char *out, size_t cap, int64_t ms) {
    int64_t y, m, d;
    civil_from_days(cc_caps_day(ms), &y, &m, &d);
    snprintf(out, cap, "%04lld-%02lld-%02lld 00:00 UTC", (long long)y, (long long)m, (long long)d);
}

static cc_rc refuse(cc_error *err, int daily, int own, int64_t cap, int64_t used, int64_t amount,
                    int64_t reset_ms) {
    char c[48], u[48], n[48], t[64];
    fmt_credits(c, sizeof c, cap);
    fmt_credits(u, sizeof u, used);
    fmt_credits(n, sizeof n, amount);
    fmt_time(t, sizeof t, reset_ms);
    return cc_fail(err, CC_ERR_INSUFFICIENT, daily ? "cap_daily" : "cap_monthly",
                   "%s spending cap reached: %s %s cap is %s credits per UTC %s; %s are used or held %s and this "
                   "run needs up to %s. It resets at %s.",
                   daily ? "daily" : "monthly", own ? "your own" : "the operator's", daily ? "daily" : "monthly", c,
                   daily ? "day" : "month", u, daily ? "today" : "this month", n, t);
}

cc_rc cc_caps_check(const cc_account *acct, int64_t amount, int64_t now, cc_error *err) {
    cc_account a = *acct;
    roll(&a, now);
    int own;
    int64_t cap = effective(a.cap_daily, a.own_cap_daily, &own);
    int64_t after;
    if (cap != CC_CAP_NONE && (cc_add_i64(a.cap_day_used, amount, &after) || after > cap))
        return refuse(err, 1, own, cap, a.cap_day_used, amount, (a.cap_day + 1) * DAY_MS);
    cap = effective(a.cap_monthly, a.own_cap_monthly, &own);
    if (cap != CC_CAP_NONE && (cc_add_i64(a.cap_month_used, amount, &after) || after > cap))
        return refuse(err, 0, own, cap, a.cap_month_used, amount, cc_caps_month_start_ms(a.cap_month + 1));
    return CC_OK;
}

static int64_t add_sat(int64_t a, int64_t b) {
    int64_t r;
    return cc_add_i64(a, b, &r) ? INT64_MAX : r;
}

cc_rc cc_caps_admit(cc_account *a, int64_t amount, int64_t now, cc_error *err) {
    CC_ASSERT(amount >= 0);
    cc_rc rc = cc_caps_check(a, amount, now, err);
    if (rc != CC_OK) return rc;
    roll(a, now);
    a->cap_day_used = add_sat(a->cap_day_used, amount);
    a->cap_month_used = add_sat(a->cap_month_used, amount);
    return CC_OK;
}

void cc_caps_release(cc_account *a, int64_t placed_ms, int64_t released, int64_t now) {
    CC_ASSERT(released >= 0);
    roll(a, now);
    if (cc_caps_day(placed_ms) == a->cap_day)
        a->cap_day_used = a->cap_day_used > released ? a->cap_day_used - released : 0;
    if (cc_caps_month(placed_ms) == a->cap_month)
        a->cap_month_used = a->cap_month_used > released ? a->cap_month_used - released : 0;
}

void cc_caps_room(const cc_account *acct, int64_t now, int64_t *daily_left, int64_t *monthly_left) {
    cc_account a = *acct;
    roll(&a, now);
    int own;
    int64_t cap = effective(a.cap_daily, a.own_cap_daily, &own);
    *daily_left = cap == CC_CAP_NONE ? CC_CAP_NONE : cap > a.cap_day_used ? cap - a.cap_day_used : 0;
    cap = effective(a.cap_monthly, a.own_cap_monthly, &own);
    *monthly_left = cap == CC_CAP_NONE ? CC_CAP_NONE : cap > a.cap_month_used ? cap - a.cap_month_used : 0;
}

/* ---------------------------------------------------------------- setting caps (one job of the group commit) */

typedef struct caps_job {
    int64_t account_id, daily, monthly;
    int who;
    cc_rc rc;
    cc_error err;
    cc_account out;
} caps_job;

static cc_rc check_cap(int64_t v, const char *field, cc_error *err) {
    if (v != CC_CAP_NONE && (v < 0 || v > CC_AMOUNT_MAX))
        return cc_fail(err, CC_ERR_INVALID, field, "%s must be 0..%lld micro-credits, or none", field,
                       (long long)CC_AMOUNT_MAX);
    return CC_OK;
}

static cc_rc apply_caps(cc_ledger *l, cc_conn *w, void *arg, int64_t now, int64_t *nops, cc_error *why) {
    caps_job *j = arg;
    *nops = 1;
    cc_acct_slot *s = NULL;
    cc_rc rc = ledger_acct_load(l, w, j->account_id, &s, &j->err);
    if (rc == CC_ERR_NOT_FOUND) rc = cc_fail(&j->err, rc, "account_id", "no account with id %lld",
                                             (long long)j->account_id);
    if (rc == CC_OK) {
        cc_account a = s->a;
        if (j->who == CC_CAPS_OWN) {
            /* A person may only lower what the operator allows. */
            char c[48];
            if (a.cap_daily != CC_CAP_NONE && j->daily != CC_CAP_NONE && j->daily > a.cap_daily) {
                fmt_credits(c, sizeof c, a.cap_daily);
                rc = cc_fail(&j->err, CC_ERR_INVALID, "daily", "your daily cap may not be above the operator's "
                             "(%s credits)", c);
            } else if (a.cap_monthly != CC_CAP_NONE && j->monthly != CC_CAP_NONE && j->monthly > a.cap_monthly) {
                fmt_credits(c, sizeof c, a.cap_monthly);
                rc = cc_fail(&j->err, CC_ERR_INVALID, "monthly", "your monthly cap may not be above the operator's "
                             "(%s credits)", c);
            }
            else {
                a.own_cap_daily = j->daily;
                a.own_cap_monthly = j->monthly;
            }
        } else {
            a.cap_daily = j->daily;
            a.cap_monthly = j->monthly;
        }
        if (rc == CC_OK) {
            a.updated_ms = now;
            ledger_acct_store(l, s, &a);
            j->out = a;
        }
    }
    return ledger_outcome(rc, &j->rc, &j->err, why);
}

static void fail_caps(void *arg, const cc_error *why) {
    caps_job *j = arg;
    ledger_rolled_back(&j->rc, &j->err, why);
}

cc_rc cc_ledger_set_caps(cc_ledger *l, int64_t account_id, cc_caps_who who, int64_t daily, int64_t monthly,
                         cc_account *out, cc_error *err) {
    if (!l) return cc_fail(err, CC_ERR_INVALID, "ledger", "ledger is closed");
    TRY(ledger_check_id(account_id, "account_id", err));
    if (who != CC_CAPS_ADMIN && who != CC_CAPS_OWN) return cc_fail(err, CC_ERR_INVALID, "who", "admin or own");
    TRY(check_cap(daily, "daily", err));
    TRY(check_cap(monthly, "monthly", err));
    caps_job *j = calloc(1, sizeof *j);
    if (!j) return cc_fail(err, CC_ERR_NOMEM, "", "out of memory");
    j->account_id = account_id;
    j->who = who;
    j->daily = daily;
    j->monthly = monthly;
    cc_commit_job job = {.apply = apply_caps, .fail = fail_caps, .arg = j, .nops = 1};
    ledger_commit(l, &job);
    cc_rc rc = j->rc;
    if (rc != CC_OK && err) *err = j->err;
    if (rc == CC_OK && out) *out = j->out;
    free(j);
    return rc;
}
