/* test_platform.c — the platform layer (src/cc_platform.h): the portable
** 128-bit integers against __int128 (exhaustive edge cases + random), known
** answers that need no __int128 (MSVC), checked int64 arithmetic, threads,
** mutexes, condition variables, once, clocks, files; and i64map. Runs on
** Linux (ctest, ctest-portable) and as a Windows .exe under wine
** (scripts/check-portable). */
#include "ctest.h"
#include "cc_common.h"
#include "i64map.h"
#include "money.h"

#include <stdlib.h>

/* ------------------------------------------------------------ 128 bits */

static const int64_t EDGE[] = {
    0, 1, -1, 2, -2, 3, -3, 7, 9, 10, -10, 255, 1000, -1000, 999999, 1000000, -1000000,
    INT64_C(4294967295), INT64_C(4294967296), INT64_C(4294967297), -INT64_C(4294967296),
    -INT64_C(4294967297), INT64_C(1) << 62, -(INT64_C(1) << 62), INT64_C(1000000000000000),
    INT64_C(1000000000000000000), -INT64_C(1000000000000000000), INT64_C(3037000499),
    INT64_C(3037000500), INT64_MAX / 2, INT64_MIN / 2, INT64_MAX - 1, INT64_MIN + 1, INT64_MAX,
    INT64_MIN};
#define NEDGE ((int)(sizeof EDGE / sizeof EDGE[0]))

static uint64_t rng_state = UINT64_C(0x9E3779B97F4A7C15);
static uint64_t rng(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}
static int64_t rng_i64(void) {
    uint64_t u = rng();
    int bits = (int)(rng() % 64) + 1; /* every magnitude, not only huge ones */
    u = bits == 64 ? u : u & ((UINT64_C(1) << bits) - 1);
    int64_t v = (int64_t)(u >> 1);
    return (rng() & 1) ? -v : v;
}

static int eq_p(cc_i128p a, uint64_t hi, uint64_t lo) { return a.hi == hi && a.lo == lo; }

/* Known answers, checked wherever the tests run (no __int128 needed). */
static void i128_known_answers(void) {
    cc_i128p max = cc_i128p_from_i64(INT64_MAX), min = cc_i128p_from_i64(INT64_MIN);
    CHECK(eq_p(cc_i128p_from_i64(-1), UINT64_MAX, UINT64_MAX));
    CHECK(eq_p(cc_i128p_mul(max, max), UINT64_C(0x3FFFFFFFFFFFFFFF), 1));
    CHECK(eq_p(cc_i128p_mul(min, min), UINT64_C(0x4000000000000000), 0));
    CHECK(eq_p(cc_i128p_mul(min, max), UINT64_C(0xC000000000000000), UINT64_C(0x8000000000000000)));
    CHECK(eq_p(cc_i128p_mul(cc_i128p_from_i64(-1), min), 0, UINT64_C(0x8000000000000000)));
    CHECK(eq_p(cc_i128p_add(max, cc_i128p_from_i64(1)), 0, UINT64_C(0x8000000000000000)));
    CHECK(eq_p(cc_i128p_sub(min, cc_i128p_from_i64(1)), UINT64_MAX, UINT64_C(0x7FFFFFFFFFFFFFFF)));
    cc_i128p q, r;
    /* (2^126) / INT64_MIN = -2^63, remainder 0 */
    cc_i128p_divmod(cc_i128p_mul(min, min), min, &q, &r);
    CHECK(eq_p(q, UINT64_MAX, UINT64_C(0x8000000000000000)) && eq_p(r, 0, 0));
    /* truncation toward zero, remainder takes the dividend's sign */
    cc_i128p_divmod(cc_i128p_from_i64(-7), cc_i128p_from_i64(2), &q, &r);
    CHECK(cc_i128p_cmp(q, cc_i128p_from_i64(-3)) == 0 && cc_i128p_cmp(r, cc_i128p_from_i64(-1)) == 0);
    cc_i128p_divmod(cc_i128p_from_i64(7), cc_i128p_from_i64(-2), &q, &r);
    CHECK(cc_i128p_cmp(q, cc_i128p_from_i64(-3)) == 0 && cc_i128p_cmp(r, cc_i128p_from_i64(1)) == 0);
    /* (INT64_MAX^2 + 5) / INT64_MAX = INT64_MAX rem 5 */
    cc_i128p_divmod(cc_i128p_add(cc_i128p_mul(max, max), cc_i128p_from_i64(5)), max, &q, &r);
    CHECK(cc_i128p_cmp(q, max) == 0 && cc_i128p_cmp(r, cc_i128p_from_i64(5)) == 0);
    /* INT128_MIN / 1 and / 2 */
    cc_i128p i128min = {0, UINT64_C(0x8000000000000000)};
    cc_i128p_divmod(i128min, cc_i128p_from_i64(1), &q, &r);
    CHECK(eq_p(q, UINT64_C(0x8000000000000000), 0) && eq_p(r, 0, 0));
    cc_i128p_divmod(i128min, cc_i128p_from_i64(2), &q, &r);
    CHECK(eq_p(q, UINT64_C(0xC000000000000000), 0) && eq_p(r, 0, 0));
    int64_t v = 0;
    CHECK(cc_i128p_to_i64(min, &v) == 0 && v == INT64_MIN);
    CHECK(cc_i128p_to_i64(max, &v) == 0 && v == INT64_MAX);
    CHECK(cc_i128p_to_i64(cc_i128p_add(max, cc_i128p_from_i64(1)), &v) == 1);
    CHECK(cc_i128p_to_i64(cc_i128p_sub(min, cc_i128p_from_i64(1)), &v) == 1);
    CHECK(cc_i128p_cmp(min, max) < 0 && cc_i128p_cmp(max, min) > 0 && cc_i128p_cmp(min, min) == 0);
    CHECK(cc_i128p_cmp(cc_i128p_from_i64(-1), cc_i128p_from_i64(0)) < 0);
    CHECK(cc_i128p_cmp(cc_i128p_mul(max, max), max) > 0);
    CHECK(cc_i128p_cmp(cc_i128p_mul(min, max), min) < 0);
}

