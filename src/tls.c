/*
** tls.c — the process-wide CA bundle for libcurl handles. See tls.h.
*/
#include "tls.h"

#include <string.h>

static cc_mutex_t mu = CC_MUTEX_INIT;
static char ca_path[CC_TLS_PATH_BYTES_MAX + 1];
static unsigned generation; /* changes with every set */

cc_rc cc_tls_set_ca_bundle(const char *path, cc_error *err) {
    if (path) {
        size_t n = strlen(path);
        if (n == 0 || n > CC_TLS_PATH_BYTES_MAX)
            return cc_fail(err, CC_ERR_INVALID, "ca_bundle", "CA bundle path must be 1..%d bytes",
                           CC_TLS_PATH_BYTES_MAX);
        if (!cc_is_regular_file(path))
            return cc_fail(err, CC_ERR_INVALID, "ca_bundle", "CA bundle is not a readable file");
    }
    cc_mutex_lock(&mu);
    if (path) {
        memcpy(ca_path, path, strlen(path) + 1);
    } else {
        ca_path[0] = 0;
    }
    generation++;
    cc_mutex_unlock(&mu);
    return CC_OK;
}

size_t cc_tls_ca_bundle(char *buf, size_t cap) {
    CC_ASSERT(buf != NULL && cap > 0);
    cc_mutex_lock(&mu);
    size_t n = strlen(ca_path);
    if (n >= cap) n = cap - 1;
    memcpy(buf, ca_path, n);
    buf[n] = 0;
    cc_mutex_unlock(&mu);
    return n;
}

unsigned cc_tls_generation(void) {
    cc_mutex_lock(&mu);
    unsigned g = generation;
    cc_mutex_unlock(&mu);
    return g;
}

void cc_tls_apply(CURL *easy) {
    cc_mutex_lock(&mu);
    if (ca_path[0]) curl_easy_setopt(easy, CURLOPT_CAINFO, ca_path); /* libcurl copies the string */
    cc_mutex_unlock(&mu);
}
