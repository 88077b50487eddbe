/*
** i64map.h — a fixed-capacity hash map from positive int64 keys to pointers.
**
** Contract: open addressing with linear probing and backward-shift deletion
** (no tombstones, so lookups stay short however many deletes happen). The
** table never grows: it holds at most `max_items` entries in 2 x that many
** slots (load <= 0.5), and i64map_put refuses (returns -1) when full, so
** memory is bounded by construction. Not thread-safe: one owner at a time.
** Values are owned by the caller; i64map_clear hands each one to `free_fn`.
*/
#ifndef CC_I64MAP_H
#define CC_I64MAP_H

#include <stdint.h>
#include <stddef.h>

typedef struct i64map {
    int64_t *keys;     /* 0 = empty slot */
    void **vals;
    size_t mask;       /* slots - 1, slots a power of two */
    size_t count;
    size_t max_items;
} i64map;

int i64map_init(i64map *m, size_t max_items);      /* 0 or -1 (no memory) */
void i64map_destroy(i64map *m, void (*free_fn)(void *));
void *i64map_get(const i64map *m, int64_t key);     /* NULL if absent */
int i64map_put(i64map *m, int64_t key, void *val);  /* 0, or -1 when full; replaces */
void *i64map_remove(i64map *m, int64_t key);        /* the removed value or NULL */
void i64map_clear(i64map *m, void (*free_fn)(void *));

#endif