#if defined(__SIZEOF_INT128__)
__extension__ typedef __int128 ref_i128;          /* the reference */
__extension__ typedef unsigned __int128 ref_u128;
/* The fallback against the compiler's __int128 (gcc and clang, also
** mingw-w64 gcc): every operation on the same inputs. */
static int same(cc_i128p p, ref_i128 n) {
    ref_u128 u = (ref_u128)n;
    return p.lo == (uint64_t)u && p.hi == (uint64_t)(u >> 64);
}
static cc_i128p to_p(ref_i128 n) {
    ref_u128 u = (ref_u128)n;
    cc_i128p p = {(uint64_t)u, (uint64_t)(u >> 64)};
    return p;
}
static int n_compared;
static void compare_one(ref_i128 a, ref_i128 b) {
    cc_i128p pa = to_p(a), pb = to_p(b);
    int ok = same(cc_i128p_add(pa, pb), (ref_i128)((ref_u128)a + (ref_u128)b)) &&
             same(cc_i128p_sub(pa, pb), (ref_i128)((ref_u128)a - (ref_u128)b)) &&
             same(cc_i128p_mul(pa, pb), (ref_i128)((ref_u128)a * (ref_u128)b)) &&
             cc_i128p_cmp(pa, pb) == ((a > b) - (a < b));
    ref_i128 i128min = (ref_i128)((ref_u128)1 << 127);
    if (b != 0 && !(a == i128min && b == -1)) {
        cc_i128p q, r;
        cc_i128p_divmod(pa, pb, &q, &r);
        ok = ok && same(q, a / b) && same(r, a % b);
    }
    int64_t v = 0;
    int fits = a >= INT64_MIN && a <= INT64_MAX;
    ok = ok && cc_i128p_to_i64(pa, &v) == !fits && (!fits || v == (int64_t)a);
    n_compared++;
    if (!ok) {
        fprintf(stderr, "FAIL i128 fallback differs: a=%016llx%016llx b=%016llx%016llx\n",
                (unsigned long long)pa.hi, (unsigned long long)pa.lo, (unsigned long long)pb.hi,
                (unsigned long long)pb.lo);
        ct_cur_failed = 1;
    }
}

