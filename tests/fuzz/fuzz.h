#pragma once
// Fuzz targets: each *_fuzz.cc defines LLVMFuzzerTestOneInput for one parser
// that reads outside input. Built two ways (tests/fuzz/CMakeLists.txt):
//  - always, with driver.cc: a deterministic mutation run over the seed corpus
//    in tests/fuzz/corpus/<target>/, run by ctest as fuzz.<target>;
//  - with clang and -DAF_LIBFUZZER=ON (`make fuzz`): real libFuzzer binaries
//    with AddressSanitizer and UBSan.
// A target fails by crashing; FUZZ_CHECK states a property that must hold.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

inline std::string_view FuzzText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}
