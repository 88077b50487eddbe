/* test_curl_mem.c — libcurl's memory functions and the per-thread cache (curl_mem.h). */
#include "ctest.h"
#include "curl_mem.h"
#include "cc_platform.h"

#include <curl/curl.h>
#include <stdlib.h>

/* libcurl was given our functions: its allocations on a caching thread show in the stats,
** and the blocks a handle freed serve the next handle. */
static void test_curl_mem_libcurl_uses_it(void) {
    CHECK_EQ_I64(cc_curl_init(), CURLE_OK);
    cc_curl_mem_stats st;
    CHECK(cc_curl_mem_cache_stats(&st) == 0); /* no cache on this thread yet */
    cc_curl_mem_cache_begin();
    CURL *e = curl_easy_init();
    CHECK(e != NULL);
    curl_easy_setopt(e, CURLOPT_URL, "http://127.0.0.1:9/a/b?c=d");
    curl_easy_cleanup(e);
    CHECK(cc_curl_mem_cache_stats(&st) == 1);
    CHECK(st.misses > 0);
    CHECK(st.bytes_kept > 0);
    int64_t hits = st.hits;
    e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, "http://127.0.0.1:9/a/b?c=d");
    curl_easy_cleanup(e);
    cc_curl_mem_cache_stats(&st);
    CHECK(st.hits > hits);
    cc_curl_mem_cache_end();
    CHECK(cc_curl_mem_cache_stats(&st) == 0);
}

static void test_curl_mem_blocks(void) {
    CHECK_EQ_I64(cc_curl_init(), CURLE_OK);
    cc_curl_mem_cache_begin();
    /* Alignment and sizes across the classes and beyond. */
    static const size_t sizes[] = {0, 1, 15, 16, 17, 48, 63, 64, 65, 100, 1000, 4095, 4096, 4097, 8192, 16385, 16448, 16449, 100000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = cc_curl_malloc(sizes[i]);
        CHECK(p != NULL);
        CHECK(((uintptr_t)p % _Alignof(max_align_t)) == 0);
        memset(p, 0xab, sizes[i]);
        cc_curl_free(p);
    }
    /* The same class comes back from the cache: the last block freed first. */
    void *a = cc_curl_malloc(40), *b = cc_curl_malloc(40);
    cc_curl_free(a);
    cc_curl_free(b);
    CHECK(cc_curl_malloc(33) == b);
    CHECK(cc_curl_malloc(48) == a);
    cc_curl_free(a);
    cc_curl_free(b);
    /* calloc zeroes a reused block; refuses an overflowing product. */
    unsigned char *z = cc_curl_malloc(200);
    memset(z, 0xff, 200);
    cc_curl_free(z);
    unsigned char *z2 = cc_curl_calloc(10, 20);
    CHECK(z2 == z);
    int nz = 0;
    for (int i = 0; i < 200; i++) nz += z2[i] != 0;
    CHECK_EQ_I64(nz, 0);
    cc_curl_free(z2);
    CHECK(cc_curl_calloc(SIZE_MAX / 2, 3) == NULL);
    CHECK(cc_curl_malloc(SIZE_MAX - 4) == NULL);
    /* strdup */
    char *s = cc_curl_strdup("Connection #0 to host");
    CHECK_STR(s, "Connection #0 to host");
    cc_curl_free(s);
    cc_curl_free(NULL);
    /* realloc keeps the bytes: within a class, across classes, into and out of the large sizes. */
    char *r = cc_curl_realloc(NULL, 10);
    memcpy(r, "0123456789", 10);
    char *r2 = cc_curl_realloc(r, 16);
    CHECK(r2 == r); /* still fits its class */
    r = cc_curl_realloc(r2, 3000);
    CHECK(memcmp(r, "0123456789", 10) == 0);
    for (int i = 10; i < 3000; i++) r[i] = (char)i;
    r = cc_curl_realloc(r, 50000);
    CHECK(memcmp(r, "0123456789", 10) == 0);
    CHECK(r[2999] == (char)2999);
    r[49999] = 7;
    r = cc_curl_realloc(r, 200000);
    CHECK(r[2999] == (char)2999 && r[49999] == 7);
    r = cc_curl_realloc(r, 20); /* large to a class size: moves into the classes */
    CHECK(memcmp(r, "0123456789", 10) == 0);
    cc_curl_free(r);
    cc_curl_mem_cache_end();
}

