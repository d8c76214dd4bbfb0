# make test-sanitize: squeeze and its tests built with AddressSanitizer and UndefinedBehaviorSanitizer
# (SQUEEZE_SANITIZE=ON, its own build folder, build-asan). clang, because make fuzz needs clang
# anyway (libFuzzer) and one compiler's sanitizer runtimes then serve both; gcc's would do as well.
# libtorch, OpenBLAS and the other Debian libraries are not instrumented: only squeeze's code is
# checked, and what the runtimes report from inside those libraries is suppressed by name, with
# the reason, in tests/sanitize/*.supp (see the Makefile for the options).
option(SQUEEZE_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer (clang)" OFF)
if(SQUEEZE_SANITIZE)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "SQUEEZE_SANITIZE=ON needs clang (configure with -DCMAKE_CXX_COMPILER=clang++); "
                        "the compiler is ${CMAKE_CXX_COMPILER_ID}")
  endif()
  # UBSan reports abort (-fno-sanitize-recover), so a test that triggers one fails.
  set(SQUEEZE_SANITIZE_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined
      -fno-omit-frame-pointer)
  add_compile_options(${SQUEEZE_SANITIZE_FLAGS})
  add_link_options(${SQUEEZE_SANITIZE_FLAGS})
endif()
