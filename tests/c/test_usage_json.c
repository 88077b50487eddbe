/* test_usage_json.c — cc_usage_from_json (the one-pass scanner) against the
** shapes the upstreams send, malformed bodies, and the reference it replaced:
** the whole body parsed with cJSON and the members read from the tree
** (ref_usage below, the previous implementation, unchanged). Money is
** metered from these counters: any difference from the reference fails. */
#include "ctest.h"
#include "gateway.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

/* ---- the reference: the previous implementation (src/gateway.c before the scanner), unchanged */
static int64_t ref_num_at(const cJSON *root, const char *a, const char *b) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, a);
    if (!cJSON_IsObject(o)) return -1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, b);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e15) return -1;
    return (int64_t)v->valuedouble;
}
static int64_t ref_add_known(int64_t a, int64_t b) {
    if (a < 0) return b;
    if (b < 0) return a;
    return a + b;
}
static void ref_usage(const char *json, size_t len, cc_usage *u) {
    cc_usage_init(u);
    if (!json || len == 0) return;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return;
    if (cJSON_IsObject(root)) {
        u->input_tokens =
            ref_add_known(ref_num_at(root, "usage", "input_tokens"), ref_num_at(root, "usage", "prompt_tokens"));
        u->output_tokens =
            ref_add_known(ref_num_at(root, "usage", "output_tokens"), ref_num_at(root, "usage", "completion_tokens"));
        int64_t gi = ref_num_at(root, "usageMetadata", "promptTokenCount");
        int64_t go = ref_add_known(ref_num_at(root, "usageMetadata", "candidatesTokenCount"),
                                   ref_num_at(root, "usageMetadata", "thoughtsTokenCount"));
        u->input_tokens = ref_add_known(u->input_tokens, gi);
        u->output_tokens = ref_add_known(u->output_tokens, go);
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
        if (cJSON_IsArray(data) && (ref_num_at(root, "usage", "input_tokens") >= 0 || cJSON_GetArraySize(data) > 0)) {
            const cJSON *first = cJSON_GetArrayItem(data, 0);
            if (cJSON_IsObject(first) && (cJSON_GetObjectItemCaseSensitive(first, "b64_json") ||
                                          cJSON_GetObjectItemCaseSensitive(first, "url")))
                u->images = cJSON_GetArraySize(data);
        }
    }
    cJSON_Delete(root);
}

static int same_usage(const cc_usage *a, const cc_usage *b) {
    return a->credits_used_micro == b->credits_used_micro && a->input_tokens == b->input_tokens &&
           a->output_tokens == b->output_tokens && a->images == b->images && a->seconds_ms == b->seconds_ms;
}

/* The scanner on json[0, len) (copied into an exact-size buffer: ASan sees any read past len), checked
** against the reference; returns the scanner's result. */
static cc_usage scan_n(const char *json, size_t len) {
    char *copy = malloc(len ? len : 1);
    CHECK(copy != NULL);
    if (len) memcpy(copy, json, len);
    cc_usage got, want;
    cc_usage_from_json(copy, len, &got);
    /* cJSON may read one byte past the end (parse_string's first check): give it a terminated copy */
    char *ref = malloc(len + 1);
    CHECK(ref != NULL);
    if (len) memcpy(ref, json, len);
    ref[len] = 0;
    ref_usage(ref, len, &want);
    if (!same_usage(&got, &want)) {
        fprintf(stderr, "  differs from cJSON on %zu bytes: got in %lld out %lld img %lld, cJSON in %lld out %lld img %lld: ",
                len, (long long)got.input_tokens, (long long)got.output_tokens, (long long)got.images,
                (long long)want.input_tokens, (long long)want.output_tokens, (long long)want.images);
        for (size_t i = 0; i < len && i < 200; i++) fputc((unsigned char)json[i] >= 0x20 && json[i] != 0x7f ? json[i] : '?', stderr);
        fputc('\n', stderr);
        CHECK(0);
    }
    free(copy);
    free(ref);
    return got;
}
static cc_usage scan(const char *json) { return scan_n(json, strlen(json)); }

