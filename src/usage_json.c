/*
** usage_json.c — usage counters from an upstream's JSON answer in one pass,
** with cJSON 1.7.15's grammar and none of its allocations. See usage_json.h.
**
** Why not cJSON: building the whole tree of every answer (a node and a
** string copy per member) to read at most eight members was ~8k
** instructions of the gateway's ~110k per call. The scanner below walks the
** same grammar cJSON's parse_value/parse_object/parse_array/parse_string/
** parse_number accept (their quirks included: bytes <= 0x20 are white
** space, \u escapes with bad hex digits decode as 0, trailing bytes after
** the value are ignored, ...), so a body cJSON refused reports nothing here
** either, and it decodes only the names of the members it may need.
*/
#include "usage_json.h"

#include <locale.h>
#include <stdlib.h>
#include <string.h>

/* What a value is for, decided by the member (or element) that holds it. */
enum {
    SLOT_NONE,
    SLOT_ROOT,
    SLOT_USAGE,  /* the first top-level "usage" */
    SLOT_META,   /* the first top-level "usageMetadata" */
    SLOT_DATA,   /* the first top-level "data" */
    SLOT_DATA0,  /* data[0] */
    SLOT_NUM     /* SLOT_NUM + k: counter k, below */
};
/* Roles of the containers on the stack (an object or array opened in a slot keeps its slot as its role). */

/* Counters, in the order of `counter_names`; usage's first, then usageMetadata's. */
enum { C_INPUT, C_PROMPT, C_OUTPUT, C_COMPLETION, C_META_PROMPT, C_META_CANDIDATES, C_META_THOUGHTS, C_N };
static const char *const counter_names[C_N] = {"input_tokens",     "prompt_tokens",        "output_tokens",
                                               "completion_tokens", "promptTokenCount", "candidatesTokenCount",
                                               "thoughtsTokenCount"};

#define NAME_BYTES_MAX 24 /* longest name we compare ("candidatesTokenCount") + margin */

typedef struct scan {
    const unsigned char *b;
    size_t len, off;
    /* what was found (used only if the whole value parses) */
    int seen_usage, seen_meta, seen_data;
    unsigned seen_counter;      /* bit k: counter k's first member was met */
    int64_t counter[C_N];
    int64_t data_n;             /* elements of the "data" array */
    int data0_object, data0_image;
} scan;

/* cJSON's buffer_skip_whitespace: bytes <= 32 are white space; reaching the
** end leaves the offset on the last byte (a white space: whatever comes next fails). */
static void skip_ws(scan *s) {
    if (s->off >= s->len) return;
    while (s->off < s->len && s->b[s->off] <= 32) s->off++;
    if (s->off == s->len) s->off--;
}

static unsigned hex4(const unsigned char *p) { /* cJSON's parse_hex4: a bad digit makes the whole code 0 */
    unsigned h = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else return 0;
        h = (h << 4) | d;
    }
    return h;
}

/* The decoded name, as far as cJSON's strcmp would read it (up to a NUL). */
typedef struct name {
    char text[NAME_BYTES_MAX];
    size_t n;
    int stopped, too_long;
} name;

static void emit(name *nm, unsigned c) {
    if (!nm || nm->stopped) return;
    if (c == 0) nm->stopped = 1;
    else if (nm->n < sizeof nm->text) nm->text[nm->n++] = (char)c;
    else nm->too_long = 1;
}

static int name_is(const name *nm, const char *want) {
    size_t k = strlen(want);
    return !nm->too_long && nm->n == k && memcmp(nm->text, want, k) == 0;
}

/* cJSON's parse_string at s->off (a '"'): 1 when valid; decodes into nm when given. */
static int scan_string(scan *s, name *nm) {
    const unsigned char *b = s->b;
    size_t start = s->off + 1, end = start;
    int escapes = 0;
    while (end < s->len && b[end] != '"') {
        if (b[end] == '\\') {
            if (end + 1 >= s->len) return 0; /* a backslash last */
            end++;
            escapes = 1;
        }
        end++;
    }
    if (end >= s->len) return 0; /* no closing quote */
    if (!escapes) { /* no escapes (the usual case): nothing to check or decode */
        if (nm) {
            const unsigned char *z = memchr(b + start, 0, end - start); /* a NUL ends cJSON's strcmp */
            size_t n = z ? (size_t)(z - (b + start)) : end - start;
            if (n > sizeof nm->text) nm->too_long = 1;
            else memcpy(nm->text, b + start, nm->n = n);
        }
        s->off = end + 1;
        return 1;
    }
    size_t p = start;
    while (p < end) {
        if (b[p] != '\\') {
            emit(nm, b[p]);
            p++;
            continue;
        }
        switch (b[p + 1]) { /* p + 1 <= end: readable */
        case 'b': emit(nm, '\b'); p += 2; break;
        case 'f': emit(nm, '\f'); p += 2; break;
        case 'n': emit(nm, '\n'); p += 2; break;
        case 'r': emit(nm, '\r'); p += 2; break;
        case 't': emit(nm, '\t'); p += 2; break;
        case '"':
        case '\\':
        case '/': emit(nm, b[p + 1]); p += 2; break;
        case 'u': {
            if (end - p < 6) return 0;
            unsigned c1 = hex4(b + p + 2);
            if (c1 >= 0xDC00 && c1 <= 0xDFFF) return 0;
            if (c1 >= 0xD800 && c1 <= 0xDBFF) {
                if (end - (p + 6) < 6) return 0;
                if (b[p + 6] != '\\' || b[p + 7] != 'u') return 0;
                unsigned c2 = hex4(b + p + 8);
                if (c2 < 0xDC00 || c2 > 0xDFFF) return 0;
                emit(nm, 0x80); /* not ASCII: matches no name */
                p += 12;
            } else {
                emit(nm, c1 < 0x80 ? c1 : 0x80);
                p += 6;
            }
            break;
        }
        default: return 0;
        }
    }
    s->off = end + 1;
    return 1;
}

