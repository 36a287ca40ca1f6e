/* wasi-libc has no setjmp.h (wasm cannot unwind the stack that way). The cmocka test programs
 * include it before cmocka.h; the shim's cmocka.h needs nothing from it. */
#pragma once