#define CHECK_USAGE(json, in, out, img)                                                                  \
    do {                                                                                                 \
        cc_usage u_ = scan(json);                                                                        \
        CHECK_EQ_I64(u_.input_tokens, in);                                                               \
        CHECK_EQ_I64(u_.output_tokens, out);                                                             \
        CHECK_EQ_I64(u_.images, img);                                                                    \
        CHECK_EQ_I64(u_.credits_used_micro, -1);                                                         \
        CHECK_EQ_I64(u_.seconds_ms, -1);                                                                 \
    } while (0)

/* Every answer shape the tests and the harness upstream send. */
static void test_usage_json_known_shapes(void) {
    /* tests/c/up_helper.h SMALL_JSON */
    CHECK_USAGE("{\"usage\":{\"input_tokens\":3,\"output_tokens\":5}}", 3, 5, -1);
    /* OpenAI images, gpt-image-1 (harness: data[] of b64_json + usage), n = 2 */
    CHECK_USAGE("{\"created\": 1700000000, \"data\": [{\"b64_json\": \"iVBORw0KGgo=\"}, {\"b64_json\": \"iVBORw0KGgo=\"}], "
                "\"usage\": {\"input_tokens\": 50, \"output_tokens\": 4160}}",
                50, 4160, 2);
    /* DALL-E (no usage), one image, and by URL */
    CHECK_USAGE("{\"created\": 1700000000, \"data\": [{\"b64_json\": \"AAAA\"}]}", -1, -1, 1);
    CHECK_USAGE("{\"created\": 1, \"data\": [{\"url\": \"https://x/a.png\", \"revised_prompt\": \"p\"}, {\"url\": \"u\"}, "
                "{\"url\": \"v\"}]}",
                -1, -1, 3);
    /* test_gateway.py's images answer and its Kling-like status answer */
    CHECK_USAGE("{\"data\": [{\"b64_json\": \"AAAA\"}], \"usage\": {\"input_tokens\": 7, \"output_tokens\": 9}}", 7, 9, 1);
    CHECK_USAGE("{\"status\": \"succeed\", \"usage\": {\"input_tokens\": 7, \"output_tokens\": 9}}", 7, 9, -1);
    /* OpenAI Responses object (harness response_object): nested details are not counters */
    CHECK_USAGE("{\"id\": \"resp_1\", \"object\": \"response\", \"status\": \"completed\", \"model\": \"gpt-4o\", "
                "\"output\": [{\"type\": \"message\", \"role\": \"assistant\", \"content\": [{\"type\": \"output_text\", "
                "\"text\": \"answer resp_1\"}]}], \"usage\": {\"input_tokens\": 20, \"input_tokens_details\": "
                "{\"cached_tokens\": 0}, \"output_tokens\": 30, \"output_tokens_details\": {\"reasoning_tokens\": 0}, "
                "\"total_tokens\": 50}}",
                20, 30, -1);
    /* Chat Completions (bench upstream's chat) */
    CHECK_USAGE("{\"id\": \"c1\", \"object\": \"chat.completion\", \"created\": 1, \"model\": \"bench\", \"choices\": "
                "[{\"index\": 0, \"finish_reason\": \"stop\", \"message\": {\"role\": \"assistant\", \"content\": "
                "\"ok\"}}], \"usage\": {\"prompt_tokens\": 12, \"completion_tokens\": 34, \"total_tokens\": 46}}",
                12, 34, -1);
    /* Gemini (test_gateway.py): thoughts count as output */
    CHECK_USAGE("{\"usageMetadata\": {\"promptTokenCount\": 10, \"candidatesTokenCount\": 20, \"thoughtsTokenCount\": 5}}",
                10, 25, -1);
    CHECK_USAGE("{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"hi\"}], \"role\": \"model\"}}], "
                "\"usageMetadata\": {\"promptTokenCount\": 4, \"candidatesTokenCount\": 6, \"totalTokenCount\": 10}}",
                4, 6, -1);
    /* Both families in one body add up */
    CHECK_USAGE("{\"usage\": {\"input_tokens\": 1, \"prompt_tokens\": 2, \"output_tokens\": 3, \"completion_tokens\": 4}, "
                "\"usageMetadata\": {\"promptTokenCount\": 10, \"candidatesTokenCount\": 20, \"thoughtsTokenCount\": 30}}",
                13, 57, -1);
    /* Kling submit/poll: "data" is an object (no images), no usage */
    CHECK_USAGE("{\"code\": 0, \"data\": {\"task_id\": \"task1\", \"task_status\": \"submitted\"}}", -1, -1, -1);
    CHECK_USAGE("{\"code\": 0, \"data\": {\"task_id\": \"t\", \"task_status\": \"succeed\", \"task_result\": {\"videos\": "
                "[{\"id\": \"v1\", \"url\": \"http://127.0.0.1/videos/t.mp4\", \"duration\": \"5\"}]}}}",
                -1, -1, -1);
    /* Error answers */
    CHECK_USAGE("{\"error\": {\"message\": \"content policy violation\", \"type\": \"invalid_request\"}}", -1, -1, -1);
    CHECK_USAGE("{}", -1, -1, -1);
}

