/*
** tls.h — which CA certificates libcurl trusts for HTTPS (upstream, Stripe).
**
** Contract: a prebuilt wheel bundles a libcurl whose compiled-in CA path is
** the build machine's (Debian: /etc/ssl/certs/ca-certificates.crt), which
** does not exist on Fedora, macOS or Windows. The process therefore sets one
** CA bundle file explicitly (the Python glue passes certifi's, or the
** operator's COMFY_CREDITS_CA_BUNDLE) and every libcurl handle that the core
** creates for the network applies it. NULL means libcurl's built-in default.
** Thread-safe: the path is copied under a mutex; libcurl copies it again.
** Limits: the path is at most CC_TLS_PATH_BYTES_MAX bytes and must name a
** readable regular file when set.
*/
#ifndef CC_TLS_H
#define CC_TLS_H

#include <curl/curl.h>
#include "cc_common.h"

#define CC_TLS_PATH_BYTES_MAX 4096

/* Sets (path) or clears (NULL) the CA bundle used from now on. */
cc_rc cc_tls_set_ca_bundle(const char *path, cc_error *err);
/* Copies the current path into buf (empty string when unset); returns its length. */
size_t cc_tls_ca_bundle(char *buf, size_t cap);
/* Changes with every cc_tls_set_ca_bundle: a handle kept configured across
** transfers is configured again when it differs from when it was. */
unsigned cc_tls_generation(void);
/* Applies the CA bundle to a libcurl easy handle (no-op when unset). */
void cc_tls_apply(CURL *easy);

#endif