static void i128_fallback_equals_int128(void) {
    n_compared = 0;
    /* 1. every pair of edge values, as int64 */
    for (int i = 0; i < NEDGE; i++)
        for (int j = 0; j < NEDGE; j++) {
            compare_one(EDGE[i], EDGE[j]);
            CHECK(same(cc_i128p_from_i64(EDGE[i]), EDGE[i]));
        }
    /* 2. 128-bit operands: products of edge pairs (up to 2^126) and +-1 around
    ** each, against edge values and other products; then INT128_MIN/MAX. */
    for (int i = 0; i < NEDGE; i++)
        for (int j = i; j < NEDGE; j++) {
            ref_i128 p = (ref_i128)EDGE[i] * EDGE[j];
            for (int k = 0; k < NEDGE; k++) {
                compare_one(p, EDGE[k]);
                compare_one(p + 1, EDGE[k]);
                compare_one(p - 1, EDGE[k]);
                compare_one(EDGE[k], p);
                compare_one(p, (ref_i128)EDGE[k] * EDGE[(k + i) % NEDGE]);
            }
        }
    ref_i128 i128min = (ref_i128)((ref_u128)1 << 127), i128max = ~i128min;
    for (int k = 0; k < NEDGE; k++) {
        compare_one(i128min, EDGE[k]);
        compare_one(i128max, EDGE[k]);
        compare_one(EDGE[k], i128min);
        compare_one(EDGE[k], i128max);
    }
    compare_one(i128min, i128max);
    compare_one(i128max, i128min);
    compare_one(i128max, i128max);
    /* 3. random operands of every magnitude */
    for (int n = 0; n < 200000; n++) {
        ref_i128 a = (ref_i128)rng_i64() * (rng() & 1 ? rng_i64() : 1) + rng_i64();
        ref_i128 b = (rng() & 3) ? (ref_i128)rng_i64() : (ref_i128)rng_i64() * rng_i64();
        compare_one(a, b);
    }
    CHECK(n_compared > 250000);
}

/* Rounding on the money path with both representations: half-up muldiv
** computed by ref_i128 and by the fallback, as money.c does. */
static void i128_half_up_rounding_matches(void) {
    for (int n = 0; n < 100000; n++) {
        int64_t a = llabs(rng_i64()), b = llabs(rng_i64()), d = llabs(rng_i64()) + 1;
        if (a < 0 || b < 0 || d <= 0) continue; /* llabs(INT64_MIN) */
        ref_i128 num = (ref_i128)a * b, q = num / d, r = num % d;
        if (2 * r >= d) q += 1;
        cc_i128p pq, pr;
        cc_i128p_divmod(cc_i128p_mul(cc_i128p_from_i64(a), cc_i128p_from_i64(b)), cc_i128p_from_i64(d), &pq, &pr);
        if (cc_i128p_cmp(cc_i128p_add(pr, pr), cc_i128p_from_i64(d)) >= 0) pq = cc_i128p_add(pq, cc_i128p_from_i64(1));
        if (!same(pq, q)) { CHECK(same(pq, q)); break; }
    }
}
#endif

