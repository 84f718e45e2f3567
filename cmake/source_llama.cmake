# Source mode: build the pinned llama.cpp tree as part of the package and bundle
# its shared libraries into the wheel (llama_cpp/lib, found through RPATH $ORIGIN/lib).
if (NOT LLAMA_CPP_SOURCE_DIR)
  execute_process(
    COMMAND "${Python_EXECUTABLE}" "${CMAKE_CURRENT_SOURCE_DIR}/scripts/fetch_llama_cpp.py"
    OUTPUT_VARIABLE LLAMA_CPP_SOURCE_DIR OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE _fetch_rc)
  if (NOT _fetch_rc EQUAL 0)
    message(FATAL_ERROR "could not obtain the llama.cpp source tree (scripts/fetch_llama_cpp.py failed); "
                        "set LLAMA_CPP_SOURCE_DIR to a checkout of commit 0c1e570")
  endif()
endif()
message(STATUS "llama.cpp: building from source at ${LLAMA_CPP_SOURCE_DIR}")

set(BUILD_SHARED_LIBS ON CACHE BOOL "" FORCE)
set(LLAMA_BUILD_COMMON ON CACHE BOOL "")  # chat templates (Jinja), JSON schema to grammar
set(LLAMA_BUILD_TESTS OFF CACHE BOOL "")
set(LLAMA_BUILD_TOOLS OFF CACHE BOOL "")
set(LLAMA_BUILD_EXAMPLES OFF CACHE BOOL "")
set(LLAMA_BUILD_SERVER OFF CACHE BOOL "")
set(LLAMA_BUILD_APP OFF CACHE BOOL "")
set(LLAMA_OPENSSL OFF CACHE BOOL "")
set(LLAMA_BUILD_IS_DEV OFF CACHE BOOL "")
# llama.cpp's RPC backend: LlamaConfig(rpc_servers=...) and python -m llama_cpp.rpc_server.
# -DGGML_RPC=OFF leaves it out (both then say so).
set(GGML_RPC ON CACHE BOOL "")

# CPU: -march=native crashed on an AMX machine (SIGSEGV in ggml_backend_amx_mul_mat), and a
# native build is not portable anyway. Default to ggml's non-native x86-64 set (AVX, AVX2,
# FMA, F16C): it runs on every x86-64 CPU of the last decade.
if (LLAMA_NATIVE AND NOT LLAMA_PORTABLE)
  set(GGML_NATIVE ON CACHE BOOL "" FORCE)
else()
  set(GGML_NATIVE OFF CACHE BOOL "" FORCE)
endif()

# ggml's own thread pool, not OpenMP: with OpenMP's spinning barriers, a streaming consumer
# thread woken once per token on a machine whose cores all decode slowed decoding 2.8x
# (2-core machine, docs/NOTES.md). -DGGML_OPENMP=ON still opts in.
if (NOT DEFINED GGML_OPENMP)
  set(GGML_OPENMP OFF CACHE BOOL "")
endif()

# CUDA on by default when a usable toolkit (compiler and cuBLAS) is present;
# -DGGML_CUDA=OFF or =ON decides explicitly. LLAMA_NB_CUDA_STATUS records the decision and
# its reason for the build log and for system_info(). The automatic choice is a normal
# variable, not a cache entry, so that a later configure of the same build folder detects
# again instead of reading its own earlier answer as a user's request.
if (DEFINED GGML_CUDA)
  if (GGML_CUDA)
    set(_cuda_reason "GGML_CUDA=ON requested")
  else()
    set(LLAMA_NB_CUDA_STATUS "off (GGML_CUDA=OFF requested)")
  endif()
else()
  include(CheckLanguage)
  check_language(CUDA)
  set(GGML_CUDA OFF)
  if (NOT CMAKE_CUDA_COMPILER)
    find_program(_nvcc nvcc HINTS "${CUDAToolkit_ROOT}" "$ENV{CUDAToolkit_ROOT}" "$ENV{CUDA_PATH}"
                 PATH_SUFFIXES bin)
    if (_nvcc)
      set(LLAMA_NB_CUDA_STATUS "off (nvcc found at ${_nvcc}, but it cannot compile a CUDA program with this host compiler)")
    else()
      set(LLAMA_NB_CUDA_STATUS "off (no nvcc on PATH or in CUDAToolkit_ROOT / CUDA_PATH)")
    endif()
  else()
    find_package(CUDAToolkit QUIET)
    if (NOT CUDAToolkit_FOUND)
      set(LLAMA_NB_CUDA_STATUS "off (nvcc found at ${CMAKE_CUDA_COMPILER}, but not the CUDA toolkit's runtime library)")
    elseif (NOT TARGET CUDA::cublas)
      set(LLAMA_NB_CUDA_STATUS "off (nvcc ${CUDAToolkit_VERSION} found at ${CMAKE_CUDA_COMPILER}, but cuBLAS was not found in ${CUDAToolkit_LIBRARY_DIR})")
    else()
      set(GGML_CUDA ON)
      set(_cuda_reason "toolkit with cuBLAS found")
    endif()
  endif()
endif()
# SYSTEM: llama.cpp's headers are not ours; -Werror applies to our code only.
add_subdirectory("${LLAMA_CPP_SOURCE_DIR}" llama.cpp EXCLUDE_FROM_ALL SYSTEM)

if (GGML_CUDA)
  find_package(CUDAToolkit QUIET)
  get_target_property(_cuda_archs ggml-cuda CUDA_ARCHITECTURES)
  string(REPLACE ";" " " _cuda_archs "${_cuda_archs}")
  set(LLAMA_NB_CUDA_STATUS "on (nvcc ${CUDAToolkit_VERSION}, architectures ${_cuda_archs}; ${_cuda_reason})")
endif()
# Seen in 'pip install -v' and scripts/run.sh. A status line, not a warning: CMake wraps a
# warning's text over several lines, and scripts/_common.sh's build_progress shows one.
message(STATUS "CUDA: ${LLAMA_NB_CUDA_STATUS}")

# One file per library in the wheel: drop the VERSION/SOVERSION symlink chain.
set(_llama_targets llama llama-common ggml ggml-base ggml-cpu)
if (GGML_CUDA)
  list(APPEND _llama_targets ggml-cuda)
endif()
if (GGML_RPC)
  list(APPEND _llama_targets ggml-rpc)
endif()
foreach(t ${_llama_targets})
  set_property(TARGET ${t} PROPERTY VERSION)
  set_property(TARGET ${t} PROPERTY SOVERSION)
  set_target_properties(${t} PROPERTIES INSTALL_RPATH "$ORIGIN")
  install(TARGETS ${t} LIBRARY DESTINATION ${LLAMA_NB_LIB_INSTALL_DIR} COMPONENT python)
endforeach()
