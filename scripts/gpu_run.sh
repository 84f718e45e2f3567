#!/usr/bin/env bash
# On the GPU machine (device tool; see docs/GPU.md): build llama.cpp and the package with
# CUDA, run the test suite on the GPU, and run the side-by-side benchmark. Needs .device/
# (scripts/pack_for_device.sh) carried along; reaches no network.
#
#   bash scripts/gpu_run.sh [setup] [build] [models] [test] [asan] [bench] [big] [poolbench] [pool_e2e] [prefixbench] [specbench] [serverbench] [scale] [bench_poll0] [bench_exp] [poolbench_exp] [stream_diag] [first_tokens] [profile] [diag] [pack_prefix] [collect]
#   (default: setup build models test bench)
# Outputs (logs, JSON) go to $OUT when set (the device tool's folder), else build/gpu-out.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dev=$root/.device
prefix=$root/build/cuda-prefix
# GPU_SYSTEM_CC=1: build everything with /usr/bin/gcc, g++ instead of the image's
# /opt/gcc wrappers (named by CC/CXX there).
if [ "${GPU_SYSTEM_CC:-0}" = 1 ]; then
  export CC=/usr/bin/gcc CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++
  prefix=$root/build/cuda-prefix-syscc
fi
# The machine is disposable: install into its own Python (the one that has numpy, pytest, ...).
py=${GPU_PYTHON:-python3}
models=$root/build/gpu-models
out=${OUT:-$root/build/gpu-out}
mkdir -p "$out" "$models"
export LLAMA_CPP_SOURCE_DIR=$root/third_party/llama.cpp
phases=${*:-setup build models test bench}
stamp() { echo "[$(date +%H:%M:%S)] $*"; }