/* The money functions that use cc_i128, at their edges (both builds). */
static void i128_money_edges(void) {
    int64_t v = 0;
    cc_error e;
    CHECK(cc_muldiv_half_up(INT64_MAX, 1, 1, &v, &e) == CC_OK && v == INT64_MAX);
    CHECK(cc_muldiv_half_up(INT64_MAX, INT64_MAX, INT64_MAX, &v, &e) == CC_OK && v == INT64_MAX);
    CHECK(cc_muldiv_half_up(INT64_MAX, 2, 1, &v, &e) == CC_ERR_INVALID);
    CHECK(cc_muldiv_half_up(INT64_MAX, INT64_MAX, 1, &v, &e) == CC_ERR_INVALID);
    CHECK(cc_muldiv_half_up(0, INT64_MAX, 7, &v, &e) == CC_OK && v == 0);
    CHECK(cc_muldiv_half_up(5, 1, 2, &v, &e) == CC_OK && v == 3);   /* 2.5 -> 3 */
    CHECK(cc_muldiv_half_up(7, 1, 3, &v, &e) == CC_OK && v == 2);   /* 2.33 -> 2 */
    CHECK(cc_muldiv_half_up(8, 1, 3, &v, &e) == CC_OK && v == 3);   /* 2.67 -> 3 */
    /* (2^63-1) * 3 / 2 = 13835058055282163710.5 -> overflow; /4 fits */
    CHECK(cc_muldiv_half_up(INT64_MAX, 3, 2, &v, &e) == CC_ERR_INVALID);
    CHECK(cc_muldiv_half_up(INT64_MAX, 3, 4, &v, &e) == CC_OK && v == INT64_C(6917529027641081855)); /* .25 down */
    CHECK(cc_muldiv_half_up(INT64_MAX - 1, 1, 2, &v, &e) == CC_OK && v == INT64_MAX / 2); /* exact */
    CHECK(cc_muldiv_half_up(INT64_MAX, 1, 2, &v, &e) == CC_OK && v == INT64_MAX / 2 + 1); /* .5 up */
    CHECK(cc_muldiv_half_up(-1, 1, 1, &v, &e) == CC_ERR_INVALID);
    CHECK(cc_muldiv_half_up(1, 1, 0, &v, &e) == CC_ERR_INVALID);
    /* parsing: the bound is CC_BALANCE_MAX after scaling */
    CHECK(cc_decimal_to_scaled("1000000000000.000000", 6, &v, "p", &e) == CC_OK && v == CC_BALANCE_MAX);
    CHECK(cc_decimal_to_scaled("-1000000000000", 6, &v, "p", &e) == CC_OK && v == -CC_BALANCE_MAX);
    CHECK(cc_decimal_to_scaled("1000000000000.000001", 6, &v, "p", &e) == CC_ERR_INVALID);
    CHECK(cc_decimal_to_scaled("1000000000000000000", 0, &v, "p", &e) == CC_OK && v == CC_BALANCE_MAX);
    CHECK(cc_decimal_to_scaled("1000000000000000001", 0, &v, "p", &e) == CC_ERR_INVALID);
    CHECK(cc_decimal_to_scaled("0000000000000000000000000000000000000001", 0, &v, "p", &e) == CC_OK && v == 1);
    CHECK(cc_decimal_to_scaled("170141183460469231731687303715884105728", 0, &v, "p", &e) == CC_ERR_INVALID);
    CHECK(cc_decimal_to_scaled("340282366920938463463374607431768211457", 0, &v, "p", &e) == CC_ERR_INVALID);
    CHECK(cc_decimal_to_scaled("0.000000001", 9, &v, "p", &e) == CC_OK && v == 1);
}

/* ------------------------------------------------------------ checked int64 */

static void checked_arithmetic_fallback_equals_builtins(void) {
    for (int i = 0; i < NEDGE; i++)
        for (int j = 0; j < NEDGE; j++) {
            int64_t a = EDGE[i], b = EDGE[j], r1 = 11, r2 = 11;
            int o1 = cc_add_overflow_i64_(a, b, &r1), o2 = cc_add_i64(a, b, &r2);
            CHECK(o1 == o2 && (o1 || r1 == r2));
            r1 = r2 = 11;
            o1 = cc_sub_overflow_i64_(a, b, &r1), o2 = cc_sub_i64(a, b, &r2);
            CHECK(o1 == o2 && (o1 || r1 == r2));
            r1 = r2 = 11;
            o1 = cc_mul_overflow_i64_(a, b, &r1), o2 = cc_mul_i64(a, b, &r2);
            CHECK(o1 == o2 && (o1 || r1 == r2));
            /* against exact 128-bit results */
            cc_i128 s = cc_i128_add(cc_i128_from_i64(a), cc_i128_from_i64(b)), m = cc_i128_mul_i64(a, b);
            int64_t x;
            CHECK(cc_add_overflow_i64_(a, b, &r1) == cc_i128_to_i64(s, &x));
            CHECK(cc_mul_overflow_i64_(a, b, &r1) == cc_i128_to_i64(m, &x));
        }
    CHECK(cc_strcasecmp("UsD", "usd") == 0 && cc_strcasecmp("usd", "eur") != 0);
    CHECK(cc_strncasecmp("WECHAT_pay", "wechat_PAY_x", 10) == 0);
}

/* ------------------------------------------------------------ threads */

#define THREADS_N 8
#define INCREMENTS_N 20000

static cc_mutex_t static_mu = CC_MUTEX_INIT;
static int64_t counter;

static void *incr_main(void *arg) {
    for (int i = 0; i < INCREMENTS_N; i++) {
        cc_mutex_lock(&static_mu);
        counter++;
        cc_mutex_unlock(&static_mu);
    }
    return arg;
}

static cc_once_t once = CC_ONCE_INIT;
static int once_runs;
static void once_fn(void) {
    cc_sleep_ms(20); /* the others must wait for it, not skip it */
    once_runs++;
}
static void *once_main(void *arg) {
    cc_once(&once, once_fn);
    return once_runs == 1 ? arg : NULL;
}