/* What the members may hold, and which member counts. */
static void test_usage_json_member_rules(void) {
    CHECK_USAGE("{\"usage\": {\"input_tokens\": -5}}", -1, -1, -1);                 /* negative: not reported */
    CHECK_USAGE("{\"usage\": {\"input_tokens\": 1e15, \"output_tokens\": 1.0000001e15}}", 1000000000000000, -1, -1);
    CHECK_USAGE("{\"usage\": {\"input_tokens\": 12.9, \"output_tokens\": 1e3}}", 12, 1000, -1); /* truncated, exponent */
    CHECK_USAGE("{\"usage\": {\"input_tokens\": -0, \"output_tokens\": 0.0}}", 0, 0, -1);
    CHECK_USAGE("{\"usage\": {\"input_tokens\": 1e400}}", -1, -1, -1);                /* infinite */
    /* numbers longer than 63 characters are read whole (Debian's cJSON: CVE-2023-26819 fix) */
    CHECK_USAGE("{\"usage\": {\"input_tokens\": 1234567890123456789012345678901234567890123456789012345678901234567}}",
                -1, -1, -1);
    CHECK_USAGE("{\"usage\": {\"input_tokens\": 000000000000000000000000000000000000000000000000000000000000000000005, "
                "\"output_tokens\": 7.0000000000000000000000000000000000000000000000000000000000000000000000000000000000"
                "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000009}}",
                5, 7, -1);
    CHECK_USAGE("{\"usage\": {\"input_tokens\": \"7\", \"output_tokens\": null}}", -1, -1, -1); /* not numbers */
    CHECK_USAGE("{\"usage\": {\"input_tokens\": [7], \"output_tokens\": {\"n\": 1}}}", -1, -1, -1);
    CHECK_USAGE("{\"usage\": 5, \"data\": []}", -1, -1, -1);
    CHECK_USAGE("{\"usage\": {\"input_tokens\": 3}, \"data\": []}", 3, -1, -1);        /* empty data: no images */
    CHECK_USAGE("{\"data\": [\"a\", \"b\"]}", -1, -1, -1);                           /* data[0] not an object */
    CHECK_USAGE("{\"data\": [{\"id\": 1}, {\"url\": \"u\"}]}", -1, -1, -1);          /* only data[0] is looked at */
    CHECK_USAGE("{\"data\": [{\"url\": null}, 1, \"x\", [], {}]}", -1, -1, 5);        /* presence of the member, any value */
    CHECK_USAGE("{\"data\": {\"b64_json\": \"A\"}}", -1, -1, -1);
    /* the first member of a name counts; later ones are ignored, even when they look better */
    CHECK_USAGE("{\"usage\": null, \"usage\": {\"input_tokens\": 9}}", -1, -1, -1);
    CHECK_USAGE("{\"usage\": {\"input_tokens\": 1, \"input_tokens\": 2}}", 1, -1, -1);
    CHECK_USAGE("{\"usage\": {\"input_tokens\": \"x\", \"input_tokens\": 2}}", -1, -1, -1);
    CHECK_USAGE("{\"data\": 1, \"data\": [{\"url\": \"u\"}]}", -1, -1, -1);
    /* only top-level members: usage nested elsewhere is not the answer's */
    CHECK_USAGE("{\"x\": {\"usage\": {\"input_tokens\": 4}}, \"data\": [{\"usage\": {\"input_tokens\": 4}}]}", -1, -1, -1);
    CHECK_USAGE("[{\"usage\": {\"input_tokens\": 4}}]", -1, -1, -1);                 /* not an object at the top */
    /* names compared after decoding, up to a decoded NUL (cJSON's strcmp) */
    CHECK_USAGE("{\"us\\u0061ge\": {\"input\\u005ftokens\": 6}}", 6, -1, -1);
    CHECK_USAGE("{\"usage\\u0000junk\": {\"input_tokens\\u0000\": 6}}", 6, -1, -1);
    CHECK_USAGE("{\"usage\\u00e9\": {\"input_tokens\": 6}}", -1, -1, -1);
    CHECK_USAGE("{\"Usage\": {\"input_tokens\": 6}}", -1, -1, -1);                   /* case matters */
    CHECK_USAGE("{\"usage\": {\"input_tokens\": 6, \"candidatesTokenCount\": 3}}", 6, -1, -1); /* Gemini's only in usageMetadata */
    /* white space is any byte <= 0x20; a BOM is skipped; bytes after the value are not read */
    CHECK_USAGE("\xEF\xBB\xBF {\"usage\"\x01:\x1f{\"input_tokens\"\t:\n8}} trailing garbage ]]", 8, -1, -1);
    CHECK_USAGE("{\"usage\":{\"input_tokens\":8}}{\"usage\":{\"input_tokens\":9}}", 8, -1, -1);
    cc_usage u = scan_n("{\"usage\":{\"input_tokens\":8}}\0zz", 31);
    CHECK_EQ_I64(u.input_tokens, 8);
    u = scan_n("{\"usage\":{\"input_tokens\":8}}", 0);
    CHECK_EQ_I64(u.input_tokens, -1);
    cc_usage_from_json(NULL, 5, &u);
    CHECK_EQ_I64(u.input_tokens, -1);
}

