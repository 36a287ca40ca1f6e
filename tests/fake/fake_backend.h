/* A fake OS backend for layer tests: strict, observable, and able to fail on demand.
 *
 * Memory comes from one big PROT_NONE buffer reserved once with real mmap; reservations are
 * carved out of it first-fit, with an inaccessible guard gap between neighbours, and real
 * mprotect makes exactly the committed pages accessible, so touching memory that was never
 * committed faults in the test. The fake enforces the union of every real backend's rules and
 * aborts with a message on a violation:
 *  - addresses and sizes are multiples of caps.page_size (caps.alloc_granularity for
 *    reserve/release), sizes are > 0;
 *  - commit/decommit/reset/protect ranges lie inside ONE live reservation (Windows cannot span
 *    two), reset and protect only touch committed pages;
 *  - release covers exactly one reservation when caps.has_partial_release is false, else an
 *    aligned part of one;
 *  - thread_start is only called when caps.has_threads.
 * It is pessimistic about contents: is_zero is true only for memory it really zeroed (fresh
 * reservations), newly committed pages are scribbled with 0xAB, and reset memory (and, with
 * has_decommit false, "decommitted" memory) is scribbled too, so code that trusts contents it
 * was never promised reads garbage. Linux-like decommit (the default) keeps the range
 * accessible and zero; with set_needs_recommit(true) it becomes inaccessible instead.
 * With has_virtual_reserve false every reservation comes back committed (as on wasm).
 *
 * The caps default to Linux-like values with page_size 4096 and has_overcommit false (so
 * callers exercise their commit paths), has_numa false. With FAKE_BACKEND_OS=windows in the
 * environment, reset gives Windows' rules instead (64 KiB granularity, no partial release,
 * decommit needs a recommit, no large pages), so a whole layer test runs under them; with
 * FAKE_BACKEND_OS=wasm, wasm's (64 KiB pages, every reservation committed, no decommit, no
 * partial release, no threads, no large pages; under either, `move` fails with ENOSYS, as
 * those OSes have no such call). `fake_backend()` serves the same state
 * for every caller; `lm_backend_default()` returns it too, so a layer test links this library
 * in place of the OS backend. All functions are thread-safe (one mutex).
 */
#pragma once
#ifndef FAKE_BACKEND_H
#define FAKE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"

typedef enum {
  FAKE_OP_RESERVE,
  FAKE_OP_RELEASE,
  FAKE_OP_COMMIT,
  FAKE_OP_DECOMMIT,
  FAKE_OP_RESET,
  FAKE_OP_PROTECT,
  FAKE_OP_RESERVE_HUGE,
  FAKE_OP_ADVISE_LARGE,
  FAKE_OP_MOVE,
  FAKE_OP_COUNT
} fake_op_t;

const lm_backend_t* fake_backend(void);

/* Forget everything: release all reservations, counters to 0, default caps, no injected
 * failures, clock 0, empty environment and output, default seed, no recorded threads. */
void fake_backend_reset(void);
/* Check at teardown: true when no reservation is live; otherwise prints each one to stderr. */
bool fake_backend_check_clean(void);
/* The same, aborting with the list of leaked reservations. */
void fake_backend_assert_clean(void);

/* True when the environment asks for Windows' rules (FAKE_BACKEND_OS=windows): tests whose
 * subject only exists under Linux' rules (partial release, large pages by advice) skip then. */
bool fake_backend_imitates_windows(void);
/* True under wasm's rules (FAKE_BACKEND_OS=wasm): tests of decommit, partial release, large
 * pages or background threads skip then. */
bool fake_backend_imitates_wasm(void);

/* Capabilities returned by init (set them before the code under test calls init).
 * page_size must be a power of two and a multiple of 4096; alloc_granularity a power-of-two
 * multiple of page_size. */
void fake_backend_set_caps(const lm_backend_caps_t* caps);
void fake_backend_get_caps(lm_backend_caps_t* caps);
/* Decommit reports needs_recommit (Windows-like) and makes the range inaccessible. */
void fake_backend_set_needs_recommit(bool on);
/* Ignore try_align: results are then deliberately misaligned to it (when try_align exceeds the
 * granularity), to exercise callers' over-allocation. */