typedef struct queue {
    cc_mutex_t mu;
    cc_cond_t cv;
    int items, taken, closed;
} queue;

static void *consumer_main(void *arg) {
    queue *q = arg;
    int mine = 0;
    cc_mutex_lock(&q->mu);
    for (;;) {
        while (q->items == 0 && !q->closed) cc_cond_wait(&q->cv, &q->mu);
        if (q->items == 0) break;
        q->items--;
        q->taken++;
        mine++;
    }
    cc_mutex_unlock(&q->mu);
    return (void *)(intptr_t)mine;
}

static void threads_mutex_cond_once(void) {
    cc_thread_t th[THREADS_N];
    counter = 0;
    for (int i = 0; i < THREADS_N; i++) CHECK(cc_thread_create(&th[i], incr_main, &th[i]) == 0);
    for (int i = 0; i < THREADS_N; i++) {
        void *ret = NULL;
        CHECK(cc_thread_join(th[i], &ret) == 0);
        CHECK(ret == &th[i]);
    }
    CHECK_EQ_I64(counter, (int64_t)THREADS_N * INCREMENTS_N);

    for (int i = 0; i < THREADS_N; i++) CHECK(cc_thread_create(&th[i], once_main, &th[i]) == 0);
    for (int i = 0; i < THREADS_N; i++) {
        void *ret = NULL;
        CHECK(cc_thread_join(th[i], &ret) == 0);
        CHECK(ret == &th[i]);
    }
    CHECK_EQ_I64(once_runs, 1);

    queue q;
    memset(&q, 0, sizeof q);
    cc_mutex_init(&q.mu);
    cc_cond_init(&q.cv);
    for (int i = 0; i < 4; i++) CHECK(cc_thread_create(&th[i], consumer_main, &q) == 0);
    for (int n = 0; n < 1000; n++) {
        cc_mutex_lock(&q.mu);
        q.items++;
        if (n % 3) cc_cond_signal(&q.cv); else cc_cond_broadcast(&q.cv);
        cc_mutex_unlock(&q.mu);
    }
    cc_mutex_lock(&q.mu);
    q.closed = 1;
    cc_cond_broadcast(&q.cv);
    cc_mutex_unlock(&q.mu);
    int64_t sum = 0;
    for (int i = 0; i < 4; i++) {
        void *ret = NULL;
        CHECK(cc_thread_join(th[i], &ret) == 0);
        sum += (intptr_t)ret;
    }
    CHECK_EQ_I64(sum, 1000);
    CHECK_EQ_I64(q.taken, 1000);
    cc_cond_destroy(&q.cv);
    cc_mutex_destroy(&q.mu);
}

typedef struct waker { queue *q; int64_t after_ms; } waker;
static void *waker_main(void *arg) {
    waker *w = arg;
    cc_sleep_ms(w->after_ms);
    cc_mutex_lock(&w->q->mu);
    w->q->items = 1;
    cc_cond_signal(&w->q->cv);
    cc_mutex_unlock(&w->q->mu);
    return NULL;
}