/* A malformed body reports nothing at all, however much of it looked right. */
static void test_usage_json_malformed(void) {
    static const char *const bad[] = {
        "not json", "", " ", "{", "{\"usage\"", "{\"usage\":", "{\"usage\":{\"input_tokens\":5}",
        "{\"usage\":{\"input_tokens\":5},}", "{\"usage\":{\"input_tokens\":5,}}", "{\"usage\" {\"input_tokens\":5}}",
        "{usage:{\"input_tokens\":5}}", "{\"usage\":{\"input_tokens\":05x}}", "{\"usage\":{\"input_tokens\":+5}}",
        "{\"usage\":{\"input_tokens\":.5}}", "{\"usage\":{\"input_tokens\":5.5.5}}", "{\"usage\":{\"input_tokens\":1e}}",
        "{\"usage\":{\"input_tokens\":-}}", "{\"usage\":{\"input_tokens\":5}, \"x\": \"\\q\"}",
        "{\"usage\":{\"input_tokens\":5}, \"x\": \"\\ud800\"}", "{\"usage\":{\"input_tokens\":5}, \"x\": \"\\udc00\"}",
        "{\"usage\":{\"input_tokens\":5}, \"x\": \"\\ud800\\u0041\"}", "{\"usage\":{\"input_tokens\":5}, \"x\": \"\\u12\"}",
        "{\"usage\":{\"input_tokens\":5}, \"x\": tru}", "{\"usage\":{\"input_tokens\":5}, \"x\": nul}",
        "{\"usage\":{\"input_tokens\":5}, \"x\": [1 2]}", "{\"usage\":{\"input_tokens\":5}, \"x\": \"open}",
        "{\"usage\":{\"input_tokens\":5}, \"x\": \"a\\", "{\"usage\":{\"input_tokens\":5}] ",
        "{\"usage\":{\"input_tokens\":5}, \"x\": [}]}", "{\"usage\":{\"input_tokens\":5}, \"data\": [{\"url\":1},]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cc_usage u = scan(bad[i]);
        if (u.input_tokens != -1 || u.output_tokens != -1 || u.images != -1) {
            fprintf(stderr, "  reported usage for a malformed body: %s\n", bad[i]);
            CHECK(0);
        }
    }
    /* Every truncation of a good answer is malformed (and agrees with cJSON). */
    const char *good = "{\"created\": 1, \"data\": [{\"b64_json\": \"AA\\u0041A\"}], \"usage\": {\"input_tokens\": 50, "
                       "\"output_tokens\": 4160, \"d\": [true, false, null, -1.5e-3, {}]}}";
    size_t n = strlen(good);
    for (size_t k = 0; k < n; k++) {
        cc_usage u = scan_n(good, k);
        CHECK_EQ_I64(u.input_tokens, -1);
        CHECK_EQ_I64(u.images, -1);
    }
    cc_usage u = scan_n(good, n);
    CHECK_EQ_I64(u.input_tokens, 50);
    CHECK_EQ_I64(u.images, 1);
    /* Nesting: 1000 levels parse, 1001 do not (cJSON's limit) */
    size_t cap = 2 * 1001 + 64;
    char *deep = malloc(cap);
    CHECK(deep != NULL);
    for (int levels = 999; levels <= 1001; levels++) {
        size_t k = 0;
        k += (size_t)sprintf(deep + k, "{\"usage\":{\"input_tokens\":4},\"x\":");
        for (int i = 0; i < levels - 1; i++) deep[k++] = '[';
        for (int i = 0; i < levels - 1; i++) deep[k++] = ']';
        deep[k++] = '}';
        u = scan_n(deep, k);
        CHECK_EQ_I64(u.input_tokens, levels <= 1000 ? 4 : -1);
    }
    free(deep);
}

