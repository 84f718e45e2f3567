"""Our changes to the pinned llama.cpp tree, applied when it is unpacked
(scripts/fetch_llama_cpp.py). Each one is an exact text replacement that must match once,
so a different tree fails loudly instead of building unpatched. Every build made from the
tree (the package, the reference prefix with llama-bench and llama-completion) has them, so
benchmarks still compare like with like. docs/NOTES.md says why each exists.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

# (file in the tree, text that must occur once, its replacement)
PATCHES: list[tuple[str, str, str]] = [
    # CUDA graphs are cached per context under the address of the graph's first node. Every
    # graph llama.cpp builds after another of a different shape reuses the same metadata
    # buffer, so a prompt's graph and the one-token graph after it have the same first-node
    # address: the prompt overwrote the cached properties of the one-token graph, whose next
    # decode then ran without a CUDA graph and the one after re-captured it (about 4 ms per
    # call of a 135M model on an H100; llama.cpp issue 28652). The key now also holds the
    # node count and the first node's shape, so each shape keeps its own CUDA graph; a key
    # that still collides only costs what it cost before (the properties are compared).
    (
        "ggml/src/ggml-cuda/ggml-cuda.cu",
        """static const void * ggml_cuda_graph_get_key(ggml_cgraph * cgraph) {
    return cgraph->nodes[0];
}""",
        """static const void * ggml_cuda_graph_get_key(ggml_cgraph * cgraph) {
    // llama-cpp-nanobind: first node's address, node count and first node's shape
    // (scripts/llama_cpp_patches.py).
    if (cgraph->n_nodes <= 0) {
        return cgraph->nodes[0];
    }
    const ggml_tensor * first = cgraph->nodes[0];
    uint64_t key = (uint64_t) (uintptr_t) first;
    const uint64_t parts[] = { (uint64_t) cgraph->n_nodes, (uint64_t) first->ne[0], (uint64_t) first->ne[1],
                               (uint64_t) first->ne[2], (uint64_t) first->ne[3] };
    for (const uint64_t part : parts) {
        key = (key ^ part) * 0x100000001b3ULL;
    }
    return (const void *) (uintptr_t) key;
}""",
    ),
]


def digest() -> str:
    """Identifies this set of patches (recorded in the unpacked tree's stamp)."""
    h = hashlib.sha256()
    for path, old, new in PATCHES:
        h.update(f"{path}\0{old}\0{new}\0".encode())
    return h.hexdigest()[:16]


def apply(tree: Path) -> None:
    for path, old, new in PATCHES:
        file = tree / path
        text = file.read_text(encoding="utf-8")
        if text.count(old) != 1:
            raise SystemExit(f"llama.cpp patch does not apply: {path} has the text to replace "
                             f"{text.count(old)} times (expected once)")
        file.write_text(text.replace(old, new), encoding="utf-8")
