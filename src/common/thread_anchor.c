/* The thread id's portable fallback (platform.h, targets without a thread pointer the engine
 * knows how to read): one thread-local whose address names the thread. Defined once here, so
 * every file of the library sees the same variable. Empty where the fallback is not used. */
#include "platform.h"

#if LM_THREAD_ID_ANCHOR
_Alignas(8) _Thread_local uintptr_t lm_thread_anchor; /* 8-aligned: the id's low bits clear */
#else
typedef int lm_thread_anchor_unused; /* (an empty file is not valid ISO C) */
#endif
