#ifndef CFUZZER_SHIM_H
#define CFUZZER_SHIM_H
#include <stddef.h>
#include <stdint.h>
/* libFuzzer's driver (compiler-rt FuzzerDriver.cpp, linked by -sanitize=fuzzer): SwiftPM gives
   an executable its own main, so the fuzzer is started from there rather than by libFuzzer's. */
int LLVMFuzzerRunDriver(int *_Nonnull argc, char *_Nullable *_Nullable *_Nonnull argv,
                        int (*_Nonnull callback)(const uint8_t *_Nullable data, size_t size));
#endif
