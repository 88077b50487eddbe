/*
** i64map.c — fixed-capacity int64 -> pointer hash map. See i64map.h.
*/
#include "i64map.h"
#include "cc_common.h"

#include <stdlib.h>

static size_t slot_of(const i64map *m, int64_t key) {
    uint64_t x = (uint64_t)key;
    /* splitmix64 finaliser: ids are sequential, so spread them out. */
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27; x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (size_t)x & m->mask;
}

int i64map_init(i64map *m, size_t max_items) {
    CC_ASSERT(max_items > 0 && max_items <= ((size_t)1 << 30));
    size_t slots = 2;
    while (slots < 2 * max_items) slots <<= 1;
    m->keys = calloc(slots, sizeof *m->keys);
    m->vals = calloc(slots, sizeof *m->vals);
    if (!m->keys || !m->vals) {
        free(m->keys);
        free(m->vals);
        m->keys = NULL;
        m->vals = NULL;
        return -1;
    }
    m->mask = slots - 1;
    m->count = 0;
    m->max_items = max_items;
    return 0;
}

void i64map_clear(i64map *m, void (*free_fn)(void *)) {
    if (!m->keys) return;
    for (size_t i = 0; i <= m->mask; i++) {
        if (m->keys[i]) {
            if (free_fn) free_fn(m->vals[i]);
            m->keys[i] = 0;
            m->vals[i] = NULL;
        }
    }
    m->count = 0;
}

void i64map_destroy(i64map *m, void (*free_fn)(void *)) {
    i64map_clear(m, free_fn);
    free(m->keys);
    free(m->vals);
    m->keys = NULL;
    m->vals = NULL;
}

void *i64map_get(const i64map *m, int64_t key) {
    CC_ASSERT(key > 0);
    for (size_t i = slot_of(m, key);; i = (i + 1) & m->mask) {
        if (m->keys[i] == key) return m->vals[i];
        if (m->keys[i] == 0) return NULL;
    }
}

int i64map_put(i64map *m, int64_t key, void *val) {
    CC_ASSERT(key > 0);
    size_t i = slot_of(m, key);
    for (;; i = (i + 1) & m->mask) {
        if (m->keys[i] == key) { m->vals[i] = val; return 0; }
        if (m->keys[i] == 0) break;
    }
    if (m->count >= m->max_items) return -1;
    m->keys[i] = key;
    m->vals[i] = val;
    m->count++;
    return 0;
}

void *i64map_remove(i64map *m, int64_t key) {
    CC_ASSERT(key > 0);
    size_t i = slot_of(m, key);
    for (;; i = (i + 1) & m->mask) {
        if (m->keys[i] == key) break;
        if (m->keys[i] == 0) return NULL;
    }
    void *val = m->vals[i];
    /* Backward-shift: move later members of the probe run into the hole. */
    size_t hole = i;
    for (size_t j = (i + 1) & m->mask; m->keys[j]; j = (j + 1) & m->mask) {
        size_t home = slot_of(m, m->keys[j]);
        /* Move j into the hole unless its home lies cyclically in (hole, j]. */
        int home_in_range = (hole <= j) ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!home_in_range) {
            m->keys[hole] = m->keys[j];
            m->vals[hole] = m->vals[j];
            hole = j;
        }
    }
    m->keys[hole] = 0;
    m->vals[hole] = NULL;
    m->count--;
    return val;
}
