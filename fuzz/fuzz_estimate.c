/* Request bodies: a prompt's node inputs (client JSON) priced against the
** shipped price table. Input: node class 0xff inputs JSON.
** Property: pricing the parsed tree (cc_price_estimate_tree, how the queue gate
** prices a whole prompt in one call) gives exactly what pricing the text gives. */
#include <stdio.h>
#include <cjson/cJSON.h>
#include "fuzz_util.h"
#include "pricing.h"

static cc_price_table *table;

static char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)len + 1);
    *n = fread(s, 1, (size_t)len, f);
    s[*n] = 0;
    fclose(f);
    return s;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    const char *p = getenv("FUZZ_PRICES");
    size_t n;
    char *json = read_file(p ? p : "comfy_credits_ext/prices.json", &n);
    cc_error e;
    if (!json || cc_price_table_parse(json, n, &table, &e) != CC_OK) {
        fprintf(stderr, "fuzz_estimate: cannot load the shipped price table (set FUZZ_PRICES)\n");
        abort();
    }
    free(json);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    char *cls, *inputs;
    fz_split(d, n, &cls, &inputs);
    cc_price_result r;
    cc_error e;
    if (cc_price_estimate(table, cls, inputs, strlen(inputs), &r, &e) == CC_OK)
        FZ_CHECK(r.micro >= 0 && r.calls >= 1 && r.micro % r.calls == 0); /* a hold covers whole calls */
    /* Every shipped rule with these inputs. */
    int count = cc_price_table_count(table);
    const char *name = cc_price_table_name(table, (int)(n % (size_t)count));
    cc_rc rc = cc_price_estimate(table, name, inputs, strlen(inputs), &r, &e);
    if (rc == CC_OK) FZ_CHECK(r.micro >= 0 && r.calls >= 1 && r.micro % r.calls == 0);
    /* parsed the way pricing.c parses text: nothing but JSON whitespace after the value */
    const char *end = NULL;
    cJSON *tree = cJSON_ParseWithOpts(inputs, &end, 0);
    for (const char *q = end; tree && q && *q; q++)
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
            cJSON_Delete(tree);
            tree = NULL;
        }
    if (tree && strlen(inputs) <= CC_PRICE_INPUTS_BYTES_MAX) {
        cc_price_result t;
        cc_error te;
        cc_rc trc = cc_price_estimate_tree(table, name, tree, &t, &te);
        FZ_CHECK(trc == rc);
        if (rc == CC_OK)
            FZ_CHECK(t.micro == r.micro && t.used_default == r.used_default && !strcmp(t.rule, r.rule) &&
                     !strcmp(t.model, r.model) && !strcmp(t.warning, r.warning) && t.calls == r.calls);
        else
            FZ_CHECK(!strcmp(te.message, e.message));
    }
    cJSON_Delete(tree);
    free(cls);
    free(inputs);
    return 0;
}