/* Random bodies built from the pieces that matter (the names, escapes, odd numbers, white space, every
** kind of value), then mutated (bytes flipped, cut, inserted): the scanner must agree with cJSON on every one. */
static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static unsigned rnd(unsigned n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}
static const char *pick(const char *const *a, size_t n) { return a[rnd((unsigned)n)]; }
#define PICK(a) pick(a, sizeof a / sizeof a[0])

typedef struct sbuf {
    char b[4096];
    size_t n;
} sbuf;
static void put(sbuf *s, const char *t) {
    size_t k = strlen(t);
    if (s->n + k < sizeof s->b) memcpy(s->b + s->n, t, k), s->n += k;
}
static const char *const ws_pool[] = {"", "", "", " ", "\n", "\t ", "\x01", "\r\n  "};
static const char *const name_pool[] = {
    "usage", "usageMetadata", "data", "input_tokens", "prompt_tokens", "output_tokens", "completion_tokens",
    "promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount", "b64_json", "url", "x", "",
    "us\\u0061ge", "usage\\u0000x", "dat\\u0061", "url\\u0000", "b64\\u005fjson", "Usage", "usage ", "\\u00e9",
    "input_tokens\\u0000", "\\ud83d\\ude00", "\\\"", "a\\/b", "\\uZZZZ", "\\u0"};
static const char *const num_pool[] = {
    "0", "1", "7", "12", "-0", "-5", "12.9", "1e3", "1E+2", "1e-2", "01", "1.", "-1.5e-3", "1e15", "1e16",
    "999999999999999.9", "1e400", "4160", "1234567890123456789012345678901234567890123456789012345678901234",
    "123456789012345678901234567890123456789012345678901234567890123", "-", "1e", "1e+", ".5", "+1", "1.2.3", "0x10",
    "1-2", "2e5e3"};
static const char *const str_pool[] = {"\"\"", "\"AAAA\"", "\"a\\nb\"", "\"\\u0041\"", "\"\\ud800\\udc00\"",
                                       "\"\\ud800\"", "\"\\q\"", "\"x\\\"y\"", "\"\\u12\\\"ab\"", "\"raw\x01\""};