static void threads_timed_wait_and_clocks(void) {
    queue q;
    memset(&q, 0, sizeof q);
    cc_mutex_init(&q.mu);
    cc_cond_init(&q.cv);
    /* nobody signals: times out, after at least the timeout (monotonic) */
    cc_mutex_lock(&q.mu);
    int64_t t0 = cc_monotonic_ms(), deadline = t0 + 120;
    int timed_out = 0;
    while (!timed_out && q.items == 0) {
        int64_t left = deadline - cc_monotonic_ms();
        timed_out = left <= 0 || cc_cond_timedwait_ms(&q.cv, &q.mu, left);
    }
    int64_t waited = cc_monotonic_ms() - t0;
    cc_mutex_unlock(&q.mu);
    CHECK(timed_out);
    CHECK(waited >= 110 && waited < 5000);
    cc_mutex_lock(&q.mu);
    t0 = cc_monotonic_ms();
    int r = cc_cond_timedwait_ms(&q.cv, &q.mu, -5); /* negative = no wait */
    cc_mutex_unlock(&q.mu);
    CHECK(r == 1 && cc_monotonic_ms() - t0 < 1000);

    /* signalled well before a long timeout: wakes, does not time out */
    waker w = {&q, 50};
    cc_thread_t th;
    cc_mutex_lock(&q.mu);
    CHECK(cc_thread_create(&th, waker_main, &w) == 0);
    t0 = cc_monotonic_ms();
    deadline = t0 + 10000;
    timed_out = 0;
    while (!timed_out && q.items == 0) {
        int64_t left = deadline - cc_monotonic_ms();
        timed_out = left <= 0 || cc_cond_timedwait_ms(&q.cv, &q.mu, left);
    }
    waited = cc_monotonic_ms() - t0;
    cc_mutex_unlock(&q.mu);
    CHECK(cc_thread_join(th, NULL) == 0);
    CHECK(!timed_out && q.items == 1);
    CHECK(waited < 5000);
    cc_cond_destroy(&q.cv);
    cc_mutex_destroy(&q.mu);

    /* clocks: wall clock after 2026-01-01, monotonic advances with sleep */
    CHECK(cc_realtime_ms() > INT64_C(1767225600000));
    CHECK(cc_now_ms() / 1000 == cc_realtime_ms() / 1000 || cc_now_ms() - cc_realtime_ms() < 2000);
    int64_t m0 = cc_monotonic_ms();
    cc_sleep_ms(60);
    int64_t m1 = cc_monotonic_ms();
    CHECK(m1 - m0 >= 50 && m1 - m0 < 5000);
    cc_sleep_ms(0);
    cc_sleep_ms(-1);
}

static void files(void) {
    char path[64];
    snprintf(path, sizeof path, "cc_platform_test_%lld.tmp", (long long)(cc_realtime_ms() % 1000000));
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) fclose(f);
    CHECK(cc_is_regular_file(path) == 1);
    remove(path);
    CHECK(cc_is_regular_file(path) == 0);
    CHECK(cc_is_regular_file(".") == 0); /* a directory */
    /* a UTF-8 path with a non-ASCII name (Windows: converted to UTF-16) */
#if defined(_WIN32)
    FILE *g = _wfopen(L"cc_platform_t\u00e9st.tmp", L"w");
#else
    FILE *g = fopen("cc_platform_t\xc3\xa9st.tmp", "w");
#endif
    CHECK(g != NULL);
    if (g) fclose(g);
    CHECK(cc_is_regular_file("cc_platform_t\xc3\xa9st.tmp") == 1);
    CHECK(cc_is_regular_file("cc_platform_t\xe9st.tmp") == 0); /* not UTF-8: no such file */
#if defined(_WIN32)
    _wremove(L"cc_platform_t\u00e9st.tmp");
#else
    remove("cc_platform_t\xc3\xa9st.tmp");
#endif
    CHECK(cc_is_regular_file("") == 0);
}

/* ------------------------------------------------------------ i64map */

static void i64map_bounded_and_correct(void) {
    i64map m;
    CHECK(i64map_init(&m, 100) == 0);
    static int vals[201];
    for (int i = 1; i <= 100; i++) CHECK(i64map_put(&m, i * INT64_C(1000003), &vals[i]) == 0);
    CHECK(i64map_put(&m, INT64_MAX, &vals[0]) == -1); /* full: refused, not grown */
    CHECK(i64map_put(&m, 5 * INT64_C(1000003), &vals[200]) == 0); /* replace is allowed when full */
    CHECK(i64map_get(&m, 5 * INT64_C(1000003)) == &vals[200]);
    for (int i = 1; i <= 100; i += 2) CHECK(i64map_remove(&m, i * INT64_C(1000003)) != NULL);
    for (int i = 1; i <= 100; i++) {
        void *want = i % 2 ? NULL : (i == 5 ? &vals[200] : &vals[i]);
        CHECK(i64map_get(&m, i * INT64_C(1000003)) == want);
    }
    CHECK(i64map_get(&m, INT64_MAX) == NULL);
    CHECK(i64map_remove(&m, 424242) == NULL);
    CHECK(i64map_put(&m, INT64_MAX, &vals[0]) == 0);
    CHECK(i64map_get(&m, INT64_MAX) == &vals[0]);
    i64map_destroy(&m, NULL);
}

