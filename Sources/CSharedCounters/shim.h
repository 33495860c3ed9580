#ifndef CSHAREDCOUNTERS_SHIM_H
#define CSHAREDCOUNTERS_SHIM_H
#include <stdint.h>

/* Atomic operations on 64-bit words of a MAP_SHARED file mapping, which several processes update
   at once. Swift's Synchronization.Atomic lives only in Swift-owned storage, so it cannot be placed
   on a mapping; these are the GCC/Clang builtins, lock-free for aligned 64-bit words on every
   64-bit target Debian builds for. Relaxed order: the counters are independent totals. */
static inline void scep_counter_add(uint64_t *_Nonnull word, uint64_t value) {
    __atomic_fetch_add(word, value, __ATOMIC_RELAXED);
}
static inline uint64_t scep_counter_load(const uint64_t *_Nonnull word) {
    return __atomic_load_n(word, __ATOMIC_RELAXED);
}
static inline void scep_counter_store(uint64_t *_Nonnull word, uint64_t value) {
    __atomic_store_n(word, value, __ATOMIC_RELAXED);
}
#endif
