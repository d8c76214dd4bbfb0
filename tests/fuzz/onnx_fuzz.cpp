// libFuzzer target for the ONNX reader: feeds arbitrary bytes to io::import_onnx_bytes (through
// squeeze_fuzz_import_onnx in src/io/onnx_import.cpp, which treats squeeze::Error and c10::Error
// as the expected outcome for bad input). A crash, a hang, or any other exception is a bug.
//
// This file includes no headers of squeeze or libtorch on purpose: it compiles with clang's
// -fsanitize=fuzzer and links against a squeeze_core built by any compiler (same libstdc++).
//
// --- CMake (tests/fuzz/CMakeLists fragment; add to the top-level CMakeLists.txt) ---------------
//
//   if(SQUEEZE_BUILD_FUZZ)
//     # libFuzzer comes with clang. With clang as the project compiler, squeeze_core is
//     # instrumented too (coverage-guided); with gcc only this file is, and libFuzzer still
//     # mutates the seed models for the given number of runs.
//     find_program(SQUEEZE_CLANG_FOR_FUZZ NAMES clang++ clang++-14 REQUIRED)
//     if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
//       target_compile_options(squeeze_core PRIVATE -fsanitize=fuzzer-no-link)
//       add_executable(onnx_fuzz tests/fuzz/onnx_fuzz.cpp)
//       target_compile_options(onnx_fuzz PRIVATE -fsanitize=fuzzer)
//       target_link_options(onnx_fuzz PRIVATE -fsanitize=fuzzer)
//       target_link_libraries(onnx_fuzz PRIVATE squeeze_core)
//     else()
//       # gcc build: compile this file with clang, link with the project's linker and clang's
//       # libFuzzer runtime (which provides main()).
//       execute_process(COMMAND ${SQUEEZE_CLANG_FOR_FUZZ} -print-file-name=libclang_rt.fuzzer-x86_64.a
//                       OUTPUT_VARIABLE SQUEEZE_LIBFUZZER OUTPUT_STRIP_TRAILING_WHITESPACE)
//       add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/onnx_fuzz.o
//                          COMMAND ${SQUEEZE_CLANG_FOR_FUZZ} -std=c++17 -O1 -g -fsanitize=fuzzer-no-link -c
//                                  ${PROJECT_SOURCE_DIR}/tests/fuzz/onnx_fuzz.cpp -o ${CMAKE_BINARY_DIR}/onnx_fuzz.o
//                          DEPENDS ${PROJECT_SOURCE_DIR}/tests/fuzz/onnx_fuzz.cpp)
//       add_executable(onnx_fuzz ${CMAKE_BINARY_DIR}/onnx_fuzz.o)
//       set_target_properties(onnx_fuzz PROPERTIES LINKER_LANGUAGE CXX)
//       target_link_libraries(onnx_fuzz PRIVATE squeeze_core ${SQUEEZE_LIBFUZZER})
//     endif()
//     # A fixed number of iterations from the conformance models as seeds (read-only, so new
//     # corpus entries go to a scratch folder in the build tree).
//     file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/onnx_fuzz_corpus)
//     add_test(NAME onnx_fuzz
//              COMMAND onnx_fuzz -runs=20000 -seed=1 -keep_seed=1 -reduce_inputs=0 -max_len=1048576
//                      -rss_limit_mb=4096 -timeout=30
//                      ${CMAKE_BINARY_DIR}/onnx_fuzz_corpus
//                      ${PROJECT_SOURCE_DIR}/../shared/conformance/onnx/pytorch-converted
//                      ${PROJECT_SOURCE_DIR}/../shared/conformance/onnx/pytorch-operator
//                      ${PROJECT_SOURCE_DIR}/../shared/conformance/onnx/simple)
//     set_tests_properties(onnx_fuzz PROPERTIES LABELS "fuzz" TIMEOUT 900)
//   endif()
//
// Run by hand: build/onnx_fuzz -runs=20000 build/onnx_fuzz_corpus ../shared/conformance/onnx/simple
// ------------------------------------------------------------------------------------------------
#include <cstddef>
#include <cstdint>

extern "C" int squeeze_fuzz_import_onnx(const uint8_t* data, size_t size);

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return squeeze_fuzz_import_onnx(data, size);
}