/* Loopback sockets: listen, connect, accept, both directions, non-blocking reads, the peer's close. */
static void loopback_sockets(void) {
    cc_socket_t l, c, a = CC_SOCKET_INVALID;
    int port = 0, e = 0;
    CHECK(cc_sock_listen_loopback(0, 16, &l, &port, &e) == 0 && port > 0);
    char buf[64];
    CHECK(cc_sock_accept(l, &a) == 0); /* nothing pending: at once, not blocking */
    c = cc_sock_connect_loopback(port, 5000);
    CHECK(c != CC_SOCKET_INVALID);
    for (int i = 0; i < 500 && a == CC_SOCKET_INVALID; i++) {
        if (cc_sock_accept(l, &a) == 1) break;
        cc_sleep_ms(10);
    }
    CHECK(a != CC_SOCKET_INVALID);
    CHECK(cc_sock_recv(a, buf, sizeof buf) == CC_SOCK_AGAIN); /* non-blocking */
    CHECK(cc_sock_send(c, "ping", 4) == 4);
    int64_t got = CC_SOCK_AGAIN;
    for (int i = 0; i < 500 && got == CC_SOCK_AGAIN; i++) {
        got = cc_sock_recv(a, buf, sizeof buf);
        if (got == CC_SOCK_AGAIN) cc_sleep_ms(10);
    }
    CHECK(got == 4 && memcmp(buf, "ping", 4) == 0);
    CHECK(cc_sock_send(a, "pong!", 5) == 5);
    CHECK(cc_sock_recv(c, buf, sizeof buf) == 5 && memcmp(buf, "pong!", 5) == 0);
    cc_sock_close(c);
    got = CC_SOCK_AGAIN;
    for (int i = 0; i < 500 && got == CC_SOCK_AGAIN; i++) {
        got = cc_sock_recv(a, buf, sizeof buf);
        if (got == CC_SOCK_AGAIN) cc_sleep_ms(10);
    }
    CHECK(got == 0 || got == -1); /* closed (or reset) by the peer */
    cc_sock_close(a);
    cc_sock_close(l);
    CHECK(cc_sock_connect_loopback(port, 100) == CC_SOCKET_INVALID); /* nobody listens any more */
}

/* One event for tag among ev[0, n), or NULL. */
static const cc_poll_event *poll_find(const cc_poll_event *ev, int n, uint64_t tag) {
    for (int i = 0; i < n; i++)
        if (ev[i].tag == tag) return &ev[i];
    return NULL;
}

static void *poll_waker_main(void *arg) {
    cc_sleep_ms(50);
    cc_poller_wake(arg);
    return NULL;
}

