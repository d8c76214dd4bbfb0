# Fuzz targets (tests/fuzz/<name>_fuzz.cpp, one reader each; see tests/fuzz/fuzz_target.h).
#
# SQUEEZE_BUILD_FUZZ (with the tests, any compiler): squeeze_fuzz_replay runs each target on its
# seed corpus (tests/fuzz/corpus/<name>), its regression inputs (tests/fuzz/regressions/<name>:
# inputs that once broke a reader) and 2000 deterministic mutations, stopping the mutations after
# 2 s: the fast suite's short run (ctest tests fuzz_replay_<name>, label "fuzz"). No clang needed.
#
# SQUEEZE_FUZZ_COVERAGE (clang; make fuzz): fuzz_<name> executables with libFuzzer. The readers'
# sources (SQUEEZE_FUZZ_INSTRUMENTED: the parsers and what they call to check what they parsed)
# are compiled here with -fsanitize=fuzzer-no-link,address,undefined, so the fuzzer sees their
# coverage and ASan/UBSan check them; everything else comes from the prebuilt squeeze_core of
# the default build (SQUEEZE_FUZZ_BASE_LIB, gcc, same libstdc++ ABI), uninstrumented. Linking the
# objects before that library means its copies of the same files are never pulled in. This keeps
# the clang build to 14 files instead of all of squeeze (an hour on a loaded 2-core machine).
set(SQUEEZE_FUZZ_TARGETS onnx sqz config idx csv npy hdf5)
set(SQUEEZE_FUZZ_DIR ${PROJECT_SOURCE_DIR}/tests/fuzz)

