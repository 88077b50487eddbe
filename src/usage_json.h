/*
** usage_json.h — the usage counters an upstream's JSON answer reports, read
** without building a tree.
**
** Contract:
**   - cc_usage_from_json(json, len, u) sets u to "not reported" (-1 in every
**     field, cc_usage_init) and then fills what the body reports:
**       OpenAI (Responses, Images)   usage.input_tokens / output_tokens
**       OpenAI Chat Completions      usage.prompt_tokens / completion_tokens
**       Gemini                       usageMetadata.promptTokenCount (input),
**                                    candidatesTokenCount + thoughtsTokenCount (output)
**       OpenAI images                images = the number of elements of data[]
**                                    when data[0] is an object with "b64_json" or "url"
**     Counters that are present in both families are added; a counter that is
**     absent, not a number, negative or above 1e15 is "not reported". A
**     fractional count is truncated (counts are integers; this is not money).
**   - The result is EXACTLY what parsing the whole body with cJSON 1.7.15
**     (cJSON_ParseWithLength) and reading those members gave (the previous
**     implementation, kept as the reference in tests/c/test_usage_json.c):
**     the body must be one complete JSON value (trailing bytes after it are
**     ignored, a UTF-8 BOM is skipped, any byte <= 0x20 counts as white
**     space, nesting deeper than 1000 fails), a malformed body reports
**     nothing at all, the FIRST member of a given name counts (later
**     duplicates are ignored), names are compared after decoding their
**     escapes (up to a decoded NUL, as cJSON's strcmp does), and numbers are
**     read as Debian 12's cJSON reads them (the run of [0-9+-eE.] given to
**     strtod with the locale's decimal point; Debian's CVE-2023-26819 fix
**     removed upstream 1.7.15's 63-character cap).
**   - One pass, nesting kept in a fixed array (no recursion), no allocation
**     (but for a counter's number longer than 127 characters); reads only
**     json[0, len). Pure function, thread-safe (strtod and localeconv, as
**     cJSON).
*/
#ifndef CC_USAGE_JSON_H
#define CC_USAGE_JSON_H

#include "cc_common.h"
#include "pricing.h"

#define CC_USAGE_JSON_DEPTH_MAX 1000 /* cJSON's CJSON_NESTING_LIMIT */

void cc_usage_from_json(const char *json, size_t len, cc_usage *u);

#endif
