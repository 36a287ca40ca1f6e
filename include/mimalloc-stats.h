/* libmimalloc statistics: the layout of mi_stats_t (version 4, mimalloc v2 compatible) and the
 * functions that fill it. A caller declares the struct with mi_stats_t_decl(name), which sets
 * the size and version fields the library checks before writing. */
#pragma once
#ifndef MIMALLOC_STATS_H
#define MIMALLOC_STATS_H

#include <mimalloc.h>
#include <stdint.h>

#define MI_STAT_VERSION 4

typedef struct mi_stat_count_s {
  int64_t total;   /* everything ever added */
  int64_t peak;    /* the highest current value */
  int64_t current; /* what is there now (total minus what was given back) */
} mi_stat_count_t;

typedef struct mi_stat_counter_s {
  int64_t total;
} mi_stat_counter_t;

/* Field order is the ABI. */
#define MI_STAT_FIELDS()                 \
  MI_STAT_COUNT(pages)                   \
  MI_STAT_COUNT(reserved)                \
  MI_STAT_COUNT(committed)               \
  MI_STAT_COUNT(page_committed)          \
  MI_STAT_COUNT(pages_abandoned)         \
  MI_STAT_COUNT(threads)                 \
  MI_STAT_COUNT(malloc_normal)           \
  MI_STAT_COUNT(malloc_huge)             \
  MI_STAT_COUNT(malloc_requested)        \
  MI_STAT_COUNTER(reset)                 \
  MI_STAT_COUNTER(purged)                \
  MI_STAT_COUNTER(mmap_calls)            \
  MI_STAT_COUNTER(commit_calls)          \
  MI_STAT_COUNTER(reset_calls)           \
  MI_STAT_COUNTER(purge_calls)           \
  MI_STAT_COUNTER(arena_count)           \
  MI_STAT_COUNTER(malloc_normal_count)   \
  MI_STAT_COUNTER(malloc_huge_count)     \
  MI_STAT_COUNTER(malloc_guarded_count)  \
  MI_STAT_COUNTER(arena_rollback_count)  \
  MI_STAT_COUNTER(arena_purges)          \
  MI_STAT_COUNTER(pages_extended)        \
  MI_STAT_COUNTER(pages_retire)          \
  MI_STAT_COUNTER(page_searches)         \
  MI_STAT_COUNTER(page_searches_count)   \
  MI_STAT_COUNT(segments)                \
  MI_STAT_COUNT(segments_abandoned)      \
  MI_STAT_COUNT(segments_cache)          \
  MI_STAT_COUNT(_segments_reserved)

#define MI_BIN_HUGE (73U)
#define MI_BIN_FULL (MI_BIN_HUGE + 1)
#define MI_BIN_COUNT (MI_BIN_FULL + 1)

#define MI_STAT_COUNT(stat) mi_stat_count_t stat;
#define MI_STAT_COUNTER(stat) mi_stat_counter_t stat;

typedef struct mi_stats_s {
  size_t size;    /* sizeof(mi_stats_t) as the caller knows it */
  size_t version; /* MI_STAT_VERSION as the caller knows it */
  MI_STAT_FIELDS()
  mi_stat_count_t _stat_reserved[4];
  mi_stat_counter_t _stat_counter_reserved[4];
  mi_stat_count_t malloc_bins[MI_BIN_COUNT - 1]; /* allocations per size class */
  mi_stat_count_t page_bins[MI_BIN_COUNT - 1];   /* pages per size class */
} mi_stats_t;

#undef MI_STAT_COUNT
#undef MI_STAT_COUNTER

#define mi_stats_t_decl(name)    \
  mi_stats_t name = {0};         \
  name.size = sizeof(mi_stats_t); \
  name.version = MI_STAT_VERSION;

#ifdef __cplusplus
extern "C" {
#endif

/* Fill `stats` (whose size and version fields the caller set) with the process statistics;
 * false when the caller's layout is not one this library knows. */
mi_decl_export bool mi_stats_get(mi_stats_t* stats) mi_attr_noexcept;
/* The statistics as JSON into `buf` (NULL: a new buffer from mi_malloc, free it with
 * mi_free); returns the string, or NULL if it does not fit. */
mi_decl_export char* mi_stats_get_json(size_t buf_size, char* buf) mi_attr_noexcept;

#ifdef __cplusplus
}
#endif

#endif