static void gen_value(sbuf *s, int depth);
static const char *pick_number(void);
static void gen_object(sbuf *s, int depth, int top) {
    put(s, "{");
    int k = (int)rnd(top ? 5 : 4);
    for (int i = 0; i < k; i++) {
        put(s, PICK(ws_pool));
        put(s, "\"");
        unsigned ni = rnd(2) ? rnd(12) : rnd(sizeof name_pool / sizeof name_pool[0]); /* the names that matter, often */
        put(s, name_pool[ni]);
        put(s, "\"");
        put(s, PICK(ws_pool));
        put(s, ":");
        put(s, PICK(ws_pool));
        /* mostly the kind of value the name calls for: objects for usage, numbers for counters, arrays for data */
        if (ni <= 1 && rnd(4)) gen_object(s, depth + 1, 0);
        else if (ni >= 3 && ni <= 9 && rnd(4)) put(s, rnd(2) ? "12" : pick_number());
        else if (ni == 2 && rnd(4)) {
            put(s, "[{\"");
            put(s, rnd(2) ? "b64_json" : PICK(name_pool));
            put(s, "\": \"A\"}");
            for (unsigned i = rnd(3); i > 0; i--) put(s, rnd(2) ? ", 1" : ", {}");
            put(s, "]");
        } else gen_value(s, depth + 1);
        put(s, PICK(ws_pool));
        if (i + 1 < k) put(s, ",");
    }
    put(s, "}");
}
static int gen_long_numbers = 1;
static const char *pick_number(void) {
    for (;;) {
        const char *n = PICK(num_pool);
        if (gen_long_numbers || strlen(n) <= 63) return n;
    }
}
static void gen_value(sbuf *s, int depth) {
    unsigned r = depth > 4 ? rnd(4) : rnd(7);
    if (r == 0) put(s, pick_number());
    else if (r == 1) put(s, PICK(str_pool));
    else if (r == 2) put(s, rnd(3) == 0 ? "null" : rnd(2) ? "true" : "false");
    else if (r == 3) put(s, pick_number());
    else if (r <= 5) gen_object(s, depth, 0);
    else {
        put(s, "[");
        int k = (int)rnd(4);
        for (int i = 0; i < k; i++) {
            put(s, PICK(ws_pool));
            gen_value(s, depth + 1);
            if (i + 1 < k) put(s, ",");
        }
        put(s, "]");
    }
}
/* 1 when the cJSON linked here reads numbers longer than 63 characters (Debian 12's, patched). */
static int cjson_reads_long_numbers(void) {
    const char *t = "[1234567890123456789012345678901234567890123456789012345678901234]";
    cJSON *r = cJSON_ParseWithLength(t, strlen(t));
    cJSON_Delete(r);
    return r != NULL;
}
static void test_usage_json_agrees_with_cjson(void) {
    int long_numbers = cjson_reads_long_numbers();
    if (!long_numbers) fprintf(stderr, "  note: this cJSON caps numbers at 63 characters (not Debian 12's): longer ones not compared\n");
    static const char *const junk[] = {"{", "}", "[", "]", ",", ":", "\"", "\\", "0", "-", ".", "e", "n", " ", "\x00"};
    gen_long_numbers = long_numbers;
    int reported = 0, valid = 0;
    for (int it = 0; it < 40000; it++) {
        sbuf s = {.n = 0};
        if (rnd(8) == 0) put(&s, "\xEF\xBB\xBF");
        put(&s, PICK(ws_pool));
        gen_object(&s, 0, 1);
        if (rnd(4) == 0) put(&s, PICK(junk));
        int mutations = it % 3 == 0 ? 0 : (int)rnd(3);
        for (int m = 0; m < mutations && s.n > 0; m++) {
            size_t at = rnd((unsigned)s.n);
            unsigned how = rnd(4);
            if (how == 0) s.b[at] = PICK(junk)[0];
            else if (how == 1) s.n = at; /* cut */
            else if (how == 2 && s.n + 1 < sizeof s.b) {
                memmove(s.b + at + 1, s.b + at, s.n - at);
                s.b[at] = PICK(junk)[0];
                s.n++;
            } else if (s.n > 1) {
                memmove(s.b + at, s.b + at + 1, s.n - at - 1);
                s.n--;
            }
        }
        s.b[s.n] = 0;
        int failed_before = ct_cur_failed;
        ct_cur_failed = 0;
        cc_usage u = scan_n(s.b, s.n);
        if (ct_cur_failed) {
            fprintf(stderr, "  (iteration %d)\n", it);
            break; /* one example is enough */
        }
        ct_cur_failed = failed_before;
        if (u.input_tokens >= 0 || u.output_tokens >= 0 || u.images >= 0) reported++;
        cJSON *t = cJSON_ParseWithLength(s.b, s.n);
        if (t) valid++;
        cJSON_Delete(t);
    }
    /* The generator must produce both: bodies that report usage, and bodies cJSON accepts or refuses. */
    fprintf(stderr, "  %d bodies reported usage, cJSON accepted %d of 40000\n", reported, valid);
    CHECK(reported > 500);
    CHECK(valid > 4000 && valid < 39000);
}

void suite_usage_json(void) {
    RUN(test_usage_json_known_shapes);
    RUN(test_usage_json_member_rules);
    RUN(test_usage_json_malformed);
    RUN(test_usage_json_agrees_with_cjson);
}
