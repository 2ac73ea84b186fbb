# libFuzzer targets (docs/RELIABILITY.md, "Fuzzing").
# Included from the top-level CMakeLists.txt with -DCLLM_FUZZ=ON, in its
# directory scope so the per-source options set there (kernels.c) apply to
# the fuzz build of the product library too.
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "CLLM_FUZZ=ON needs clang (libFuzzer); configure with CC=clang "
                      "(Debian: apt-get install clang libclang-rt-14-dev for clang 14). This is ${CMAKE_C_COMPILER_ID}.")
endif()
if(CLLM_SANITIZE)
  message(FATAL_ERROR "CLLM_FUZZ=ON brings its own sanitizers; leave CLLM_SANITIZE empty")
endif()

# -Wno-pass-failed: the coverage instrumentation keeps some `omp simd` loops
# from vectorising, which clang reports as a warning (an error with -Werror).
set(CLLM_FUZZ_FLAGS -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g
    -Wno-pass-failed)

# The product library again, instrumented for coverage and sanitizers.
cllm_add_core_library(cllm_fuzz_core)
target_compile_options(cllm_fuzz_core PRIVATE ${CLLM_FUZZ_FLAGS})

set(CLLM_FUZZ_TARGETS safetensors checkpoint tokenizer_file tokenizer_roundtrip tokenizer_train hf_tokenizer token_cache json config metrics plot)
foreach(t ${CLLM_FUZZ_TARGETS})
  add_executable(fuzz_${t} test/fuzz/fuzz_${t}.c test/fuzz/fuzz_support.c)
  target_compile_options(fuzz_${t} PRIVATE ${CLLM_FUZZ_FLAGS})
  target_link_options(fuzz_${t} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_${t} PRIVATE cllm_fuzz_core)
endforeach()
list(TRANSFORM CLLM_FUZZ_TARGETS PREPEND fuzz_ OUTPUT_VARIABLE CLLM_FUZZ_EXECUTABLES)
add_custom_target(fuzz DEPENDS ${CLLM_FUZZ_EXECUTABLES})