static int is_num_char(unsigned char c) {
    return (c >= '0' && c <= '9') || c == '+' || c == '-' || c == 'e' || c == 'E' || c == '.';
}
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* cJSON's parse_number at s->off (Debian 12's 1.7.15, with the CVE-2023-26819
** fix: the whole run of [0-9+-eE.], no 63-character cap), of which strtod
** takes what it can. *v (when asked) is strtod's value, read with the
** locale's decimal point as cJSON does; otherwise the length strtod would
** take is found without it (sign, digits with at most one point and at
** least one digit, an exponent only when complete). */
static int scan_number(scan *s, double *v) {
    const unsigned char *p = s->b + s->off;
    size_t avail = s->len - s->off, run = 0;
    while (run < avail && is_num_char(p[run])) run++;
    size_t k;
    if (v && run <= 15 && p[0] != '-') { /* digits only (the usual count): exactly strtod's value, without it */
        uint64_t n = 0;
        size_t i = 0;
        while (i < run && is_digit(p[i])) n = n * 10 + (uint64_t)(p[i++] - '0');
        if (i == run) {
            *v = (double)n; /* < 10^15 < 2^53: exact */
            s->off += run;
            return 1;
        }
    }
    if (v) {
        char small[128];
        char *tmp = run < sizeof small ? small : malloc(run + 1); /* only a counter longer than 127 characters */
        if (!tmp) return 0;
        char point = localeconv()->decimal_point[0];
        for (size_t i = 0; i < run; i++) tmp[i] = p[i] == '.' ? point : (char)p[i];
        tmp[run] = 0;
        char *e = NULL;
        *v = strtod(tmp, &e);
        k = (size_t)(e - tmp);
        if (tmp != small) free(tmp);
    } else {
        size_t digits = 0;
        k = 0;
        if (k < run && (p[k] == '+' || p[k] == '-')) k++;
        while (k < run && is_digit(p[k])) k++, digits++;
        if (k < run && p[k] == '.') {
            k++;
            while (k < run && is_digit(p[k])) k++, digits++;
        }
        if (!digits) k = 0;
        else if (k < run && (p[k] == 'e' || p[k] == 'E')) {
            size_t m = k + 1;
            if (m < run && (p[m] == '+' || p[m] == '-')) m++;
            if (m < run && is_digit(p[m])) {
                while (m < run && is_digit(p[m])) m++;
                k = m;
            }
        }
    }
    if (k == 0) return 0;
    s->off += k;
    return 1;
}

/* The slot of the value of member `nm` in a container with role `role`. */
static int member_slot(scan *s, int role, const name *nm) {
    if (role == SLOT_ROOT) {
        if (name_is(nm, "usage")) return s->seen_usage++ ? SLOT_NONE : SLOT_USAGE;
        if (name_is(nm, "usageMetadata")) return s->seen_meta++ ? SLOT_NONE : SLOT_META;
        if (name_is(nm, "data")) return s->seen_data++ ? SLOT_NONE : SLOT_DATA;
        return SLOT_NONE;
    }
    if (role == SLOT_DATA0) {
        if (name_is(nm, "b64_json") || name_is(nm, "url")) s->data0_image = 1;
        return SLOT_NONE;
    }
    int lo = role == SLOT_USAGE ? C_INPUT : C_META_PROMPT, hi = role == SLOT_USAGE ? C_META_PROMPT : C_N;
    for (int k = lo; k < hi; k++)
        if (name_is(nm, counter_names[k])) {
            if (s->seen_counter & (1u << k)) return SLOT_NONE;
            s->seen_counter |= 1u << k;
            return SLOT_NUM + k;
        }
    return SLOT_NONE;
}

