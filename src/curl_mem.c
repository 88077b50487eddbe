/*
** curl_mem.c — libcurl's initialisation and memory functions. See curl_mem.h.
**
** A block is [header][user bytes]; the header says the block's size class
** (NCLS: not a class, the block was sized to the request) and how many user
** bytes it holds. A caching thread keeps freed blocks of each class on a
** singly linked list threaded through their user bytes. Nothing is shared
** between threads: a block cached on one thread can only be handed out by
** that thread, and a block freed on a thread without a cache goes straight
** back to the C library (whichever thread allocated it).
*/
#include "curl_mem.h"
#include "cc_common.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#if defined(_MSC_VER)
#define CM_THREAD_LOCAL __declspec(thread)
#else
#define CM_THREAD_LOCAL _Thread_local
#endif

#define NCLS 18
/* Powers of two and the halves between them (at most a third of a block wasted), then 8 KiB and
** libcurl's receive buffer: CURLOPT_BUFFERSIZE (16 KiB by default) + 1, allocated for every transfer
** (Curl_preconnect) and freed when it is done (multi_done). */
#define CM_SMALL_MAX 4096
static const uint32_t class_bytes[NCLS] = {16,  32,  48,   64,   96,   128,  192,  256,  384,
                                           512, 768, 1024, 1536, 2048, 3072, 4096, 8192, 16448};
/* How many blocks of each class a cache keeps: 128, or fewer so that no class keeps more than
** 64 KiB, but the receive buffers: up to 32 of them (one per transfer that ended at once). */
static const uint16_t class_keep[NCLS] = {128, 128, 128, 128, 128, 128, 128, 128, 128,
                                          128, 85,  64,  42,  32,  21,  16,  8,   32};
/* The class of n bytes (n <= CM_SMALL_MAX) is class_of[(n + 15) / 16]. */
static uint8_t class_of[CM_SMALL_MAX / 16 + 1];

static uint32_t size_class(size_t n) {
    if (n <= CM_SMALL_MAX) return class_of[(n + 15) / 16];
    if (n <= 8192) return NCLS - 2;
    return n <= 16448 ? NCLS - 1 : NCLS;
}

typedef struct hdr {
    struct {
        _Alignas(max_align_t) uint32_t cls; /* 16 bytes, aligned as malloc's blocks: the user bytes keep its alignment */
        size_t cap;                          /* user bytes */
    } h;
} hdr;
_Static_assert(sizeof(hdr) % _Alignof(max_align_t) == 0, "the user bytes keep malloc's alignment");

typedef struct cache {
    void *head[NCLS];
    int n[NCLS];
    size_t bytes;
    int64_t hits, misses;
} cache;

static CM_THREAD_LOCAL cache *tc;

static cc_once_t once = CC_ONCE_INIT;
static int init_rc;

/* What every class keeps at most, in all: CC_CURL_MEM_CACHE_BYTES_MAX says it. */
static size_t keep_bytes_max(void) {
    size_t t = 0;
    for (int k = 0; k < NCLS; k++) t += (size_t)class_keep[k] * class_bytes[k];
    return t;
}

static void init(void) {
    CC_ASSERT(keep_bytes_max() <= CC_CURL_MEM_CACHE_BYTES_MAX && class_bytes[NCLS - 1] == CC_CURL_MEM_CLASS_BYTES_MAX);
    int c = 0;
    for (size_t i = 0; i < sizeof class_of; i++) {
        while (class_bytes[c] < i * 16) c++;
        class_of[i] = (uint8_t)c;
    }
    init_rc = (int)curl_global_init_mem(CURL_GLOBAL_DEFAULT, cc_curl_malloc, cc_curl_free, cc_curl_realloc,
                                        cc_curl_strdup, cc_curl_calloc);
}

int cc_curl_init(void) {
    cc_once(&once, init);
    return init_rc;
}

static void *block_new(uint32_t cls, size_t cap) {
    if (cap > SIZE_MAX - sizeof(hdr)) return NULL;
    hdr *h = malloc(sizeof(hdr) + cap);
    if (!h) return NULL;
    h->h.cls = cls;
    h->h.cap = cap;
    return h + 1;
}

void *cc_curl_malloc(size_t n) {
    uint32_t k = size_class(n);
    if (k == NCLS) return block_new(NCLS, n);
    cache *c = tc;
    if (c) {
        void *p = c->head[k];
        if (p) {
            memcpy(&c->head[k], p, sizeof(void *));
            c->n[k]--;
            c->bytes -= class_bytes[k];
            c->hits++;
            return p;
        }
        c->misses++;
    }
    return block_new(k, class_bytes[k]);
}

void cc_curl_free(void *p) {
    if (!p) return;
    hdr *h = (hdr *)p - 1;
    uint32_t k = h->h.cls;
    CC_ASSERT(k <= NCLS);
    cache *c = tc;
    if (c && k < NCLS && c->n[k] < class_keep[k]) {
        memcpy(p, &c->head[k], sizeof(void *));
        c->head[k] = p;
        c->n[k]++;
        c->bytes += class_bytes[k];
        return;
    }
    free(h);
}

void *cc_curl_realloc(void *p, size_t n) {
    if (!p) return cc_curl_malloc(n);
    hdr *h = (hdr *)p - 1;
    CC_ASSERT(h->h.cls <= NCLS);
    if (h->h.cls < NCLS && n <= h->h.cap) return p; /* fits in its class */
    if (h->h.cls == NCLS && size_class(n) == NCLS) {
        /* Large to large: the C library may resize it in place. (Large to a class size moves below,
        ** so that the block joins the classes.) */
        if (n > SIZE_MAX - sizeof(hdr)) return NULL;
        hdr *r = realloc(h, sizeof(hdr) + n);
        if (!r) return NULL;
        r->h.cap = n;
        return r + 1;
    }
    void *q = cc_curl_malloc(n);
    if (!q) return NULL;
    memcpy(q, p, h->h.cap < n ? h->h.cap : n);
    cc_curl_free(p);
    return q;
}

char *cc_curl_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = cc_curl_malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

void *cc_curl_calloc(size_t nmemb, size_t size) {
    if (size && nmemb > SIZE_MAX / size) return NULL;
    void *p = cc_curl_malloc(nmemb * size);
    if (p) memset(p, 0, nmemb * size);
    return p;
}

void cc_curl_mem_cache_begin(void) {
    if (!tc) tc = calloc(1, sizeof(cache)); /* without one (out of memory) the thread just does not cache */
}

void cc_curl_mem_cache_end(void) {
    cache *c = tc;
    if (!c) return;
    tc = NULL; /* from here frees go to the C library */
    for (int k = 0; k < NCLS; k++) {
        void *p = c->head[k];
        while (p) {
            void *next;
            memcpy(&next, p, sizeof next);
            free((hdr *)p - 1);
            p = next;
        }
    }
    free(c);
}

int cc_curl_mem_cache_stats(cc_curl_mem_stats *out) {
    memset(out, 0, sizeof *out);
    if (!tc) return 0;
    out->hits = tc->hits;
    out->misses = tc->misses;
    out->bytes_kept = tc->bytes;
    return 1;
}
