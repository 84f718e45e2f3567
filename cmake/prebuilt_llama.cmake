# Prebuilt mode: link against an existing llama.cpp build and bundle its shared
# libraries into the wheel (llama_cpp/lib). Needs, in LLAMA_LIB_DIR, libllama,
# libllama-common and the libggml* libraries they depend on; in LLAMA_INCLUDE_DIR,
# llama.h, ggml's headers and common's headers (common/*.h, common/jinja/*.h).
message(STATUS "llama.cpp: prebuilt libraries from ${LLAMA_LIB_DIR}, headers from ${LLAMA_INCLUDE_DIR}")
foreach(required "${LLAMA_LIB_DIR}/libllama.so" "${LLAMA_LIB_DIR}/libllama-common.so"
                 "${LLAMA_INCLUDE_DIR}/llama.h" "${LLAMA_INCLUDE_DIR}/ggml.h" "${LLAMA_INCLUDE_DIR}/chat.h")
  if (NOT EXISTS "${required}")
    message(FATAL_ERROR "prebuilt llama.cpp: ${required} not found (check LLAMA_LIB_DIR / LLAMA_INCLUDE_DIR)")
  endif()
endforeach()

# The libraries decided about CUDA when they were built; say what they hold.
file(GLOB _cuda_lib "${LLAMA_LIB_DIR}/libggml-cuda.so*")
if (_cuda_lib)
  set(LLAMA_NB_CUDA_STATUS "on (prebuilt libggml-cuda in ${LLAMA_LIB_DIR})")
else()
  set(LLAMA_NB_CUDA_STATUS "off (the prebuilt llama.cpp in ${LLAMA_LIB_DIR} has no libggml-cuda)")
endif()
message(STATUS "CUDA: ${LLAMA_NB_CUDA_STATUS}")

add_library(llama SHARED IMPORTED GLOBAL)
set_target_properties(llama PROPERTIES
  IMPORTED_LOCATION "${LLAMA_LIB_DIR}/libllama.so"
  INTERFACE_INCLUDE_DIRECTORIES "${LLAMA_INCLUDE_DIR}")
add_library(llama-common SHARED IMPORTED GLOBAL)
set_target_properties(llama-common PROPERTIES
  IMPORTED_LOCATION "${LLAMA_LIB_DIR}/libllama-common.so"
  INTERFACE_INCLUDE_DIRECTORIES "${LLAMA_INCLUDE_DIR}"
  INTERFACE_LINK_LIBRARIES llama)

# Bundle each library once, under the name the dynamic loader asks for (its
# SONAME, e.g. libllama.so.0): wheels cannot hold symlinks, and the fully
# versioned file and the bare .so link are not needed at run time.
file(GLOB _llama_libs "${LLAMA_LIB_DIR}/libllama*.so*" "${LLAMA_LIB_DIR}/libggml*.so*")
foreach(lib ${_llama_libs})
  get_filename_component(name "${lib}" NAME)
  if (name MATCHES "-impl\\.")
    set(_wanted FALSE)  # private helpers of llama.cpp's tools
  elseif (name MATCHES "^(lib[^.]+)\\.so\\.[0-9]+$")
    set(_wanted TRUE)
  elseif (name MATCHES "^(lib[^.]+)\\.so$")
    # A bare .so is only needed when there is no SONAME-versioned sibling.
    file(GLOB _versioned "${LLAMA_LIB_DIR}/${CMAKE_MATCH_1}.so.[0-9]*")
    if (_versioned)
      set(_wanted FALSE)
    else()
      set(_wanted TRUE)
    endif()
  else()
    set(_wanted FALSE)
  endif()
  if (_wanted)
    file(REAL_PATH "${lib}" _real)
    install(FILES "${_real}" RENAME "${name}" DESTINATION ${LLAMA_NB_LIB_INSTALL_DIR} COMPONENT python)
  endif()
endforeach()