/* Memory stays bounded: at most 128 blocks of a small class, fewer of a larger one and
** CC_CURL_MEM_CACHE_BYTES_MAX bytes in all are kept, whatever was freed. */
static void test_curl_mem_bounded(void) {
    CHECK_EQ_I64(cc_curl_init(), CURLE_OK);
    cc_curl_mem_cache_begin();
    enum { N = 1000 };
    static void *p[N > 200 ? N : 200];
    for (int i = 0; i < N; i++) p[i] = cc_curl_malloc(32);
    for (int i = 0; i < N; i++) cc_curl_free(p[i]);
    cc_curl_mem_stats st;
    cc_curl_mem_cache_stats(&st);
    CHECK_EQ_I64(st.bytes_kept, 128 * 32);
    /* Every size up to the largest class, many times over: the cache keeps no more than its bound. */
    for (size_t sz = 1; sz <= CC_CURL_MEM_CLASS_BYTES_MAX; sz += 1 + sz / 8) {
        for (int i = 0; i < 200; i++) p[i] = cc_curl_malloc(sz);
        for (int i = 0; i < 200; i++) cc_curl_free(p[i]);
    }
    cc_curl_mem_cache_stats(&st);
    CHECK(st.bytes_kept <= CC_CURL_MEM_CACHE_BYTES_MAX);
    CHECK(st.bytes_kept > CC_CURL_MEM_CACHE_BYTES_MAX / 2);
    /* libcurl's receive buffer (16 KiB + 1) is kept; larger blocks never are. */
    size_t before = st.bytes_kept;
    void *rb = cc_curl_malloc(16384 + 1);
    cc_curl_mem_cache_stats(&st);
    CHECK_EQ_I64(st.bytes_kept, before - CC_CURL_MEM_CLASS_BYTES_MAX);
    cc_curl_free(rb);
    cc_curl_mem_cache_stats(&st);
    CHECK_EQ_I64(st.bytes_kept, before);  /* it came from the cache and went back */
    void *big = cc_curl_malloc(CC_CURL_MEM_CLASS_BYTES_MAX + 1);
    cc_curl_free(big);
    cc_curl_mem_cache_stats(&st);
    CHECK_EQ_I64(st.bytes_kept, before);
    cc_curl_mem_cache_end();
}

/* A block may be freed on another thread, with or without a cache. */
static void *free_on_thread(void *arg) {
    void **blocks = arg;
    cc_curl_free(blocks[0]); /* this thread has no cache: back to the C library */
    cc_curl_mem_cache_begin();
    cc_curl_free(blocks[1]); /* kept by this thread's cache ... */
    cc_curl_mem_stats st;
    cc_curl_mem_cache_stats(&st);
    int ok = st.bytes_kept == 64;
    CHECK(cc_curl_malloc(64) == blocks[1]); /* ... and served by it */
    cc_curl_free(blocks[1]);
    cc_curl_mem_cache_end(); /* gives it back */
    return ok ? arg : NULL;
}

static void test_curl_mem_threads(void) {
    CHECK_EQ_I64(cc_curl_init(), CURLE_OK);
    cc_curl_mem_cache_begin();
    void *blocks[2] = {cc_curl_malloc(64), cc_curl_malloc(64)};
    cc_thread_t t;
    CHECK(cc_thread_create(&t, free_on_thread, blocks) == 0);
    void *ret = NULL;
    cc_thread_join(t, &ret);
    CHECK(ret == blocks);
    cc_curl_mem_stats st;
    cc_curl_mem_cache_stats(&st);
    CHECK_EQ_I64(st.bytes_kept, 0); /* nothing came back to this thread's cache */
    cc_curl_mem_cache_end();
}

void suite_curl_mem(void) {
    RUN(test_curl_mem_libcurl_uses_it);
    RUN(test_curl_mem_blocks);
    RUN(test_curl_mem_bounded);
    RUN(test_curl_mem_threads);
}
