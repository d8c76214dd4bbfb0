# The libFuzzer target for the ONNX reader, run for a fixed number of iterations by ctest.
# With a gcc build, only the fuzz driver is compiled by clang (libFuzzer's main and mutator);
# squeeze itself is then not coverage-instrumented, so the fuzzer mutates the seed models
# blindly. Configure with CXX=clang++ for coverage-guided fuzzing.
if(NOT SQUEEZE_BUILD_FUZZ)
  return()
endif()
find_program(SQUEEZE_CLANG_FOR_FUZZ NAMES clang++ clang++-14)
if(NOT SQUEEZE_CLANG_FOR_FUZZ)
  message(STATUS "squeeze: clang++ not found; the ONNX fuzz target is not built")
  return()
endif()
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  target_compile_options(squeeze_core PRIVATE -fsanitize=fuzzer-no-link)
  add_executable(onnx_fuzz ${PROJECT_SOURCE_DIR}/tests/fuzz/onnx_fuzz.cpp)
  target_compile_options(onnx_fuzz PRIVATE -fsanitize=fuzzer)
  target_link_options(onnx_fuzz PRIVATE -fsanitize=fuzzer)
  target_link_libraries(onnx_fuzz PRIVATE squeeze_core)
else()
  execute_process(COMMAND ${SQUEEZE_CLANG_FOR_FUZZ} -print-file-name=libclang_rt.fuzzer-x86_64.a
                  OUTPUT_VARIABLE SQUEEZE_LIBFUZZER OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT EXISTS "${SQUEEZE_LIBFUZZER}")
    message(STATUS "squeeze: libFuzzer runtime not found; the ONNX fuzz target is not built")
    return()
  endif()
  add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/onnx_fuzz.o
    COMMAND ${SQUEEZE_CLANG_FOR_FUZZ} -std=c++17 -O1 -g -fsanitize=fuzzer-no-link -c
            ${PROJECT_SOURCE_DIR}/tests/fuzz/onnx_fuzz.cpp -o ${CMAKE_BINARY_DIR}/onnx_fuzz.o
    DEPENDS ${PROJECT_SOURCE_DIR}/tests/fuzz/onnx_fuzz.cpp)
  add_executable(onnx_fuzz ${CMAKE_BINARY_DIR}/onnx_fuzz.o)
  set_target_properties(onnx_fuzz PROPERTIES LINKER_LANGUAGE CXX)
  target_link_libraries(onnx_fuzz PRIVATE squeeze_core ${SQUEEZE_LIBFUZZER})
endif()
file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/onnx_fuzz_corpus)
add_test(NAME onnx_fuzz COMMAND onnx_fuzz -runs=20000 -seed=1 -reduce_inputs=0
         -max_len=1048576 -rss_limit_mb=4096 -timeout=30 ${CMAKE_BINARY_DIR}/onnx_fuzz_corpus
         ${PROJECT_SOURCE_DIR}/../shared/conformance/onnx/pytorch-converted
         ${PROJECT_SOURCE_DIR}/../shared/conformance/onnx/pytorch-operator
         ${PROJECT_SOURCE_DIR}/../shared/conformance/onnx/simple)
set_tests_properties(onnx_fuzz PROPERTIES LABELS "fuzz" TIMEOUT 900)
