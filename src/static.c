/* The whole library as one translation unit: `cc -O2 -Iinclude -c src/static.c -o mimalloc.o`
 * needs no build system. Linked before libc, the object overrides malloc (static override).
 * This is the one deliberate .c file that includes other .c files. */
#define _GNU_SOURCE
#ifndef LM_OVERRIDE
#define LM_OVERRIDE 1
#endif

#include "backend/select.c"

#include "common/assert.c"
#include "common/thread_anchor.c"

#include "arena/os.c"
#include "arena/bitmap.c"
#include "arena/arena.c"

#include "segment/segment.c"
#include "segment/span.c"
#include "segment/abandon.c"

#include "core/size_class.c"
#include "core/page.c"
#include "core/page_queue.c"
#include "core/heap.c"
#include "core/heap_api.c"
#include "core/init.c"
#include "core/options.c"
#include "core/output.c"
#include "core/random.c"
#include "core/purger.c"
#include "core/drain.c"
#include "core/region.c"
#include "core/stats.c"
#include "core/stats_report.c"
#include "core/guarded.c"
#include "core/check.c"
#include "core/arena_api.c"
#include "core/container.c"
#include "core/alloc.c"
#include "core/free.c"
#include "core/aligned.c"
#include "core/api_extra.c"
#include "core/api_posix.c"
#include "core/api_cxx.c"
#include "core/api_glibc.c"

/* The process start and end hooks (and Windows' default-heap slot). */
#include "core/start.c"
#include "common/platform.h"
#if LM_PLATFORM_WINDOWS
#include "common/tls_windows.c"
#elif LM_PLATFORM_MACOS
#include "common/tls_macos.c"
#endif