void fake_backend_set_unaligned(bool on);
/* false: reserve reports is_zero=false and scribbles committed reservations (an OS that gives
 * no zero guarantee). Default true. */
void fake_backend_set_reserve_zero(bool on);
/* reserve_huge serves 1 GiB-aligned committed memory from the buffer, at the hint when that is
 * free (default: it fails with ENOMEM, as on a machine with no huge page pool). */
void fake_backend_set_huge_pages(bool available);
/* Each reserve_huge call advances the clock by `ms` (default 0), as zeroing a page takes. */
void fake_backend_set_huge_page_ms(int64_t ms);
/* reserve_large serves committed memory aligned to caps.large_page_size: explicit large pages
 * (`pinned`) or transparent ones (default: none, ENOMEM). Failures count as FAKE_OP_RESERVE. */
void fake_backend_set_large_pages(bool available, bool pinned);
/* large_pages_advise: ranges must be aligned to caps.large_page_size and lie inside one
 * reservation (caps.has_large_page_advice is false by default: set it with set_caps). True
 * when every page of the range was last advised "large"; release forgets the advice. */
bool fake_backend_is_large_advised(const void* p, size_t size);
/* Bytes currently advised "large". (A move carries the advice of the source's pages to the
 * destination, as a mapping's property moves with it on Linux.) */
size_t fake_backend_large_advised_bytes(void);
/* The node of the last numa_bind, or of a reserve_huge given a node (-1 if none), and how
 * many such bindings there were. */
int fake_backend_numa_bound(size_t* binds);

/* Calls per operation (failed ones included) and failure injection. An injected failure of
 * `move` strikes half-way: it moves the first half (whole pages) and reports ENOMEM. */
size_t fake_backend_calls(fake_op_t op);
/* The n-th call of op from now (1 = the next) fails with ENOMEM; 0 = never. */
void fake_backend_fail_nth(fake_op_t op, size_t n);
void fake_backend_fail_always(fake_op_t op, bool on);
size_t fake_backend_failures(fake_op_t op); /* injected failures that happened */

/* State of the fake's memory. Committed bytes include protected (guard) pages, which are
 * committed but inaccessible; Linux-like decommitted pages are not committed. */
size_t fake_backend_reserved_bytes(void);
size_t fake_backend_committed_bytes(void);
size_t fake_backend_live_reservations(void);
bool fake_backend_is_committed(const void* p, size_t size);
bool fake_backend_is_reserved(const void* p, size_t size); /* inside one live reservation */

/* Clock (milliseconds; starts at 0). */
void fake_backend_set_clock(int64_t ms);
void fake_backend_advance_clock(int64_t ms);

/* random_bytes: deterministic from a seed; `fails` makes it return false. */
void fake_backend_set_seed(uint64_t seed);
void fake_backend_set_random_fails(bool fails);

/* NUMA answers (caps.has_numa is separate, set it with set_caps). Defaults: count 1, node 0. */
void fake_backend_set_numa(int node_count, int current_node);

/* Environment seen by getenv (case-insensitive names); a NULL value removes the name. */
void fake_backend_setenv(const char* name, const char* value);

/* Everything written through output, in order (kept up to 64 KiB). Also forwarded to stderr
 * when FAKE_BACKEND_VERBOSE is set in the real environment. */
const char* fake_backend_output(void);
void fake_backend_clear_output(void);

/* Thread exit: the registered function and the arg the calling thread armed are recorded;
 * nothing runs at real thread exit unless set_real_thread_exit(true) (then a pthread key
 * destructor runs fn(arg) for armed threads, as a real backend would). */
void fake_backend_run_thread_exit(void* arg);         /* calls the registered fn(arg) */
lm_thread_exit_fun* fake_backend_thread_exit_fun(void); /* NULL until registered */
void* fake_backend_armed_arg(void);                     /* the calling thread's, or NULL */
size_t fake_backend_arm_calls(void);
void fake_backend_set_real_thread_exit(bool on);

/* thread_start runs real detached pthreads; this counts the calls. */
size_t fake_backend_thread_starts(void);

/* atfork records the handlers (one set is kept, the latest) and counts registrations. */
size_t fake_backend_atfork_calls(void);
void fake_backend_run_atfork(int phase); /* 0: prepare, 1: parent, 2: child */

#endif