setup() {
  if [ ! -f "$LLAMA_CPP_SOURCE_DIR/CMakeLists.txt" ]; then
    # The packed tree is the fetched one, patched, with its stamp (scripts/fetch_llama_cpp.py).
    mkdir -p third_party && tar -C third_party -xzf "$dev/llama.cpp.tar.gz"
  fi
  "$py" -m pip install -q --no-index --no-deps "$dev"/wheels/*.whl
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
}

# What the CUDA prefix is built from: a packed prefix (pack_prefix) is reused only when this matches.
recipe() {
  { cat scripts/build_llama_cpp.sh "$LLAMA_CPP_SOURCE_DIR/.llama-cpp-nanobind-source"
    echo "${CUDA_ARCHS:-90} ${GPU_SYSTEM_CC:-0} $LLAMA_TOOLS_GPU"; } | sha256sum | cut -c1-16
}
LLAMA_TOOLS_GPU="llama-completion llama-tokenize llama-bench llama-batched-bench llama-quantize ggml-rpc-server"
packed=$root/.device-prefix  # carried by the device tool when pack_prefix's output was saved there

build() {
  if [ ! -f "$prefix/recipe" ] && [ -f "$packed/recipe" ] && [ "$(cat "$packed/recipe")" = "$(recipe)" ]; then
    stamp "llama.cpp with CUDA: unpacking the prefix built by an earlier run (.device-prefix)"
    mkdir -p "$(dirname "$prefix")"
    cat "$packed"/prefix.tar.xz.* | xz -d | tar -C "$(dirname "$prefix")" -xf -
  fi
  if [ ! -f "$prefix/recipe" ] || [ "$(cat "$prefix/recipe")" != "$(recipe)" ]; then
    stamp "llama.cpp with CUDA"
    CMAKE_ARGS="-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS:-90}" LLAMA_TOOLS="$LLAMA_TOOLS_GPU" \
      JOBS=$(nproc) scripts/build_llama_cpp.sh "$prefix" > "$out/build-llama.log" 2>&1 || { tail -50 "$out/build-llama.log"; exit 1; }
    recipe > "$prefix/recipe"
  fi
  stamp "package (prebuilt mode against the CUDA build)"
  LLAMA_LIB_DIR=$prefix/lib LLAMA_INCLUDE_DIR=$prefix/include \
    "$py" -m pip install -q --no-build-isolation --no-deps --force-reinstall . > "$out/build-package.log" 2>&1 \
    || { tail -50 "$out/build-package.log"; exit 1; }
  stamp "built"
}

# The CUDA prefix, compressed and cut into pieces the device tool brings back (16 MiB each, 8
# files at most): save them under .device-prefix/ here and carry it, and the next machine skips
# the 4.5-minute build.
pack_prefix() {
  stamp "packing the CUDA prefix into \$OUT"
  tar -C "$(dirname "$prefix")" -cf - "$(basename "$prefix")" | xz -T0 -6 | split -b 15M - "$out/prefix.tar.xz."
  cp "$prefix/recipe" "$out/recipe"
  ls -la "$out"/prefix.tar.xz.* "$out/recipe"
}

# The device tool brings back at most 8 files: the logs and JSON of this run go into one archive
# (the prefix pieces stay separate).
# Each collect makes a new archive (results.tgz, results-2.tgz, ...), so a call can collect
# early and again later.
collect() {
  local name=results.tgz n=1
  while [ -e "$out/$name" ]; do n=$((n + 1)); name=results-$n.tgz; done
  (cd "$out" && find . -maxdepth 1 -type f ! -name 'prefix.tar.xz.*' ! -name 'results*.tgz' -printf '%P\n' \
    | tar -czf "$name" -T - --remove-files)
  ls -la "$out"
}

make_model() {  # name dim layers heads kv_heads ffn quant
  local name=$1 f16=$models/$1-f16.gguf q=$models/$1-$7.gguf
  [ -f "$q" ] && return 0
  PYTHONPATH=$LLAMA_CPP_SOURCE_DIR/gguf-py "$py" "$dev/mkmodel.py" "$dev/skel.gguf" "$f16" \
    --dim "$2" --layers "$3" --heads "$4" --kv-heads "$5" --ffn "$6" --name "$name" > /dev/null
  LD_LIBRARY_PATH=$prefix/lib "$prefix/bin/llama-quantize" "$f16" "$q" "$7" > "$out/quantize-$name.log" 2>&1
  rm -f "$f16"
}

models() {
  stamp "random-weight models (shared/tools/mkmodel.py)"
  make_model m135 576 30 9 3 1536 q8_0
  make_model m1b 2048 16 32 8 8192 q4_k_m
  stamp "models ready"
}

big() {
  make_model m8b 4096 32 32 8 14336 q4_k_m
}

test() {
  stamp "test suite on the GPU"
  # No third-party pytest plugins: the image's (jaxtyping, ...) import numpy before our
  # conftest, and libllama-common crashes when loaded after numpy there (docs/NOTES.md).
  # Greedy equality with the CUDA build's llama-completion runs on m135 (as SmolLM2) and m1b.
  local more=""
  [ -f "$models/m1b-q4_k_m.gguf" ] && more=$models/m1b-q4_k_m.gguf
  (cd tests && PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 LLAMA_NB_GPU_RUN=1 LLAMA_NB_SMOLLM2=$models/m135-q8_0.gguf \
    LLAMA_NB_RANDOM_MODELS=$more LLAMA_NB_REFERENCE_PREFIX=$prefix \
    "$py" -m pytest -q -p no:cacheprovider -rs "$root/tests" 2>&1 | tee "$out/test.log" | tail -25)
}

# AddressSanitizer + UBSan on this machine's 16 cores (CPU backend): llama.cpp built with the
# sanitizers into build/asan-prefix, the package against it with LLAMA_SANITIZE=ON, then the
# ASAN_TESTS files (default: the issue-13 files and the core API) with the runtime preloaded.
asan() {
  local ap=$root/build/asan-prefix san="-fsanitize=address,undefined -fno-omit-frame-pointer"
  stamp "llama.cpp with ASan + UBSan (CPU)"
  CFLAGS="$san" CXXFLAGS="$san" LDFLAGS="-fsanitize=address,undefined" CMAKE_ARGS="-DGGML_CUDA=OFF" \
    LLAMA_TOOLS="llama-completion llama-tokenize llama-quantize" \
    JOBS=$(nproc) scripts/build_llama_cpp.sh "$ap" > "$out/asan-build-llama.log" 2>&1 || { tail -30 "$out/asan-build-llama.log"; return 1; }
  # m135 (SmolLM2's shape) quantized with this build's llama-quantize when no CUDA build wrote it
  ASAN_OPTIONS=detect_leaks=0 prefix=$ap make_model m135 576 30 9 3 1536 q8_0
  stamp "package with LLAMA_SANITIZE=ON"
  LLAMA_LIB_DIR=$ap/lib LLAMA_INCLUDE_DIR=$ap/include CMAKE_ARGS="-DLLAMA_SANITIZE=ON" \
    "$py" -m pip install -q --no-build-isolation --no-deps --force-reinstall . > "$out/asan-build-package.log" 2>&1 \
    || { tail -30 "$out/asan-build-package.log"; return 1; }
  stamp "tests under ASan + UBSan"
  local tests=${ASAN_TESTS:-"test_hostile_gguf.py test_template_limits.py test_bad_arguments.py test_load_faults.py test_llama.py test_errors.py test_grammar.py test_state.py test_pool.py test_chat.py"}
  (cd tests && PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 LLAMA_NB_GPU_RUN=1 LLAMA_NB_SMOLLM2=$models/m135-q8_0.gguf \
    LLAMA_NB_REFERENCE_PREFIX=$ap LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$py" -m pytest -q -p no:cacheprovider -rs $tests 2>&1 | tee "$out/asan-test.log" | tail -25)
}

bench() {
  stamp "benchmark"
  local args=()
  for m in ${BENCH_MODELS:-m135-q8_0 m1b-q4_k_m m8b-q4_k_m}; do
    m=$models/$m.gguf
    [ -f "$m" ] && args+=(--model "$m")
  done
  # shellcheck disable=SC2086
  "$py" benchmarks/bench.py --prefix "$prefix" "${args[@]}" --ngl 99 --runs 5 ${BENCH_ARGS:-} \
    --llama-cpp-python "$dev/llama_cpp_python-0.3.36" --json "$out/${BENCH_JSON:-bench}.json" 2>&1 \
    | tee "$out/${BENCH_JSON:-bench}.log" | grep -v "round [0-9]"
}

poolbench() {
  stamp "pool benchmark (continuous batching) on m1b; GPU memory by pool size on m8b when it exists"
  local mem=()
  [ -f "$models/m8b-q4_k_m.gguf" ] && mem=(--memory 1,4 --memory-model "$models/m8b-q4_k_m.gguf")
  "$py" benchmarks/bench_pool.py --prefix "$prefix" --model "$models/m1b-q4_k_m.gguf" --parallel 1,16,64 \
    --ngl 99 --runs 3 --llama-cpp-python "$dev/llama_cpp_python-0.3.36" --lcp-requests 16 "${mem[@]}" \
    --json "$out/bench_pool.json" 2>&1 | tee "$out/bench_pool.log"
}

# Issue 15: the whole batch (prompts included) against native llama-batched-bench's T, 5 runs,
# at 16 and 64 parallel, on m1b and (after `big`) m8b.
pool_e2e() {
  local m
  for m in ${E2E_MODELS:-m1b-q4_k_m m8b-q4_k_m}; do
    [ -f "$models/$m.gguf" ] || continue
    stamp "pool, whole batch against native T, $m"
    "$py" benchmarks/bench_pool.py --prefix "$prefix" --model "$models/$m.gguf" --parallel 16,64 --ngl 99 \
      --runs 3 --e2e 5 --json "$out/pool_e2e_$m.json" 2>&1 | tee "$out/pool_e2e_$m.log" | tail -12
  done
}

# Issue 15 item 2: speculative decoding on the GPU (the model drafting for itself: the upper
# bound; draft-free n-grams), each against plain greedy and native llama-bench tg128 in one run.
# SPEC_MODEL names a model in $models (default m8b-q4_k_m). Random weights have near-tied
# logits: a batch and a one-token decode then pick different tokens, so they show next to no
# acceptance even drafting for themselves (measured); a real model (SmolLM2, carried in two
# pieces) shows what speculation does.
specbench() {
  local m=$models/${SPEC_MODEL:-m8b-q4_k_m}.gguf
  stamp "speculation on $(basename "$m"): itself as draft"
  "$py" benchmarks/bench_speculative.py --model "$m" --draft-model "$m" -ngl 99 --threads 0 \
    --runs ${SPEC_RUNS:-3} --draft-max ${SPEC_DRAFT_MAX:-16} --native "$prefix" --json "$out/spec_self.json" 2>&1 | tee "$out/spec_self.log"
  stamp "speculation on $(basename "$m"): n-grams"
  "$py" benchmarks/bench_speculative.py --model "$m" -ngl 99 --threads 0 \
    --runs ${SPEC_RUNS:-3} --draft-max ${SPEC_DRAFT_MAX:-16} --native "$prefix" --json "$out/spec_ngram.json" 2>&1 | tee "$out/spec_ngram.log"
}

# Issue 15: 64 requests sharing a 1,000-token system prompt, with and without shared prefixes.
prefixbench() {
  local m
  for m in ${E2E_MODELS:-m1b-q4_k_m m8b-q4_k_m}; do
    [ -f "$models/$m.gguf" ] || continue
    stamp "shared prefixes, $m"
    "$py" benchmarks/bench_prefix.py --model "$models/$m.gguf" --requests 64 --system-tokens 1000 \
      --question-tokens 30 --ngl 99 ${PREFIX_ARGS:-} --json "$out/prefix_$m.json" 2>&1 | tee "$out/prefix_$m.log"
  done
}

# The OpenAI server (issue 14) on m1b: 64 streaming clients against native llama-batched-bench's
# S_TG at 64 and against the same requests through LlamaPool in one process.
serverbench() {
  stamp "server benchmark on m1b"
  "$py" benchmarks/bench_server.py --model "$models/m1b-q4_k_m.gguf" --clients ${SERVER_CLIENTS:-64} \
    --max-tokens ${SERVER_TOKENS:-128} --rounds ${SERVER_ROUNDS:-3} --native "$prefix" --threads "$(nproc)" \
    ${SERVER_ARGS:-} --json "$out/bench_server.json" 2>&1 | tee "$out/bench_server.log"
}

# Issue 16 on two GPUs (nvidia-h200-x2): m8b split by layer and by row over both GPUs and over
# two RPC workers on loopback, each against native in the same run; m1b's pool on one GPU
# against two replicas. SCALE_PARTS picks (default: split rpc replicas).
scale() {
  local parts=${SCALE_PARTS:-split rpc replicas} args=()
  [[ " $parts " == *" split "* ]] && args+=(--split ${SCALE_SPLITS:-layer,row,tensor})
  [[ " $parts " == *" rpc "* ]] && args+=(--rpc)
  [[ " $parts " == *" replicas "* ]] && args+=(--replicas-model "$models/m1b-q4_k_m.gguf")
  stamp "scale-out: $parts"
  nvidia-smi --query-gpu=index,name,memory.used,memory.total --format=csv,noheader | tee "$out/gpus.txt"
  "$py" benchmarks/bench_scale.py --prefix "$prefix" --model "$models/m8b-q4_k_m.gguf" "${args[@]}" \
    --runs ${SCALE_RUNS:-3} --rounds ${SCALE_ROUNDS:-2} --json "$out/bench_scale.json" 2>&1 | tee "$out/bench_scale.log"
}

# Experiments behind the defaults (BENCHMARKS.md), each against the defaults: sampling on one
# thread, sampling on the device, CPU threads that busy-wait as llama.cpp's do by default.
bench_poll0() {
  stamp "benchmark with cpu_poll=0"
  BENCH_JSON=bench_poll0 BENCH_ARGS="--cpu-poll 0" bench
}

# --model arguments for BENCH_EXP_MODELS (default m135 and m8b) that exist, into the caller's args.
exp_model_args() {
  for m in ${BENCH_EXP_MODELS:-m135-q8_0 m8b-q4_k_m}; do
    [ -f "$models/$m.gguf" ] && args+=(--model "$models/$m.gguf")
  done
  return 0
}

# `generate` alone under other LlamaConfig settings, each variant timed in the same rounds as
# native and the defaults: BENCH_EXPERIMENTS="name:key=value,key=value ...".
bench_exp() {
  local v args=()
  for v in ${BENCH_EXPERIMENTS:-t1:n_threads=1,n_threads_batch=16 poll50:cpu_poll=50}; do args+=(--variant "$v"); done
  exp_model_args
  stamp "benchmark of variants: ${BENCH_EXPERIMENTS:-defaults}"
  # shellcheck disable=SC2086
  "$py" benchmarks/bench.py --prefix "$prefix" --ngl 99 --runs 5 --rounds "${BENCH_EXP_ROUNDS:-5}" --decode-only \
    ${BENCH_EXP_ARGS:---native-threads 16,1} "${args[@]}" --json "$out/bench_exp.json" > "$out/bench_exp.log" 2>&1
  tail -12 "$out/bench_exp.log"
}

poolbench_exp() {
  local name args
  for name in ${POOL_EXPERIMENTS:-threads1:--sampling-threads=1 device:--device-sampling poll50:--cpu-poll=50}; do
    args=${name#*:}; name=${name%%:*}
    stamp "pool benchmark, $name (${args//,/ })"
    # shellcheck disable=SC2086
    "$py" benchmarks/bench_pool.py --prefix "$prefix" --model "$models/m1b-q4_k_m.gguf" --parallel 16,64 \
      --ngl 99 --runs 3 ${args//,/ } --json "$out/pool_$name.json" > "$out/pool_$name.log" 2>&1
    tail -6 "$out/pool_$name.log"
  done
}

# Where streaming's extra time goes (first piece, per token), one way against another.
stream_diag() {
  local args=()
  exp_model_args
  stamp "stream overhead: ${BENCH_EXP_MODELS:-m135-q8_0 m8b-q4_k_m}"
  "$py" benchmarks/stream_overhead.py "${args[@]}" --ngl 99 --runs 7 --rounds "${BENCH_EXP_ROUNDS:-3}" \
    > "$out/stream_overhead.txt" 2> "$out/stream_overhead.log" || tail -20 "$out/stream_overhead.log"
  grep '^/' "$out/stream_overhead.txt" || true
}

# What the first tokens after a prompt cost against a steady token (and llama.cpp's CUDA graph log).
first_tokens() {
  local args=()
  exp_model_args
  stamp "first tokens after a prompt: ${BENCH_EXP_MODELS:-m135-q8_0 m8b-q4_k_m}"
  "$py" benchmarks/first_tokens.py "${args[@]}" --ngl 99 > "$out/first_tokens.txt" 2> "$out/first_tokens.log" \
    || tail -20 "$out/first_tokens.log"
  grep -v '^[ {}]' "$out/first_tokens.txt" | head -40 || true
  grep '^    ' "$out/first_tokens.txt" | grep ' x ' | head -30 || true
}

profile() {
  stamp "where the time of a 128-token generate goes (llama.cpp's decode time vs ours; py-spy, native frames)"
  "$py" benchmarks/profile_decode.py --model "$models/m135-q8_0.gguf" --seconds 8 > "$out/profile-m135.json" 2>&1 &
  local pid=$!
  sleep 4
  py-spy record --native --nonblocking -r 2000 -d 3 -f raw -o "$out/profile-m135.txt" -p "$pid" > /dev/null 2>&1 || true
  wait "$pid" || true
  "$py" benchmarks/profile_decode.py --model "$models/m1b-q4_k_m.gguf" --seconds 6 > "$out/profile-m1b.json" 2>&1 || true
  cat "$out"/profile-m*.json
}

diag() {
  stamp "libllama-common load after numpy (docs/GPU.md)"
  "$py" - "$prefix/lib/libllama-common.so" <<'PY' > "$out/diag.log" 2>&1 || true
import ctypes, os, sys
import numpy
maps = open("/proc/self/maps").read().splitlines()
print("after numpy:", sorted({l.split()[-1] for l in maps if "stdc++" in l or "gcc_s" in l}))
print("LD_PRELOAD:", os.environ.get("LD_PRELOAD"))
sys.stdout.flush()
ctypes.CDLL(sys.argv[1])
print("loaded libllama-common after numpy")
PY
  echo "exit: $?" >> "$out/diag.log"
  ldd "$prefix/lib/libllama-common.so" | grep -E "stdc|gcc" >> "$out/diag.log" || true
  cat "$out/diag.log"
}

# A failing phase (a test failure, say) does not stop the later ones; the exit status tells.
failed=0
for phase in $phases; do
  "$phase" || { echo "phase '$phase' failed"; failed=1; }
done
exit $failed