/* 1 when json[0, len) is one JSON value cJSON accepts; fills s. */
static int scan_all(scan *s) {
    unsigned char kind[CC_USAGE_JSON_DEPTH_MAX]; /* '{' or '[' */
    unsigned char role[CC_USAGE_JSON_DEPTH_MAX];
    int depth = 0, slot = SLOT_ROOT;
    const unsigned char *b = s->b;
    if (s->len == 0) return 0;
    if (s->len > 4 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF) s->off = 3; /* cJSON's skip_utf8_bom */
    skip_ws(s);
    for (;;) {
        /* ---- a value at s->off, for `slot` */
        if (s->off >= s->len) return 0;
        unsigned char c = b[s->off];
        size_t left = s->len - s->off;
        if (c == 'n' && left >= 4 && memcmp(b + s->off, "null", 4) == 0) s->off += 4;
        else if (c == 'f' && left >= 5 && memcmp(b + s->off, "false", 5) == 0) s->off += 5;
        else if (c == 't' && left >= 4 && memcmp(b + s->off, "true", 4) == 0) s->off += 4;
        else if (c == '"') {
            if (!scan_string(s, NULL)) return 0;
        } else if (c == '-' || is_digit(c)) {
            double v = 0;
            int want = slot >= SLOT_NUM;
            if (!scan_number(s, want ? &v : NULL)) return 0;
            if (want && v >= 0 && v <= 1e15) s->counter[slot - SLOT_NUM] = (int64_t)v; /* counts, not money */
        } else if (c == '[' || c == '{') {
            if (depth >= CC_USAGE_JSON_DEPTH_MAX) return 0;
            int r = SLOT_NONE;
            if (c == '{' && (slot == SLOT_ROOT || slot == SLOT_USAGE || slot == SLOT_META || slot == SLOT_DATA0)) r = slot;
            if (c == '[' && slot == SLOT_DATA) r = slot;
            if (r == SLOT_DATA0) s->data0_object = 1;
            kind[depth] = c;
            role[depth] = (unsigned char)r;
            depth++;
            s->off++;
            skip_ws(s);
            if (s->off < s->len && b[s->off] == (c == '[' ? ']' : '}')) { /* empty */
                s->off++;
                depth--;
            } else if (c == '[') {
                if (s->off >= s->len) return 0;
                slot = r == SLOT_DATA ? SLOT_DATA0 : SLOT_NONE;
                if (r == SLOT_DATA) s->data_n++;
                continue; /* the first element */
            } else {
                goto member;
            }
        } else {
            return 0;
        }
        /* ---- after a value: the container's next member or element, or its end */
        for (;;) {
            if (depth == 0) return 1; /* the whole value parsed (what follows is not read) */
            skip_ws(s);
            int top = depth - 1;
            if (s->off < s->len && b[s->off] == ',') {
                s->off++;
                skip_ws(s);
                if (kind[top] == '{') goto member;
                if (role[top] == SLOT_DATA) s->data_n++;
                slot = SLOT_NONE;
                break; /* the next element */
            }
            if (s->off >= s->len || b[s->off] != (kind[top] == '[' ? ']' : '}')) return 0;
            s->off++;
            depth--;
        }
        continue;
    member:
        /* ---- a member's name at s->off (white space skipped), then ':' and its value */
        {
            int r = role[depth - 1];
            name nm = {.n = 0};
            if (s->off >= s->len || b[s->off] != '"') return 0;
            if (!scan_string(s, r == SLOT_NONE ? NULL : &nm)) return 0;
            skip_ws(s);
            if (s->off >= s->len || b[s->off] != ':') return 0;
            s->off++;
            skip_ws(s);
            slot = r == SLOT_NONE ? SLOT_NONE : member_slot(s, r, &nm);
        }
    }
}

static int64_t add_known(int64_t a, int64_t b) {
    if (a < 0) return b;
    if (b < 0) return a;
    return a + b;
}

void cc_usage_from_json(const char *json, size_t len, cc_usage *u) {
    cc_usage_init(u);
    if (!json) return;
    scan s = {.b = (const unsigned char *)json, .len = len};
    for (int k = 0; k < C_N; k++) s.counter[k] = -1;
    if (!scan_all(&s)) return; /* not one JSON value: nothing reported */
    /* OpenAI Responses / Images: usage.input_tokens / output_tokens; Chat Completions: prompt_tokens /
    ** completion_tokens. Gemini: usageMetadata.promptTokenCount / candidatesTokenCount (+ thoughts). */
    u->input_tokens = add_known(add_known(s.counter[C_INPUT], s.counter[C_PROMPT]), s.counter[C_META_PROMPT]);
    u->output_tokens = add_known(add_known(s.counter[C_OUTPUT], s.counter[C_COMPLETION]),
                                 add_known(s.counter[C_META_CANDIDATES], s.counter[C_META_THOUGHTS]));
    /* OpenAI images: one element of data[] per image. */
    if (s.data_n > 0 && s.data0_object && s.data0_image) u->images = s.data_n;
}
