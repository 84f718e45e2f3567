#!/usr/bin/env bash
# Build the pinned llama.cpp tree on its own and lay out a prefix that the package's
# "prebuilt" mode consumes:  PREFIX/lib (shared libraries), PREFIX/include (headers),
# PREFIX/bin (llama-completion and other reference tools, linked to the same libraries).
#
# The test suite uses this prefix twice: the package is built against it (prebuilt mode),
# and the reference binaries compare their output with ours over the very same libllama.
#
#   scripts/build_llama_cpp.sh [PREFIX]          (default: build/llama-prefix)
# Environment: LLAMA_CPP_SOURCE_DIR (default: fetched by scripts/fetch_llama_cpp.py),
#   LLAMA_TOOLS (targets to build, default "llama-completion llama-tokenize"),
#   CMAKE_ARGS (extra flags, e.g. "-DGGML_CUDA=ON"), JOBS.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
prefix=$(realpath -m "${1:-$root/build/llama-prefix}")
src=${LLAMA_CPP_SOURCE_DIR:-$(python3 "$root/scripts/fetch_llama_cpp.py")}
tools=${LLAMA_TOOLS:-llama-completion llama-tokenize}
build="$prefix.build"
jobs=${JOBS:-$(nproc)}

# Same CPU flags as the package build (CMakeLists.txt): no -march=native, AVX2 level; ggml's
# own thread pool instead of OpenMP (with OpenMP, a streaming consumer waking once per token
# on a machine whose cores all decode slowed decoding 2.8x on the 2-core CI machine; see
# docs/NOTES.md). The RPC backend too, as in the package (LlamaConfig(rpc_servers=...)).
# shellcheck disable=SC2086
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_IS_DEV=OFF -DGGML_RPC=ON -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON ${CMAKE_ARGS:-} >"$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 1; }
# shellcheck disable=SC2086
cmake --build "$build" -j "$jobs" --target llama llama-common $tools

rm -rf "$prefix"
mkdir -p "$prefix/lib" "$prefix/include" "$prefix/bin"
cp -P "$build"/bin/lib*.so* "$prefix/lib/"
cp "$src"/include/llama.h "$src"/include/llama-cpp.h "$src"/ggml/include/*.h "$prefix/include/"
# llama.cpp's common library (chat templates, JSON schema to grammar): its headers too.
mkdir -p "$prefix/include/jinja"
cp "$src"/common/*.h "$prefix/include/"
cp "$src"/common/jinja/*.h "$prefix/include/jinja/"
for t in $tools; do cp "$build/bin/$t" "$prefix/bin/"; done
echo "$prefix"
