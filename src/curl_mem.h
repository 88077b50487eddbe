/*
** curl_mem.h — libcurl's process-wide initialisation and the memory
** functions it is given (curl_global_init_mem), with a cache of freed blocks
** on the threads that ask for one (the gateway's I/O thread).
**
** Why: a small call through the gateway makes libcurl 7.88 allocate and free
** about 30 small blocks on the I/O thread (connection lookup copies, URL
** parts, one block per answer header for curl_easy_header, the request's
** growing buffer), many of them with calloc, which glibc 2.36 serves without
** its per-thread cache: ~9-10k instructions of malloc per call. A block freed
** on a caching thread is kept in its size class for that thread's next
** allocation of that class.
**
** Contract:
**   - cc_curl_init() calls curl_global_init_mem(CURL_GLOBAL_DEFAULT, ...) once
**     per process (every later call returns the first result) and never
**     curl_global_cleanup: libcurl keeps these functions for as long as the
**     process lives. If something else in the process initialised libcurl
**     first, libcurl keeps its own functions (the C library's): still correct,
**     only without the cache. Every module that uses libcurl calls it first.
**   - Every block handed to libcurl carries a header (its size class and
**     usable size: 16 bytes on x86-64); alignment is that of malloc.
**     Blocks may be freed or resized on any thread, cache or not.
**   - cc_curl_mem_cache_begin() makes the calling thread keep the blocks that
**     are freed on it, up to a fixed number per size class (128 of the small
**     ones, fewer of the larger: CC_CURL_MEM_CACHE_BYTES_MAX bytes in all at
**     most; beyond that they go back to the C library at once): memory stays
**     bounded whatever the load.
**     cc_curl_mem_cache_end() gives every kept block back and stops keeping;
**     a thread that began must end before it exits. Calls on a thread without
**     a cache change nothing. Sizes above CC_CURL_MEM_CLASS_BYTES_MAX (libcurl's
**     16 KiB receive buffer + 1, rounded up) are never kept.
**   - cc_curl_mem_cache_stats() (this thread's cache; tests and benches):
**     allocations served from the cache, allocations that had to ask the C
**     library, and the bytes kept now.
*/
#ifndef CC_CURL_MEM_H
#define CC_CURL_MEM_H

#include <stddef.h>
#include <stdint.h>

#define CC_CURL_MEM_CLASS_BYTES_MAX 16448
#define CC_CURL_MEM_CACHE_BYTES_MAX (1216 * 1024)

/* CURLcode of the first curl_global_init_mem (0: CURLE_OK). */
int cc_curl_init(void);
void cc_curl_mem_cache_begin(void);
void cc_curl_mem_cache_end(void);

typedef struct cc_curl_mem_stats {
    int64_t hits, misses;
    size_t bytes_kept;
} cc_curl_mem_stats;
/* 0 when the calling thread has no cache (out zeroed). */
int cc_curl_mem_cache_stats(cc_curl_mem_stats *out);

/* The functions libcurl is given (exposed for the C tests). */
void *cc_curl_malloc(size_t n);
void cc_curl_free(void *p);
void *cc_curl_realloc(void *p, size_t n);
char *cc_curl_strdup(const char *s);
void *cc_curl_calloc(size_t nmemb, size_t size);

#endif