/* The poller (epoll, or the poll/WSAPoll fallback): tags, interest changes,
** level-triggered readiness, removal, the peer's close, wake-ups from another thread, capacity. */
static void poller_sockets(void) {
    printf("  poller: %s\n",
#if defined(__linux__) && !defined(CC_NO_EPOLL)
           "epoll"
#elif defined(CC_OS_WINDOWS)
           "WSAPoll"
#else
           "poll"
#endif
    );
    cc_socket_t l, c, a = CC_SOCKET_INVALID;
    int port = 0, e = 0;
    CHECK(cc_sock_listen_loopback(0, 16, &l, &port, &e) == 0);
    cc_poller *p = cc_poller_open(2);
    CHECK(p != NULL);
    if (!p) return;
    cc_poll_event ev[8];
    CHECK(cc_poller_add(p, l, CC_POLL_IN, 7) == 0);
    CHECK(cc_poller_add(p, l, CC_POLL_IN, 7) != 0); /* already watched */
    CHECK(cc_poller_wait(p, ev, 8, 0) == 0);        /* nothing pending */
    c = cc_sock_connect_loopback(port, 5000);
    CHECK(c != CC_SOCKET_INVALID);
    int n = cc_poller_wait(p, ev, 8, 5000);
    CHECK(n == 1 && ev[0].tag == 7 && (ev[0].events & CC_POLL_IN));
    CHECK(cc_sock_accept(l, &a) == 1);
    CHECK(cc_poller_add(p, a, CC_POLL_IN, 42) == 0);
    CHECK(cc_poller_add(p, c, CC_POLL_IN, 43) != 0); /* full: two sockets at most */
    /* Nothing to read on a; the listening socket has nothing pending: a timeout. */
    int64_t t0 = cc_monotonic_ms();
    CHECK(cc_poller_wait(p, ev, 8, 100) == 0);
    CHECK(cc_monotonic_ms() - t0 >= 90);
    CHECK(cc_sock_send(c, "hi", 2) == 2);
    n = cc_poller_wait(p, ev, 8, 5000);
    CHECK(n == 1 && poll_find(ev, n, 42) && (poll_find(ev, n, 42)->events & CC_POLL_IN));
    /* Level-triggered: still reported until read. */
    n = cc_poller_wait(p, ev, 8, 0);
    CHECK(n == 1 && poll_find(ev, n, 42));
    char buf[16];
    CHECK(cc_sock_recv(a, buf, sizeof buf) == 2);
    CHECK(cc_poller_wait(p, ev, 8, 0) == 0);
    /* Interest and tag change: writable at once. */
    CHECK(cc_poller_mod(p, a, CC_POLL_IN | CC_POLL_OUT, 99) == 0);
    n = cc_poller_wait(p, ev, 8, 5000);
    CHECK(n == 1 && poll_find(ev, n, 99) && (poll_find(ev, n, 99)->events & CC_POLL_OUT) &&
          !(poll_find(ev, n, 99)->events & CC_POLL_IN));
    CHECK(cc_poller_mod(p, c, CC_POLL_IN, 1) != 0); /* not watched */
    /* Removed: not reported even when ready. */
    cc_poller_del(p, a);
    CHECK(cc_sock_send(c, "x", 1) == 1);
    cc_sleep_ms(20);
    CHECK(cc_poller_wait(p, ev, 8, 0) == 0);
    cc_poller_del(p, l);
    CHECK(cc_poller_add(p, a, CC_POLL_IN, 5) == 0);
    CHECK(cc_poller_add(p, c, CC_POLL_IN, 6) == 0); /* room again */
    n = cc_poller_wait(p, ev, 8, 5000);
    CHECK(n == 1 && poll_find(ev, n, 5));
    CHECK(cc_sock_recv(a, buf, sizeof buf) == 1);
    /* The peer's close: readable (the read finds the end). */
    cc_poller_del(p, c);
    cc_sock_close(c);
    n = cc_poller_wait(p, ev, 8, 5000);
    CHECK(n == 1 && poll_find(ev, n, 5) && (poll_find(ev, n, 5)->events & CC_POLL_IN));
    int64_t r = cc_sock_recv(a, buf, sizeof buf);
    CHECK(r == 0 || r == -1);
    cc_poller_del(p, a);
    cc_sock_close(a);
    /* Wake-ups: a pending one ends the next wait at once; many are one; another thread's ends a wait. */
    cc_poller_wake(p);
    cc_poller_wake(p);
    t0 = cc_monotonic_ms();
    CHECK(cc_poller_wait(p, ev, 8, 5000) == 0);
    CHECK(cc_monotonic_ms() - t0 < 1000);
    t0 = cc_monotonic_ms();
    CHECK(cc_poller_wait(p, ev, 8, 100) == 0); /* consumed: this one times out */
    CHECK(cc_monotonic_ms() - t0 >= 90);
    cc_thread_t th;
    CHECK(cc_thread_create(&th, poll_waker_main, p) == 0);
    t0 = cc_monotonic_ms();
    CHECK(cc_poller_wait(p, ev, 8, 10000) == 0);
    CHECK(cc_monotonic_ms() - t0 < 5000);
    cc_thread_join(th, NULL);
    cc_poller_close(p);
    cc_sock_close(l);
}

void suite_platform(void) {
    /* which implementations this build uses (scripts/check-portable reads it) */
    printf("platform: i128=%s overflow=%s threads=%s\n",
#if defined(CC_HAVE_INT128)
           "native",
#else
           "fallback",
#endif
#if defined(CC_HAVE_BUILTIN_OVERFLOW)
           "builtin",
#else
           "plain",
#endif
#if defined(CC_THREADS_WIN32)
           "win32");
#else
           "pthreads");
#endif
    RUN(i128_known_answers);
#if defined(__SIZEOF_INT128__)
    RUN(i128_fallback_equals_int128);
    RUN(i128_half_up_rounding_matches);
#endif
    RUN(i128_money_edges);
    RUN(checked_arithmetic_fallback_equals_builtins);
    RUN(threads_mutex_cond_once);
    RUN(threads_timed_wait_and_clocks);
    RUN(files);
    RUN(loopback_sockets);
    RUN(poller_sockets);
    RUN(i64map_bounded_and_correct);
}
