#!/usr/bin/env bash
# Developer-side: gather what the GPU machine needs into .device/ (ignored by git, carried
# by the device tool; at most 64 MiB travel). The GPU machine cannot reach any network.
#  - llama.cpp: the pinned tree without models, docs and the backends we do not build;
#  - shared/tools/mkmodel.py and skel.gguf (random-weight models of chosen shapes);
#  - wheels the machine lacks (nanobind, jsonschema and its needs, diskcache) and py-spy
#    (a sampling profiler that sees native frames: the machine has no perf or gdb);
#  - llama-cpp-python's Python package (from its sdist), for the side-by-side benchmark.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=.device
rm -rf "$out" && mkdir -p "$out/wheels"
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
src=$(python3 scripts/fetch_llama_cpp.py)
tar -C "$(dirname "$src")" -czf "$out/llama.cpp.tar.gz" \
  --exclude='llama.cpp/models/*' --exclude='llama.cpp/docs' --exclude='llama.cpp/media' \
  --exclude='llama.cpp/tools/ui' --exclude='llama.cpp/examples/*/*.gguf' \
  --exclude='llama.cpp/ggml/src/ggml-'{et,metal,hexagon,sycl,vulkan,opencl,cann,webgpu,zdnn,zendnn,openvino,virtgpu,kompute,musa} \
  "$(basename "$src")"
shared=${SHARED_DIR:-$root/../shared}
cp "$shared/tools/mkmodel.py" "$shared/tools/skel.gguf" "$out/"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$out/wheels" nanobind==3.1.0 jsonschema jsonschema-specifications referencing rpds-py diskcache \
  hypothesis sortedcontainers attrs \
  fastapi annotated-doc opentelemetry-api starlette pydantic pydantic-core annotated-types typing-inspection typing-extensions uvicorn h11 click \
  sse-starlette anyio sniffio httpx httpcore certifi idna openai distro jiter tqdm orjson
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_17_x86_64 \
  -d "$out/wheels" py-spy==0.4.1
cache=${LLAMA_NB_CACHE:-$HOME/.cache/llama-cpp-nanobind}
tar -C "$out" -xzf "$cache/llama_cpp_python-0.3.36.tar.gz" llama_cpp_python-0.3.36/llama_cpp
du -sh "$out"