if(SQUEEZE_FUZZ_COVERAGE)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "SQUEEZE_FUZZ_COVERAGE=ON needs clang (configure with -DCMAKE_CXX_COMPILER=clang++)")
  endif()
  set(SQUEEZE_FUZZ_BASE_LIB "" CACHE FILEPATH "libsqueeze_core.a of a default build (make fuzz sets it)")
  if(NOT EXISTS "${SQUEEZE_FUZZ_BASE_LIB}")
    message(FATAL_ERROR "SQUEEZE_FUZZ_COVERAGE=ON needs SQUEEZE_FUZZ_BASE_LIB, the libsqueeze_core.a of a "
                        "default build (got '${SQUEEZE_FUZZ_BASE_LIB}'); `make fuzz` builds and passes it")
  endif()
  set(SQUEEZE_FUZZ_INSTRUMENTED
      src/data/idx.cpp src/data/csv.cpp src/data/npy.cpp src/data/hdf5.cpp src/data/dataset.cpp
      src/io/onnx_import.cpp src/io/onnx_tensor.cpp src/io/sqz.cpp
      src/ir/graph.cpp src/ir/ops.cpp src/ir/ops_extra.cpp
      src/pipeline/config.cpp src/util/params.cpp src/util/strings.cpp)
  list(TRANSFORM SQUEEZE_FUZZ_INSTRUMENTED PREPEND ${PROJECT_SOURCE_DIR}/)
  set(flags -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
      -fno-omit-frame-pointer)
  add_library(squeeze_fuzz_objs OBJECT ${SQUEEZE_FUZZ_INSTRUMENTED})
  target_include_directories(squeeze_fuzz_objs PRIVATE $<TARGET_PROPERTY:squeeze_core,INCLUDE_DIRECTORIES>)
  target_compile_definitions(squeeze_fuzz_objs PRIVATE $<TARGET_PROPERTY:squeeze_core,COMPILE_DEFINITIONS>)
  target_link_libraries(squeeze_fuzz_objs PRIVATE $<TARGET_PROPERTY:squeeze_core,LINK_LIBRARIES>)
  target_compile_options(squeeze_fuzz_objs PRIVATE ${flags})
  target_precompile_headers(squeeze_fuzz_objs PRIVATE ${PROJECT_SOURCE_DIR}/src/pch.h)
  set(fuzzers)
  foreach(t IN LISTS SQUEEZE_FUZZ_TARGETS)
    add_executable(fuzz_${t} ${SQUEEZE_FUZZ_DIR}/${t}_fuzz.cpp ${SQUEEZE_FUZZ_DIR}/fuzz_support.cpp
                   $<TARGET_OBJECTS:squeeze_fuzz_objs>)
    target_include_directories(fuzz_${t} PRIVATE ${PROJECT_SOURCE_DIR}/tests
                               $<TARGET_PROPERTY:squeeze_core,INCLUDE_DIRECTORIES>)
    target_compile_definitions(fuzz_${t} PRIVATE $<TARGET_PROPERTY:squeeze_core,COMPILE_DEFINITIONS>)
    target_compile_options(fuzz_${t} PRIVATE ${flags})
    target_link_options(fuzz_${t} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(fuzz_${t} PRIVATE ${SQUEEZE_FUZZ_BASE_LIB} $<TARGET_PROPERTY:squeeze_core,LINK_LIBRARIES>)
    target_precompile_headers(fuzz_${t} REUSE_FROM squeeze_fuzz_objs)
    list(APPEND fuzzers fuzz_${t})
  endforeach()
  add_custom_target(fuzzers DEPENDS ${fuzzers})
endif()

if(SQUEEZE_BUILD_FUZZ AND SQUEEZE_BUILD_TESTS)
  set(sources)
  foreach(t IN LISTS SQUEEZE_FUZZ_TARGETS)
    list(APPEND sources ${SQUEEZE_FUZZ_DIR}/${t}_fuzz.cpp)
  endforeach()
  add_executable(squeeze_fuzz_replay ${SQUEEZE_FUZZ_DIR}/replay_main.cpp ${SQUEEZE_FUZZ_DIR}/fuzz_support.cpp
                 ${sources})
  target_include_directories(squeeze_fuzz_replay PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(squeeze_fuzz_replay PRIVATE squeeze_core)
  target_precompile_headers(squeeze_fuzz_replay REUSE_FROM squeeze_core)
  target_compile_definitions(squeeze_fuzz_replay PRIVATE SQUEEZE_FUZZ_REPLAY=1)
  foreach(t IN LISTS SQUEEZE_FUZZ_TARGETS)
    set(inputs ${SQUEEZE_FUZZ_DIR}/corpus/${t})
    if(t STREQUAL "config")
      list(APPEND inputs ${PROJECT_SOURCE_DIR}/examples ${PROJECT_SOURCE_DIR}/tests/pipeline/fixtures)
    endif()
    if(EXISTS ${SQUEEZE_FUZZ_DIR}/regressions/${t})
      list(APPEND inputs ${SQUEEZE_FUZZ_DIR}/regressions/${t})
    endif()
    add_test(NAME fuzz_replay_${t}
             COMMAND squeeze_fuzz_replay ${t} --mutations 2000 --max-seconds 2 ${inputs})
    set_tests_properties(fuzz_replay_${t} PROPERTIES LABELS "fuzz" TIMEOUT 300
                         WORKING_DIRECTORY ${PROJECT_BINARY_DIR})
  endforeach()
  # The harness itself: a tolerated user error passes (with mutations of it); an escaped exception
  # exits 1 and a crash ends the process by its signal (134: SIGABRT), the input saved in both cases.
  set(selftest ${SQUEEZE_FUZZ_DIR}/selftest)
  set(replay $<TARGET_FILE:squeeze_fuzz_replay>)
  add_test(NAME fuzz_replay_selftest_pass COMMAND squeeze_fuzz_replay selftest --mutations 200 ${selftest}/user-error)
  add_test(NAME fuzz_replay_selftest_escape COMMAND sh -c
           "rm -f fuzz-failure-selftest.bin; '${replay}' selftest --mutations 0 '${selftest}/escape'; test $? -eq 1 && cmp fuzz-failure-selftest.bin '${selftest}/escape'")
  add_test(NAME fuzz_replay_selftest_crash COMMAND sh -c
           "rm -f fuzz-failure-selftest.bin; '${replay}' selftest --mutations 0 '${selftest}/abort'; test $? -eq 134 && cmp fuzz-failure-selftest.bin '${selftest}/abort'")
  foreach(case pass escape crash)
    # Own folders: the two failing cases write fuzz-failure-selftest.bin, possibly at the same time.
    file(MAKE_DIRECTORY ${PROJECT_BINARY_DIR}/fuzz-selftest/${case})
    set_tests_properties(fuzz_replay_selftest_${case} PROPERTIES LABELS "fuzz" TIMEOUT 120
                         WORKING_DIRECTORY ${PROJECT_BINARY_DIR}/fuzz-selftest/${case})
  endforeach()
endif()
