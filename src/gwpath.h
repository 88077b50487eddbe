/*
** gwpath.h — the gateway's one path check: canonicalise, then allow-list.
**
** Contract:
**   - Input: the request path exactly as the client sent it (still
**     percent-encoded, no query). It is decoded ONCE here; nobody decodes it
**     before or after.
**   - Every decoded segment must be plain: only RFC 3986 unreserved
**     characters, sub-delims, ':' and '@'. A segment that still contains '%'
**     after decoding (double encoding: %252e), or decodes to '/', '\', '?',
**     '#', a control, space or non-ASCII byte, is refused; so are "." and
**     ".." segments and empty segments (except one trailing slash).
**   - The canonical (decoded) path must be an API-node path: "/proxy/<...>"
**     or exactly "/customers/storage". Anything else would let a run token
**     reach the operator's own account endpoints with the operator's key.
**   - On success `out` holds the canonical path, which contains only plain
**     characters, so it is sent upstream as is and means the same to every
**     proxy or server that decodes it again.
**   - Input and output are at most CC_GW_PATH_BYTES_MAX bytes. Pure function,
**     thread-safe, no allocation.
*/
#ifndef CC_GWPATH_H
#define CC_GWPATH_H

#include "cc_common.h"

#define CC_GW_PATH_BYTES_MAX 2048

cc_rc cc_gw_path_canonical(const char *raw, size_t raw_len, char *out, size_t out_cap, cc_error *err);

#endif
