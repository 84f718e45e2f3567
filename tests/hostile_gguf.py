"""Hostile GGUF files: a generator of broken variants of a tiny llama model, and a runner
that loads each one in a worker subprocess, so a crash or a hang is recorded instead of
taking the caller down (issue 13: "a stranger's GGUF never takes the process down").

The generator writes GGUF v3 itself (``struct``, no gguf-py): a small but complete llama model
(SentencePiece-style vocabulary with the 256 byte tokens, F32/F16/Q8_0 weights) that loads and
generates, and a record of the byte offset of every section and field, so raw mutations can
hit exact places. Each case is named ``class:index:seed`` and is re-created from its name alone.

Outcomes: ``loaded`` (the model loaded, its metadata was listed and it generated two greedy
tokens) and ``ModelLoadError`` with a message that says what is wrong with the file are
accepted; any other exception (``Type`` at load, ``Type@metadata``, ``Type@generate``), a crash
(the worker died: ``crash:SIGABRT``...) or a hang (no answer within the timeout) is a failure.
Crashes name the abort line from the worker's stderr (``GGML_NO_BACKTRACE`` is set: no gdb).

Command line (from the repository root)::

    python tests/hostile_gguf.py --cases 3000 --seed 1 --save-failures /tmp/hostile --json summary.json
    python tests/hostile_gguf.py --case vocab_content:3:1 --case alignment:0:1   # chosen cases
    python tests/hostile_gguf.py --write vocab_content:3:1 out.gguf              # one file
    python tests/hostile_gguf.py --list-classes

Exit status 0 when every case was accepted, 1 otherwise. ``--worker`` is the subprocess side
(one JSON request per line on stdin: ``{"id": ...}`` or ``{"path": ...}``; one JSON result per
line on stdout).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import json
import math
import os
import random
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------------------------
# The GGUF format
# ---------------------------------------------------------------------------------------------

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
DEFAULT_ALIGNMENT = 32

# gguf_type
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
GGUF_TYPE_COUNT = 13
_SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<B",
               U64: "<Q", I64: "<q", F64: "<d"}

# ggml_type: (block size, bytes per block), from the pinned gguf-py (GGML_QUANT_SIZES)
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q8_0 = 0, 1, 2, 8
GGML_TYPE_COUNT = 43
GGML_SIZES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
              10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
              16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110),
              22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
              29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36),
              41: (128, 18), 42: (64, 18)}
GGML_REMOVED = [4, 5, 31, 32, 33, 36, 37, 38]


@dataclass(frozen=True)
class KV:
    """One metadata pair. ``elem`` is the element type of an array (``type == ARR``).
    Values are written as given: a wrong type for a known key is simply another KV."""

    key: str | bytes
    type: int
    value: Any
    elem: int | None = None


@dataclass(frozen=True)
class Tensor:
    """A tensor info plus its data (``None``: deterministic data of the right size)."""

    name: str | bytes
    dims: tuple[int, ...]
    type: int
    data: bytes | None = None


@dataclass
class Model:
    kvs: list[KV]
    tensors: list[Tensor]

    def copy(self) -> Model:
        return Model(list(self.kvs), list(self.tensors))

    def index(self, key: str) -> int:
        for i, kv in enumerate(self.kvs):
            if kv.key == key:
                return i
        raise KeyError(key)

    def get(self, key: str) -> KV | None:
        return next((kv for kv in self.kvs if kv.key == key), None)

    def set(self, key: str, type_: int, value: Any, elem: int | None = None) -> None:
        """Replaces ``key`` in place (keeping its position) or appends it."""
        new = KV(key, type_, value, elem)
        for i, kv in enumerate(self.kvs):
            if kv.key == key:
                self.kvs[i] = new
                return
        self.kvs.append(new)

    def remove(self, key: str) -> None:
        self.kvs = [kv for kv in self.kvs if kv.key != key]

    def tensor_index(self, name: str) -> int:
        for i, t in enumerate(self.tensors):
            if t.name == name:
                return i
        raise KeyError(name)


@dataclass
class KVLayout:
    start: int
    key_len: int  # offset of the key's u64 length
    type: int  # offset of the u32 value type
    value: int  # offset of the value (after the array header for arrays)
    end: int
    key: str
    elem_type: int | None = None  # arrays: offset of the u32 element type
    count: int | None = None  # arrays: offset of the u64 element count
    str_len: int | None = None  # scalar strings: offset of the u64 length
    elem_str_lens: list[int] = field(default_factory=list)  # string arrays: each element's length


@dataclass
class TensorLayout:
    start: int
    name_len: int
    n_dims: int
    dims: list[int]
    type: int
    offset: int  # offset of the u64 data offset field
    end: int
    name: str
    data_start: int = 0  # absolute file offset of its data
    data_end: int = 0


@dataclass
class Layout:
    """Byte offsets of everything in a serialized file."""

    size: int
    header_end: int  # after magic, version, n_tensors, n_kv
    kvs: list[KVLayout]
    tensors: list[TensorLayout]
    tinfo_end: int  # end of the last tensor info (before the alignment padding)
    data_start: int
    alignment: int

    MAGIC, VERSION, N_TENSORS, N_KV = 0, 4, 8, 16

    def boundaries(self) -> list[tuple[str, int]]:
        """Every section boundary, in file order."""
        out = [("magic", 4), ("version", 8), ("n_tensors", 16), ("header", self.header_end)]
        out += [(f"kv[{i}]:{kv.key}", kv.end) for i, kv in enumerate(self.kvs)]
        out += [(f"tinfo[{i}]:{t.name}", t.end) for i, t in enumerate(self.tensors)]
        out.append(("data_start", self.data_start))
        out += [(f"data[{i}]:{t.name}", t.data_start) for i, t in enumerate(self.tensors) if t.data_start]
        out.append(("end-1", self.size - 1))
        seen: set[int] = set()
        return [(n, o) for n, o in out if o < self.size and not (o in seen or seen.add(o))]


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def _pack_scalar(type_: int, value: Any) -> bytes:
    if type_ == STR:
        return _str(value)
    if type_ == BOOL:
        return struct.pack("<B", int(value) & 0xFF)
    return struct.pack(_SCALAR_FMT[type_], value)


def nbytes(dims: Sequence[int], type_: int) -> int:
    blck, size = GGML_SIZES[type_]
    n = math.prod(dims)
    return n // blck * size


def _pad(n: int, align: int) -> int:
    return (n + align - 1) // align * align


def layout_alignment(model: Model) -> int:
    """The alignment the file is laid out with: the declared one when the loader could
    honour it (a u32 power of two, at most 64 KiB), else the default (the loader rejects it)."""
    kv = model.get("general.alignment")
    if kv is not None and kv.type == U32 and isinstance(kv.value, int):
        a = kv.value
        if 0 < a <= 65536 and a & (a - 1) == 0:
            return a
    return DEFAULT_ALIGNMENT


def serialize(model: Model) -> tuple[bytes, Layout]:
    """The GGUF v3 bytes of ``model`` and the offsets of every field in them."""
    align = layout_alignment(model)
    out = bytearray()
    out += GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(model.tensors), len(model.kvs))
    header_end = len(out)
    kv_layouts = []
    for kv in model.kvs:
        start = len(out)
        out += _str(kv.key)
        type_off = len(out)
        out += struct.pack("<I", kv.type)
        lay = KVLayout(start=start, key_len=start, type=type_off, value=0, end=0,
                       key=kv.key if isinstance(kv.key, str) else kv.key.decode(errors="replace"))
        if kv.type == ARR:
            assert kv.elem is not None
            lay.elem_type = len(out)
            out += struct.pack("<I", kv.elem)
            lay.count = len(out)
            out += struct.pack("<Q", len(kv.value))
            lay.value = len(out)
            for v in kv.value:
                if kv.elem == STR:
                    lay.elem_str_lens.append(len(out))
                out += _pack_scalar(kv.elem, v)
        else:
            lay.value = len(out)
            if kv.type == STR:
                lay.str_len = len(out)
            out += _pack_scalar(kv.type, kv.value)
        lay.end = len(out)
        kv_layouts.append(lay)

    datas = [t.data if t.data is not None else tensor_data(t) for t in model.tensors]
    t_layouts = []
    offset = 0
    for t, data in zip(model.tensors, datas):
        start = len(out)
        out += _str(t.name)
        n_dims_off = len(out)
        out += struct.pack("<I", len(t.dims))
        dims_offs = []
        for d in t.dims:
            dims_offs.append(len(out))
            out += struct.pack("<q", d)
        type_off = len(out)
        out += struct.pack("<I", t.type)
        offset_off = len(out)
        out += struct.pack("<Q", offset)
        t_layouts.append(TensorLayout(start, start, n_dims_off, dims_offs, type_off, offset_off, len(out),
                                      t.name if isinstance(t.name, str) else t.name.decode(errors="replace")))
        offset += _pad(len(data), align)
    tinfo_end = len(out)
    out += bytes(_pad(len(out), align) - len(out))
    data_start = len(out)
    for lay, data in zip(t_layouts, datas):
        lay.data_start = len(out)
        out += data
        lay.data_end = len(out)
        out += bytes(_pad(len(out) - data_start, align) - (len(out) - data_start))
    return bytes(out), Layout(len(out), header_end, kv_layouts, t_layouts, tinfo_end, data_start, align)


# ---------------------------------------------------------------------------------------------
# Tensor data
# ---------------------------------------------------------------------------------------------

_DATA_CACHE: dict[tuple[Any, ...], bytes] = {}
_SMALL_F16 = struct.pack("<e", 0.002)
# block layouts with scales at fixed offsets: (offset, bytes) pairs giving finite small scales
_SCALE_BYTES: dict[int, list[tuple[int, bytes]]] = {
    2: [(0, _SMALL_F16)], 3: [(0, _SMALL_F16), (2, _SMALL_F16)], 6: [(0, _SMALL_F16)],
    7: [(0, _SMALL_F16), (2, _SMALL_F16)], 9: [(0, _SMALL_F16), (2, _SMALL_F16)], 20: [(0, _SMALL_F16)],
    39: [(0, bytes([118]))], 41: [(0, _SMALL_F16)], 42: [(0, _SMALL_F16)]}
# plain element types: small values of the type
_SANE_SCALARS: dict[int, Callable[[Any, Any], Any]] = {
    24: lambda v, np: (v * 100).astype(np.int8), 25: lambda v, np: (v * 100).astype(np.int16),
    26: lambda v, np: (v * 100).astype(np.int32), 27: lambda v, np: (v * 100).astype(np.int64),
    28: lambda v, np: v.astype(np.float64), 30: lambda v, np: (v.view(np.uint32) >> 16).astype(np.uint16)}


def _rng_for(*parts: Any) -> random.Random:
    h = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(h[:8], "little"))


def tensor_data(t: Tensor) -> bytes:
    """Deterministic data for ``t``: ones for norms, small random values for matrices
    (quantized for Q8_0), random bytes for any other type."""
    import numpy as np

    key = (t.name, t.dims, t.type)
    if key in _DATA_CACHE:
        return _DATA_CACHE[key]
    n = math.prod(t.dims)
    name = t.name if isinstance(t.name, str) else t.name.decode(errors="replace")
    seed = zlib.crc32(f"{name}:{t.dims}:{t.type}".encode())
    gen = np.random.default_rng(seed)
    if "norm" in name:
        values = np.ones(n, dtype=np.float32)
    else:
        values = gen.normal(0.0, 0.05, n).astype(np.float32)
    if t.type == GGML_F32:
        data = values.tobytes()
    elif t.type == GGML_F16:
        data = values.astype(np.float16).tobytes()
    elif t.type == GGML_Q8_0:
        blocks = values.reshape(-1, 32)
        amax = np.abs(blocks).max(axis=1)
        d = (amax / 127.0).astype(np.float32)
        inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0.0)
        q = np.round(blocks * inv[:, None]).clip(-127, 127).astype(np.int8)
        rec = np.zeros(len(blocks), dtype=[("d", "<f2"), ("q", "i1", 32)])
        rec["d"] = d.astype(np.float16)
        rec["q"] = q
        data = rec.tobytes()
    elif t.type in _SANE_SCALARS:
        data = _SANE_SCALARS[t.type](values, np).tobytes()
    else:
        # random quants with small, finite scales (random bytes would put NaN/inf in the fp16
        # scales, and a type's failure would hide behind NaN logits); zeros where the layout
        # is not known here
        blck, size = GGML_SIZES[t.type]
        raw = gen.integers(0, 256, (n // blck, size), dtype=np.uint8)
        scales = _SCALE_BYTES.get(t.type)
        if scales is None:
            raw[:] = 0
        else:
            for off, value in scales:
                raw[:, off:off + len(value)] = np.frombuffer(value, dtype=np.uint8)
        data = raw.tobytes()
    assert len(data) == nbytes(t.dims, t.type), (t, len(data))
    _DATA_CACHE[key] = data
    return data


# ---------------------------------------------------------------------------------------------
# The base model
# ---------------------------------------------------------------------------------------------

N_EMBD, N_LAYER, N_HEAD, N_HEAD_KV, N_FF, N_CTX_TRAIN = 64, 2, 4, 2, 128, 256
HEAD_DIM = N_EMBD // N_HEAD
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6
SPM_SPACE = "\u2581"
_WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "hello", "world", "a", "is", "of", "and",
          "to", "in", "it", "that", "was", "he"]


def base_vocab() -> list[tuple[str, float, int]]:
    """(text, score, token type) of every token: <unk> <s> </s>, the 256 byte tokens, the
    space piece, words with the space prefix, letters, a few merges."""
    vocab: list[tuple[str, float, int]] = [("<unk>", 0.0, TOKEN_UNKNOWN), ("<s>", 0.0, TOKEN_CONTROL),
                                           ("</s>", 0.0, TOKEN_CONTROL)]
    vocab += [(f"<0x{b:02X}>", 0.0, TOKEN_BYTE) for b in range(256)]
    # every prefix of every word, so SentencePiece's merges can build the words
    pieces = [SPM_SPACE] + list("abcdefghijklmnopqrstuvwxyz")
    for w in _WORDS:
        pieces += [SPM_SPACE + w[:k] for k in range(1, len(w) + 1) if SPM_SPACE + w[:k] not in pieces]
    vocab += [(p, -float(i + 1), TOKEN_NORMAL) for i, p in enumerate(pieces)]
    return vocab


def vocab_kvs(vocab: Sequence[tuple[str | bytes, float, int]]) -> list[KV]:
    return [
        KV("tokenizer.ggml.model", STR, "llama"),
        KV("tokenizer.ggml.tokens", ARR, [t for t, _, _ in vocab], STR),
        KV("tokenizer.ggml.scores", ARR, [s for _, s, _ in vocab], F32),
        KV("tokenizer.ggml.token_type", ARR, [k for _, _, k in vocab], I32),
        KV("tokenizer.ggml.bos_token_id", U32, 1),
        KV("tokenizer.ggml.eos_token_id", U32, 2),
        KV("tokenizer.ggml.unknown_token_id", U32, 0),
        KV("tokenizer.ggml.padding_token_id", U32, 0),
        KV("tokenizer.ggml.add_bos_token", BOOL, True),
        KV("tokenizer.ggml.add_eos_token", BOOL, False),
    ]


def base_tensors(n_vocab: int, n_embd: int = N_EMBD, n_layer: int = N_LAYER, n_ff: int = N_FF,
                 n_embd_kv: int = HEAD_DIM * N_HEAD_KV) -> list[Tensor]:
    ts = [Tensor("token_embd.weight", (n_embd, n_vocab), GGML_Q8_0),
          Tensor("output_norm.weight", (n_embd,), GGML_F32),
          Tensor("output.weight", (n_embd, n_vocab), GGML_F16)]
    for i in range(n_layer):
        b = f"blk.{i}."
        ts += [Tensor(b + "attn_norm.weight", (n_embd,), GGML_F32),
               Tensor(b + "attn_q.weight", (n_embd, n_embd), GGML_Q8_0),
               Tensor(b + "attn_k.weight", (n_embd, n_embd_kv), GGML_Q8_0),
               Tensor(b + "attn_v.weight", (n_embd, n_embd_kv), GGML_F16),
               Tensor(b + "attn_output.weight", (n_embd, n_embd), GGML_F16),
               Tensor(b + "ffn_norm.weight", (n_embd,), GGML_F32),
               Tensor(b + "ffn_gate.weight", (n_embd, n_ff), GGML_Q8_0),
               Tensor(b + "ffn_up.weight", (n_embd, n_ff), GGML_F16),
               Tensor(b + "ffn_down.weight", (n_ff, n_embd), GGML_Q8_0)]
    return ts


def base_model(vocab: Sequence[tuple[str | bytes, float, int]] | None = None) -> Model:
    """The tiny llama model every case starts from (``vocab`` replaces the vocabulary, and the
    embedding and output matrices follow its size)."""
    vocab = base_vocab() if vocab is None else vocab
    kvs = [
        KV("general.architecture", STR, "llama"),
        KV("general.name", STR, "hostile-base"),
        KV("general.alignment", U32, DEFAULT_ALIGNMENT),
        KV("general.file_type", U32, 7),
        KV("general.quantization_version", U32, 2),
        KV("llama.context_length", U32, N_CTX_TRAIN),
        KV("llama.embedding_length", U32, N_EMBD),
        KV("llama.block_count", U32, N_LAYER),
        KV("llama.feed_forward_length", U32, N_FF),
        KV("llama.attention.head_count", U32, N_HEAD),
        KV("llama.attention.head_count_kv", U32, N_HEAD_KV),
        KV("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
        KV("llama.rope.dimension_count", U32, HEAD_DIM),
        KV("llama.rope.freq_base", F32, 10000.0),
        KV("llama.vocab_size", U32, len(vocab)),
        *vocab_kvs(vocab),
        # every value type, scalar and array, so the reader's paths for each are exercised
        KV("hostile.u8", U8, 200), KV("hostile.i8", I8, -100), KV("hostile.u16", U16, 60000),
        KV("hostile.i16", I16, -30000), KV("hostile.u32", U32, 4000000000), KV("hostile.i32", I32, -2000000000),
        KV("hostile.f32", F32, 1.5), KV("hostile.bool", BOOL, True), KV("hostile.str", STR, "h\u00e9llo"),
        KV("hostile.u64", U64, 2**64 - 1), KV("hostile.i64", I64, -(2**63)), KV("hostile.f64", F64, -2.25),
        KV("hostile.arr_u8", ARR, [1, 2, 3], U8), KV("hostile.arr_i16", ARR, [-1, 0, 1], I16),
        KV("hostile.arr_u64", ARR, [2**40, 7], U64), KV("hostile.arr_f64", ARR, [0.5, -0.5], F64),
        KV("hostile.arr_bool", ARR, [True, False], BOOL), KV("hostile.arr_str", ARR, ["x", "", "yz"], STR),
        KV("hostile.arr_empty", ARR, [], I32),
    ]
    return Model(kvs, base_tensors(len(vocab)))


_BASE: tuple[Model, bytes, Layout] | None = None


def base() -> tuple[Model, bytes, Layout]:
    global _BASE
    if _BASE is None:
        m = base_model()
        data, lay = serialize(m)
        _BASE = (m, data, lay)
    return _BASE[0].copy(), _BASE[1], _BASE[2]


# ---------------------------------------------------------------------------------------------
# Mutations
# ---------------------------------------------------------------------------------------------


@dataclass
class Ctx:
    """What a mutation gets: its index (walks the class's variant list), a random generator
    seeded by the case id, and the base model as structure, bytes and layout."""

    cls: str
    index: int
    seed: int
    rng: random.Random
    model: Model
    data: bytes
    layout: Layout

    def pick(self, variants: Sequence[Any]) -> Any:
        """Variant ``index`` (cycling), so consecutive indices cover the list."""
        return variants[self.index % len(variants)]

    def patch(self, offset: int, fmt: str, value: int) -> bytes:
        buf = bytearray(self.data)
        struct.pack_into(fmt, buf, offset, value)
        return bytes(buf)


@dataclass(frozen=True)
class MutationClass:
    name: str
    fn: Callable[[Ctx], tuple[bytes, str]]
    # False where mutants may all load (data flips, benign layout changes): the test then does
    # not require some of them to be rejected.
    expect_reject: bool = True


CLASSES: dict[str, MutationClass] = {}


def mutation(name: str, expect_reject: bool = True):
    def register(fn: Callable[[Ctx], tuple[bytes, str]]) -> Callable[[Ctx], tuple[bytes, str]]:
        CLASSES[name] = MutationClass(name, fn, expect_reject)
        return fn

    return register


def _ser(m: Model) -> bytes:
    return serialize(m)[0]


BIG64 = [2**63, 2**64 - 1, 2**63 - 1, 2**62, 2**40, 2**32, 2**32 - 1]
BIG32 = [2**32 - 1, 2**31, 2**31 - 1, 2**16, 513, 1 << 20]


# ---- raw: the container -------------------------------------------------------------------


@mutation("truncate_boundary")
def _truncate_boundary(c: Ctx):
    name, off = c.pick(c.layout.boundaries())
    return c.data[:off], f"truncated at {name} (offset {off})"


@mutation("truncate_inside")
def _truncate_inside(c: Ctx):
    lay = c.layout
    sections = [("header", 0, lay.header_end), ("kvs", lay.header_end, lay.kvs[-1].end),
                ("tinfos", lay.kvs[-1].end, lay.tinfo_end), ("data", lay.data_start, lay.size)]
    name, lo, hi = c.pick(sections)
    off = c.rng.randrange(lo + 1, hi)
    return c.data[:off], f"truncated inside {name} at {off}"


@mutation("bad_magic")
def _bad_magic(c: Ctx):
    magic = c.pick([b"GGUf", b"\0\0\0\0", b"FUGG", b"GGML", b"GGJT", b"ggjt", b"GGU\0", b"\xff\xff\xff\xff",
                    bytes(c.rng.randrange(256) for _ in range(4))])
    return magic + c.data[4:], f"magic {magic!r}"


@mutation("bad_version")
def _bad_version(c: Ctx):
    v = c.pick([0, 1, 2, 4, 5, 0xFFFFFFFF, 0x03000000, 0x00010000, 0x80000003, 0xFFFF0003, 3 << 16 | 3])
    return c.patch(Layout.VERSION, "<I", v), f"version {v:#x}"


@mutation("header_counts")
def _header_counts(c: Ctx):
    which = c.rng.choice(["n_tensors", "n_kv"])
    n = len(c.model.tensors) if which == "n_tensors" else len(c.model.kvs)
    v = c.pick([0, n - 1, n + 1, n + 100, 1, *BIG64])
    off = Layout.N_TENSORS if which == "n_tensors" else Layout.N_KV
    return c.patch(off, "<Q", v), f"{which} {v} (real {n})"


# ---- raw: metadata ------------------------------------------------------------------------


@mutation("kv_key_length")
def _kv_key_length(c: Ctx):
    kv = c.rng.choice(c.layout.kvs)
    real = len(kv.key.encode())
    v = c.pick([0, real - 1, real + 1, 1, c.layout.size, *BIG64])
    return c.patch(kv.key_len, "<Q", v), f"key length of {kv.key!r} {v} (real {real})"


@mutation("kv_string_length")
def _kv_string_length(c: Ctx):
    # a scalar string value, or one element of a string array (mostly the vocabulary)
    if c.index % 2 == 0:
        kv = c.rng.choice([k for k in c.layout.kvs if k.str_len is not None])
        off, where = kv.str_len, kv.key
    else:
        kv = c.rng.choice([k for k in c.layout.kvs if k.elem_str_lens])
        i = c.rng.randrange(len(kv.elem_str_lens))
        off, where = kv.elem_str_lens[i], f"{kv.key}[{i}]"
    real = struct.unpack_from("<Q", c.data, off)[0]
    v = c.pick([0, real + 1, real - 1 if real else 1, real + 1000, c.layout.size, *BIG64, 2**31])
    return c.patch(off, "<Q", v), f"string length of {where} {v} (real {real})"


@mutation("kv_array_length")
def _kv_array_length(c: Ctx):
    kv = c.rng.choice([k for k in c.layout.kvs if k.count is not None])
    real = struct.unpack_from("<Q", c.data, kv.count)[0]
    v = c.pick([0, real - 1 if real else 1, real + 1, 2 * real + 1, 1, c.layout.size, *BIG64])
    return c.patch(kv.count, "<Q", v), f"array length of {kv.key} {v} (real {real})"


@mutation("kv_value_type")
def _kv_value_type(c: Ctx):
    kv = c.rng.choice(c.layout.kvs)
    real = struct.unpack_from("<I", c.data, kv.type)[0]
    v = c.pick([13, 14, 255, 0xFFFFFFFF, 0x80000000, ARR, c.rng.randrange(13), c.rng.randrange(13)])
    return c.patch(kv.type, "<I", v), f"value type of {kv.key} {v} (real {real})"


@mutation("kv_array_elem_type")
def _kv_array_elem_type(c: Ctx):
    kv = c.rng.choice([k for k in c.layout.kvs if k.elem_type is not None])
    real = struct.unpack_from("<I", c.data, kv.elem_type)[0]
    v = c.pick([ARR, 13, 255, 0xFFFFFFFF, STR, c.rng.randrange(13), c.rng.randrange(13)])
    return c.patch(kv.elem_type, "<I", v), f"element type of {kv.key} {v} (real {real})"


# ---- raw: tensor infos --------------------------------------------------------------------


@mutation("tensor_offset")
def _tensor_offset(c: Ctx):
    i = c.rng.randrange(len(c.layout.tensors))
    t = c.layout.tensors[i]
    real = struct.unpack_from("<Q", c.data, t.offset)[0]
    prev = struct.unpack_from("<Q", c.data, c.layout.tensors[i - 1].offset)[0] if i else 0
    data_size = c.layout.size - c.layout.data_start
    v = c.pick([real + 1, real + c.layout.alignment, prev, 0, data_size, data_size - 1, c.layout.size,
                max(real - c.layout.alignment, 0), *BIG64])
    if v == real:
        v = real + 1
    return c.patch(t.offset, "<Q", v), f"offset of {t.name} {v} (real {real})"


@mutation("tensor_type_raw")
def _tensor_type_raw(c: Ctx):
    t = c.rng.choice(c.layout.tensors)
    real = struct.unpack_from("<I", c.data, t.type)[0]
    valid = sorted(GGML_SIZES)
    v = c.pick([*GGML_REMOVED, GGML_TYPE_COUNT, GGML_TYPE_COUNT + 1, 255, 0xFFFFFFFF, 0x80000000,
                c.rng.choice(valid), c.rng.choice(valid), c.rng.choice(valid)])
    return c.patch(t.type, "<I", v), f"ggml type of {t.name} {v} (real {real})"


@mutation("tensor_n_dims")
def _tensor_n_dims(c: Ctx):
    t = c.rng.choice(c.layout.tensors)
    real = len(t.dims)
    v = c.pick([0, 5, 4, 3, real + 1, max(real - 1, 0), 0xFFFFFFFF, 2**31, 8])
    return c.patch(t.n_dims, "<I", v), f"n_dims of {t.name} {v} (real {real})"


@mutation("tensor_dims")
def _tensor_dims(c: Ctx):
    t = c.rng.choice(c.layout.tensors)
    j = c.rng.randrange(len(t.dims))
    real = struct.unpack_from("<q", c.data, t.dims[j])[0]
    v = c.pick([0, 1, real + 1, real - 1, real * 2, 2**62, 2**63 - 1, -1, -(2**63), 2**32, 2**31, real + 32])
    buf = c.patch(t.dims[j], "<q", v)
    if c.index % 5 == 4 and len(t.dims) > 1:  # a product that overflows int64 from two sane-looking dims
        buf = bytearray(buf)
        struct.pack_into("<q", buf, t.dims[0], 2**32)
        struct.pack_into("<q", buf, t.dims[1], 2**32)
        return bytes(buf), f"dims of {t.name} 2**32 x 2**32"
    return buf, f"dim {j} of {t.name} {v} (real {real})"


@mutation("tensor_name_raw")
def _tensor_name_raw(c: Ctx):
    lay = c.layout
    variant = c.index % 8
    if variant == 7:  # rename a tensor to another of the same length: a duplicate name
        by_len = collections.defaultdict(list)
        for t in lay.tensors:
            by_len[len(t.name)].append(t)
        groups = [g for g in by_len.values() if len(g) > 1]
        g = c.rng.choice(groups)
        a, b = c.rng.sample(g, 2)
        buf = bytearray(c.data)
        buf[a.name_len + 8:a.name_len + 8 + len(a.name)] = b.name.encode()
        return bytes(buf), f"{a.name} renamed to {b.name} (duplicate)"
    t = c.rng.choice(lay.tensors)
    real = len(t.name)
    v = [0, 64, 63, real + 1, real - 1, 2**63, 2**64 - 1][variant]
    return c.patch(t.name_len, "<Q", v), f"name length of {t.name} {v} (real {real})"


# ---- raw: random flips --------------------------------------------------------------------


def _flip(c: Ctx, lo: int, hi: int, what: str):
    buf = bytearray(c.data)
    n = c.rng.randint(1, 8)
    where = []
    for _ in range(n):
        off = c.rng.randrange(lo, hi)
        buf[off] ^= c.rng.randrange(1, 256)
        where.append(off)
    return bytes(buf), f"{n} byte(s) flipped in {what} at {sorted(where)}"


@mutation("flip_metadata")
def _flip_metadata(c: Ctx):
    return _flip(c, 4, c.layout.kvs[-1].end, "header+metadata")


@mutation("flip_tensor_infos")
def _flip_tensor_infos(c: Ctx):
    return _flip(c, c.layout.kvs[-1].end, c.layout.tinfo_end, "tensor infos")


@mutation("flip_data", expect_reject=False)
def _flip_data(c: Ctx):
    lay = c.layout
    if c.index % 3 == 2:  # every Q8_0/F16 scale of one tensor set to inf or NaN
        t = c.rng.choice([t for t, m in zip(lay.tensors, c.model.tensors) if m.type == GGML_Q8_0])
        buf = bytearray(c.data)
        bits = c.rng.choice([0x7C00, 0xFC00, 0x7E00])
        for off in range(t.data_start, t.data_end, 34):
            struct.pack_into("<H", buf, off, bits)
        return bytes(buf), f"every block scale of {t.name} = {bits:#x}"
    return _flip(c, lay.data_start, lay.size, "tensor data")


# ---- structured: layout -------------------------------------------------------------------


@mutation("alignment")
def _alignment(c: Ctx):
    m = c.model
    variants: list[tuple[int, Any]] = [(U32, 0), (U32, 1), (U32, 3), (U32, 7), (U32, 2**31), (U32, 48),
                                       (U32, 2**32 - 1), (U32, 0x80000001), (U32, 8), (U32, 64),
                                       (U32, 4096), (U64, 32), (I32, 32), (STR, "32"), (ARR, [32]),
                                       (U16, 32), (F32, 32.0)]
    type_, value = c.pick(variants)
    if type_ == ARR:
        m.set("general.alignment", ARR, value, U32)
    else:
        m.set("general.alignment", type_, value)
    return _ser(m), f"general.alignment = {value!r} (gguf type {type_})"


@mutation("data_section")
def _data_section(c: Ctx):
    lay = c.layout
    v = c.index % 6
    if v == 0:
        return c.data + bytes(c.rng.randrange(1, 4096)), "trailing zero bytes after the data"
    if v == 1:
        return c.data + bytes(c.rng.randrange(256) for _ in range(100)), "trailing garbage after the data"
    if v == 2:
        cut = c.rng.randrange(1, 64)
        return c.data[:lay.size - cut], f"last tensor short by {cut} bytes"
    if v == 3:
        pad = c.rng.choice([1, 8, 31, 33])
        return c.data[:lay.tinfo_end] + bytes(pad) + c.data[lay.tinfo_end:], f"{pad} bytes inserted before the data"
    if v == 4:
        return c.data[:lay.data_start], "no tensor data at all"
    t = c.rng.choice(lay.tensors[1:])
    return c.data[:t.data_start], f"file ends where {t.name}'s data starts"


# ---- structured: vocabulary ---------------------------------------------------------------


def _vocab_lists(m: Model) -> tuple[list[Any], list[Any], list[Any]]:
    return (list(m.get("tokenizer.ggml.tokens").value), list(m.get("tokenizer.ggml.scores").value),
            list(m.get("tokenizer.ggml.token_type").value))


@mutation("vocab_lengths")
def _vocab_lengths(c: Ctx):
    m = c.model
    toks, scores, types = _vocab_lists(m)
    n = len(toks)
    which, delta = c.pick([("scores", -1), ("scores", +1), ("scores", -n), ("token_type", -1),
                           ("token_type", +1), ("token_type", -n), ("tokens", -1), ("tokens", +1),
                           ("tokens", -(n - 3)), ("scores", -(n // 2)), ("token_type", -(n // 2))])
    key = f"tokenizer.ggml.{which}"
    kv = m.get(key)
    lst = list(kv.value)
    lst = lst[:len(lst) + delta] if delta < 0 else lst + [lst[-1] if which != "tokens" else "extra"] * delta
    m.set(key, ARR, lst, kv.elem)
    return _ser(m), f"{which} has {len(lst)} entries, others {n}"


@mutation("vocab_types")
def _vocab_types(c: Ctx):
    m = c.model
    toks, scores, types = _vocab_lists(m)
    v = c.pick(["tokens_i32", "tokens_scalar", "tokens_empty_strs", "scores_i32", "scores_str", "scores_scalar",
                "scores_f64", "types_u32", "types_i64", "types_f32", "types_scalar", "types_u8"])
    if v == "tokens_i32":
        m.set("tokenizer.ggml.tokens", ARR, list(range(len(toks))), I32)
    elif v == "tokens_scalar":
        m.set("tokenizer.ggml.tokens", STR, "<unk>")
    elif v == "tokens_empty_strs":
        m.set("tokenizer.ggml.tokens", ARR, [""] * len(toks), STR)
    elif v == "scores_i32":
        m.set("tokenizer.ggml.scores", ARR, [int(s) for s in scores], I32)
    elif v == "scores_str":
        m.set("tokenizer.ggml.scores", ARR, [str(s) for s in scores], STR)
    elif v == "scores_scalar":
        m.set("tokenizer.ggml.scores", F32, 0.0)
    elif v == "scores_f64":
        m.set("tokenizer.ggml.scores", ARR, scores, F64)
    elif v == "types_u32":
        m.set("tokenizer.ggml.token_type", ARR, types, U32)
    elif v == "types_i64":
        m.set("tokenizer.ggml.token_type", ARR, types, I64)
    elif v == "types_f32":
        m.set("tokenizer.ggml.token_type", ARR, [float(t) for t in types], F32)
    elif v == "types_scalar":
        m.set("tokenizer.ggml.token_type", I32, 1)
    else:
        m.set("tokenizer.ggml.token_type", ARR, types, U8)
    return _ser(m), v


@mutation("vocab_content")
def _vocab_content(c: Ctx):
    m = c.model
    toks, scores, types = _vocab_lists(m)
    n = len(toks)
    r = c.rng
    v = c.pick(["duplicate", "duplicate_nul", "empty_tokens", "no_newline_byte", "no_byte_tokens",
                "types_out_of_range", "scores_nan", "long_token", "invalid_utf8", "all_same", "all_control",
                "all_byte", "unk_is_byte", "byte_token_names_bad", "all_unused", "huge_token_count_types"])
    if v == "duplicate":
        i, j = r.sample(range(n), 2)
        toks[j] = toks[i]
    elif v == "duplicate_nul":  # a NUL inside makes the C string equal another token
        i = r.randrange(3, n)
        toks[(i + 1) % n] = toks[i] + "\0tail"
    elif v == "empty_tokens":
        for i in r.sample(range(n), 5):
            toks[i] = ""
    elif v == "no_newline_byte":
        toks[3 + 10] = "NL"
        types[3 + 10] = TOKEN_NORMAL
    elif v == "no_byte_tokens":
        for b in range(256):
            toks[3 + b] = f"B{b}"
            types[3 + b] = TOKEN_NORMAL
    elif v == "types_out_of_range":
        for i in r.sample(range(n), 10):
            types[i] = r.choice([-1, 0, 7, 99, 2**31 - 1, -(2**31)])
    elif v == "scores_nan":
        for i in r.sample(range(n), 10):
            scores[i] = r.choice([math.nan, math.inf, -math.inf, 3.4e38])
    elif v == "long_token":
        toks[-1] = SPM_SPACE + "x" * r.choice([300, 5000, 70000])
    elif v == "invalid_utf8":
        for i in r.sample(range(3 + 256, n), 5):
            toks[i] = r.choice([b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"a\x80b", b"\xf4\x90\x80\x80"])
    elif v == "all_same":
        toks = ["x"] * n
    elif v == "all_control":
        types = [TOKEN_CONTROL] * n
    elif v == "all_byte":
        types = [TOKEN_BYTE] * n
    elif v == "unk_is_byte":
        toks[0] = "<0x41>"
        types[0] = TOKEN_BYTE
        toks[3 + 0x41] = "A_"
    elif v == "byte_token_names_bad":
        for i in r.sample(range(3, 3 + 256), 8):
            toks[i] = r.choice(["<0x>", "<0xZZ>", "<0x1FF>", "<0x", "<0x-1>", "<0x0A0A>"])
    elif v == "all_unused":
        types = [TOKEN_UNUSED] * n
    else:
        types = types + [1] * 10
        m.set("tokenizer.ggml.token_type_count", U32, 2**32 - 1)
    m.set("tokenizer.ggml.tokens", ARR, toks, STR)
    m.set("tokenizer.ggml.scores", ARR, scores, F32)
    m.set("tokenizer.ggml.token_type", ARR, types, I32)
    return _ser(m), v


@mutation("vocab_size")
def _vocab_size(c: Ctx):
    """Tiny vocabularies with matching tensors (so the file is consistent), or a vocab_size
    key or tensor size that disagrees with the token list."""
    full = base_vocab()
    v = c.pick(["tensors_small", "n0", "n1", "n2", "n3", "n1_noaddbos", "n2_addeos", "key_small", "key_big",
                "key_zero", "tensors_big", "n259"])
    if v.startswith("n") and v[1].isdigit():
        k = int(v[1:].split("_")[0])
        m = base_model(full[:k])
        if v.endswith("noaddbos"):
            m.set("tokenizer.ggml.add_bos_token", BOOL, False)
        if v.endswith("addeos"):
            m.set("tokenizer.ggml.add_eos_token", BOOL, True)
        return _ser(m), f"vocabulary of {k} tokens ({v})"
    m = c.model
    n = len(full)
    if v.startswith("key"):
        m.set("llama.vocab_size", U32, {"key_small": n - 1, "key_big": n + 100, "key_zero": 0}[v])
        return _ser(m), v
    k = n - 7 if v == "tensors_small" else n + 32
    for name in ("token_embd.weight", "output.weight"):
        i = m.tensor_index(name)
        t = m.tensors[i]
        m.tensors[i] = Tensor(t.name, (N_EMBD, k), t.type)
    return _ser(m), f"embedding/output tensors for {k} tokens, vocabulary {n}"


@mutation("tokenizer_model")
def _tokenizer_model(c: Ctx):
    m = c.model
    v = c.pick(["", "gpt2", "bert", "t5", "rwkv", "none", "no_vocab", "plamo2", "hybriddna", "whitespace",
                "unknown-model", "t5_charsmap", "gpt2_pre_llama3", "llama_pre_bogus", "bert_tiny", "rwkv_escapes",
                "gemma4", "LLAMA"])
    if v == "t5_charsmap":
        blob = bytes(c.rng.randrange(256) for _ in range(c.rng.choice([0, 3, 4, 16, 300])))
        m.set("tokenizer.ggml.model", STR, "t5")
        m.set("tokenizer.ggml.precompiled_charsmap", ARR, list(blob), U8)
    elif v == "gpt2_pre_llama3":
        m.set("tokenizer.ggml.model", STR, "gpt2")
        m.set("tokenizer.ggml.pre", STR, c.rng.choice(["llama3", "qwen2", "deepseek-llm", "default", "gpt-2"]))
        m.set("tokenizer.ggml.merges", ARR, ["t h", "th e", "q u"], STR)
    elif v == "llama_pre_bogus":
        m.set("tokenizer.ggml.pre", STR, "bogus-pre")
    elif v == "bert_tiny":
        m = base_model(base_vocab()[:4])
        m.set("tokenizer.ggml.model", STR, "bert")
        m.set("tokenizer.ggml.add_sep_token", BOOL, True)
    elif v == "rwkv_escapes":
        toks, _, _ = _vocab_lists(m)
        for i in c.rng.sample(range(3, len(toks)), 20):
            toks[i] = c.rng.choice(["\\", "\\x", "\\x4", "\\u12", "a\\", "\\\\\\", "\\xZZ", "'", "\"", "b'x"])
        m.set("tokenizer.ggml.tokens", ARR, toks, STR)
        m.set("tokenizer.ggml.model", STR, "rwkv")
    else:
        m.set("tokenizer.ggml.model", STR, v)
    return _ser(m), f"tokenizer {v!r}"


@mutation("merges")
def _merges(c: Ctx):
    m = c.model
    m.set("tokenizer.ggml.model", STR, "gpt2")
    v = c.pick(["missing", "empty", "int_array", "no_space", "unknown_tokens", "huge_entry", "only_space",
                "duplicates", "scalar", "leading_space", "invalid_utf8"])
    merges: Any = {"empty": [], "no_space": ["abc", "th", "x"], "unknown_tokens": ["zz yy", "q w"],
                   "huge_entry": ["a " + "b" * 100000], "only_space": [" ", "  ", " a", "a "],
                   "duplicates": ["t h"] * 50, "leading_space": [" t h", "\u0120 t"],
                   "invalid_utf8": [b"\xff \xfe", b"a \xc3"]}.get(v)
    if v == "int_array":
        m.set("tokenizer.ggml.merges", ARR, [1, 2, 3], I32)
    elif v == "scalar":
        m.set("tokenizer.ggml.merges", STR, "t h")
    elif merges is not None:
        m.set("tokenizer.ggml.merges", ARR, merges, STR)
    return _ser(m), f"gpt2 tokenizer, merges {v}"


SPECIAL_KEYS = ["bos_token_id", "eos_token_id", "unknown_token_id", "seperator_token_id", "padding_token_id",
                "cls_token_id", "mask_token_id", "eot_token_id", "eom_token_id", "fim_pre_token_id",
                "fim_suf_token_id", "fim_mid_token_id", "fim_pad_token_id", "fim_rep_token_id", "fim_sep_token_id",
                "prefix_token_id", "suffix_token_id", "middle_token_id"]


@mutation("special_ids")
def _special_ids(c: Ctx):
    m = c.model
    n = len(m.get("tokenizer.ggml.tokens").value)
    key = "tokenizer.ggml." + SPECIAL_KEYS[c.index % len(SPECIAL_KEYS)]
    type_, value = c.rng.choice([(U32, n), (U32, n + 1), (U32, 2**31 - 1), (U32, 2**31), (U32, 2**32 - 1),
                                 (I32, -1), (I32, -(2**31)), (I32, 5), (U64, 2**40), (U64, 1), (STR, "1"),
                                 (U32, 3 + 10), (U32, 0), (F32, 1.0), (ARR, [1, 2])])
    if type_ == ARR:
        m.set(key, ARR, value, U32)
    else:
        m.set(key, type_, value)
    return _ser(m), f"{key} = {value!r} (gguf type {type_})"


@mutation("special_flags")
def _special_flags(c: Ctx):
    """Special tokens missing or strange while add_bos/add_eos/add_sep ask for them."""
    m = c.model
    v = c.pick(["flags_as_str", "no_ids_add_all", "eos_is_bos", "bos_is_byte", "bos_is_unk", "add_sep_spm",
                "add_eos_no_eos",
                "bos_normal_type", "flags_as_u8", "eot_all_same", "suppress_tokens_bad",
                "suppress_tokens_type"])
    if v == "no_ids_add_all":
        for k in SPECIAL_KEYS:
            m.remove("tokenizer.ggml." + k)
        for k in ("add_bos_token", "add_eos_token", "add_sep_token"):
            m.set("tokenizer.ggml." + k, BOOL, True)
    elif v == "eos_is_bos":
        m.set("tokenizer.ggml.eos_token_id", U32, 1)
    elif v == "bos_is_byte":
        m.set("tokenizer.ggml.bos_token_id", U32, 3 + 0x41)
    elif v == "bos_is_unk":
        m.set("tokenizer.ggml.bos_token_id", U32, 0)
        m.set("tokenizer.ggml.eos_token_id", U32, 0)
    elif v == "add_sep_spm":
        m.set("tokenizer.ggml.add_sep_token", BOOL, True)
    elif v == "add_eos_no_eos":
        m.set("tokenizer.ggml.add_eos_token", BOOL, True)
        m.set("tokenizer.ggml.eos_token_id", U32, 2**32 - 1)
    elif v == "bos_normal_type":
        toks, scores, types = _vocab_lists(m)
        types[1] = TOKEN_NORMAL
        types[2] = TOKEN_BYTE
        m.set("tokenizer.ggml.token_type", ARR, types, I32)
    elif v == "flags_as_u8":
        m.set("tokenizer.ggml.add_bos_token", U8, 1)
    elif v == "flags_as_str":
        m.set("tokenizer.ggml.add_bos_token", STR, "true")
    elif v == "eot_all_same":
        for k in SPECIAL_KEYS:
            m.set("tokenizer.ggml." + k, U32, 2)
    elif v == "suppress_tokens_bad":
        m.set("tokenizer.ggml.suppress_tokens", ARR, [-1, 2**31 - 1, 5, -(2**31)], I32)
    else:
        m.set("tokenizer.ggml.suppress_tokens", ARR, [1, 2], U32)
    return _ser(m), v


# ---- structured: hyperparameters ----------------------------------------------------------


def _hparam(c: Ctx, key: str, values: Sequence[Any], type_: int = U32, array_variants: bool = True):
    """Sets ``llama.<key>`` to one of ``values``, or (every other index, when allowed) to a
    per-layer array of the wrong length or with bad entries."""
    m = c.model
    full = "llama." + key
    if array_variants and c.index % 3 == 2:
        good = m.get(full).value
        arr = c.rng.choice([[good] * (N_LAYER - 1), [good] * (N_LAYER + 1), [], [good, 0], [0, good],
                            [good] * 600, [good, c.rng.choice(values)]])
        m.set(full, ARR, arr, type_)
        return _ser(m), f"{full} = array {arr[:4]}{'...' if len(arr) > 4 else ''} (len {len(arr)})"
    value = values[(c.index - c.index // 3) % len(values)] if array_variants else c.pick(values)
    m.set(full, type_, value)
    return _ser(m), f"{full} = {value!r}"


@mutation("block_count")
def _block_count(c: Ctx):
    return _hparam(c, "block_count", [0, 1, 3, 512, 513, 2**31, 2**32 - 1, 1000], array_variants=False)


@mutation("head_count")
def _head_count(c: Ctx):
    return _hparam(c, "attention.head_count", [0, 3, 5, 7, 128, 65, 2**32 - 1, 64, 1, 8, 2**31])


@mutation("head_count_kv")
def _head_count_kv(c: Ctx):
    return _hparam(c, "attention.head_count_kv", [0, 3, 8, 1, 4, 2**32 - 1, 5, 64, 2**31])


@mutation("feed_forward_length")
def _feed_forward_length(c: Ctx):
    return _hparam(c, "feed_forward_length", [0, 1, 127, 129, 256, 2**31, 2**32 - 1, 64])


@mutation("embedding_length")
def _embedding_length(c: Ctx):
    return _hparam(c, "embedding_length", [0, 1, 63, 65, 128, 2**31, 2**32 - 1, 16, 32], array_variants=False)


@mutation("context_length")
def _context_length(c: Ctx):
    m = c.model
    v = c.pick(["missing", 0, "u64", 1, 2, 16, 2**31, 2**32 - 1, "orig_zero", "orig_huge"])
    if v == "missing":
        m.remove("llama.context_length")
    elif v == "u64":
        m.set("llama.context_length", U64, 2**40)
    elif v == "orig_zero":
        m.set("llama.rope.scaling.original_context_length", U32, 0)
        m.set("llama.rope.scaling.type", STR, "yarn")
        m.set("llama.rope.scaling.factor", F32, 4.0)
    elif v == "orig_huge":
        m.set("llama.rope.scaling.original_context_length", U32, 2**32 - 1)
        m.set("llama.rope.scaling.type", STR, "yarn")
        m.set("llama.rope.scaling.factor", F32, 4.0)
    else:
        m.set("llama.context_length", U32, v)
    return _ser(m), f"context_length {v}"


@mutation("experts")
def _experts(c: Ctx):
    m = c.model
    count, used, groups, gused = c.pick([(0, 1, None, None), (1, 2, None, None), (8, 0, None, None),
                                         (8, 9, None, None), (2**31, 1, None, None), (1025, 2, None, None),
                                         (8, 2, None, None), (None, 2, None, None), (8, 2, 3, 1), (8, 2, 4, 5),
                                         (8, 2, 8, 1), (8, 2, 4, 0), (0, 0, 2, None),
                                         (2**32 - 1, 2**32 - 1, None, None),
                                         (2, 2, None, None)])
    for key, val in (("expert_count", count), ("expert_used_count", used), ("expert_group_count", groups),
                     ("expert_group_used_count", gused)):
        if val is not None:
            m.set("llama." + key, U32, val)
    return _ser(m), f"experts count={count} used={used} groups={groups} group_used={gused}"


@mutation("rope")
def _rope(c: Ctx):
    m = c.model
    key, type_, value = c.pick([
        ("rope.dimension_count", U32, 0), ("rope.dimension_count", U32, 15), ("rope.dimension_count", U32, 17),
        ("rope.dimension_count", U32, 32), ("rope.dimension_count", U32, 2**31), ("rope.dimension_count", U32, 8),
        ("rope.dimension_count", U32, 2**32 - 1),
        ("rope.freq_base", F32, 0.0), ("rope.freq_base", F32, -1.0), ("rope.freq_base", F32, math.nan),
        ("rope.freq_base", F32, math.inf), ("rope.freq_base", F32, 1e-30),
        ("rope.scaling.type", STR, "foo"), ("rope.scaling.type", STR, ""), ("rope.scaling.type", STR, "yarn"),
        ("rope.scaling.type", STR, "longrope"), ("rope.scaling.type", STR, "none"),
        ("rope.scaling.factor", F32, -1.0), ("rope.scaling.factor", F32, math.nan), ("rope.scaling.factor", F32, 1e-30),
        ("rope.scaling.factor", F32, math.inf), ("rope.scale_linear", F32, -4.0),
        ("rope.scaling.attn_factor", F32, math.nan), ("rope.scaling.yarn_log_multiplier", F32, math.inf),
        ("rope.dimension_sections", ARR, [8, 8, 8, 8, 8]), ("rope.dimension_count_swa", U32, 2**32 - 1)])
    if type_ == ARR:
        m.set("llama." + key, ARR, value, I32)
    else:
        m.set("llama." + key, type_, value)
    return _ser(m), f"llama.{key} = {value!r}"


@mutation("epsilon")
def _epsilon(c: Ctx):
    m = c.model
    type_, value = c.pick([(STR, "1e-5"), (F32, -1.0), (F32, math.nan), ("missing", None), (F32, math.inf),
                           (F32, -math.inf), (F32, 0.0), (F32, 1e30), (F32, 1e-45), (F64, 1e-5), (U32, 1)])
    if type_ == "missing":
        m.remove("llama.attention.layer_norm_rms_epsilon")
    else:
        m.set("llama.attention.layer_norm_rms_epsilon", type_, value)
    return _ser(m), f"rms epsilon {value!r} (gguf type {type_})"


@mutation("head_dims")
def _head_dims(c: Ctx):
    m = c.model
    k, v, rot = c.pick([(0, None, None), (None, 0, None), (1, 1, 1), (8, 8, 8), (32, 32, 32), (2**32 - 1, None, None),
                        (16, 32, None), (32, 16, None), (None, None, None), (17, 17, 17), (16, 2**31, 16)])
    for key, val in (("attention.key_length", k), ("attention.value_length", v), ("rope.dimension_count", rot)):
        if val is not None:
            m.set("llama." + key, U32, val)
    return _ser(m), f"key_length={k} value_length={v} rope dims={rot}"


@mutation("misc_hparams")
def _misc_hparams(c: Ctx):
    m = c.model
    key, type_, value = c.pick([
        ("llama.nextn_predict_layers", U32, 3), ("llama.nextn_predict_layers", U32, 2),
        ("llama.nextn_predict_layers", U32, 2**32 - 1), ("llama.pooling_type", U32, 99),
        ("llama.pooling_type", I32, -1), ("llama.pooling_type", U32, 4), ("llama.attention.causal", BOOL, False),
        ("llama.logit_scale", F32, math.nan), ("llama.attn_logit_softcapping", F32, -1.0),
        ("llama.final_logit_softcapping", F32, 0.0), ("llama.attention.sliding_window", U32, 0),
        ("llama.attention.sliding_window", U32, 2**32 - 1), ("llama.embedding_length_out", U32, 2**32 - 1),
        ("llama.classifier.output_labels", ARR, ["a"] * 5000), ("split.count", U16, 2), ("split.no", U16, 5),
        ("split.count", U16, 0), ("general.file_type", U32, 9999), ("general.quantization_version", U32, 2**32 - 1),
        ("llama.leading_dense_block_count", U32, 2**32 - 1), ("llama.attention.max_alibi_bias", F32, math.inf),
        ("llama.attention.clamp_kqv", F32, -1.0), ("llama.decoder_start_token_id", U32, 2**32 - 1),
        ("llama.n_deepstack_layers", U32, 2**32 - 1), ("llama.attention.scale", F32, math.nan),
        ("llama.residual_scale", F32, math.inf), ("llama.embedding_scale", F32, 0.0),
        ("llama.classifier.output_labels", ARR, [1, 2])])
    if type_ == ARR:
        m.set(key, ARR, value, STR if isinstance(value[0], str) else U32)
    else:
        m.set(key, type_, value)
    shown = f"[{len(value)} items]" if isinstance(value, list) else repr(value)
    return _ser(m), f"{key} = {shown} (gguf type {type_})"


REQUIRED_KEYS = ["general.architecture", "llama.context_length", "llama.embedding_length", "llama.block_count",
                 "llama.feed_forward_length", "llama.attention.head_count", "llama.attention.head_count_kv",
                 "llama.attention.layer_norm_rms_epsilon", "llama.rope.dimension_count", "llama.vocab_size",
                 "tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                 "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                 "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.add_bos_token", "general.alignment"]


@mutation("missing_key", expect_reject=True)
def _missing_key(c: Ctx):
    m = c.model
    key = c.pick(REQUIRED_KEYS)
    m.remove(key)
    return _ser(m), f"{key} removed"


KNOWN_KEYS = REQUIRED_KEYS + ["llama.rope.freq_base", "tokenizer.ggml.padding_token_id",
                              "tokenizer.ggml.add_eos_token", "general.file_type", "general.name"]
WRONG_TYPES: list[tuple[int, Any, int | None]] = [
    (STR, "64", None), (U8, 7, None), (I8, -1, None), (U16, 65535, None), (I16, -2, None), (U32, 2**32 - 1, None),
    (I32, -1, None), (F32, 64.5, None), (BOOL, 1, None), (U64, 2**63, None), (I64, -5, None), (F64, 1e300, None),
    (ARR, [4, 4], U32), (ARR, ["a"], STR), (ARR, [], U32), (ARR, [1.0], F32), (ARR, [-1] * 3, I8)]


@mutation("key_wrong_type")
def _key_wrong_type(c: Ctx):
    m = c.model
    key = c.pick(KNOWN_KEYS)
    old = m.get(key)
    choices = [w for w in WRONG_TYPES if not (w[0] == old.type and w[2] == old.elem)]
    type_, value, elem = c.rng.choice(choices)
    m.set(key, type_, value, elem)
    return _ser(m), f"{key} as gguf type {type_}{f'[{elem}]' if elem is not None else ''} = {value!r}"


ARCHES = ["clip", "llama4", "deci", "falcon", "grok", "gpt2", "gptj", "gptneox", "mpt", "baichuan", "starcoder",
          "refact", "bert", "modern-bert", "nomic-bert", "nomic-bert-moe", "neo-bert", "jina-bert-v2",
          "jina-bert-v3", "eurobert", "bloom", "stablelm", "qwen", "qwen2", "qwen2moe", "qwen2vl", "qwen3",
          "qwen3moe", "qwen3next", "qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe", "qwen4exp", "phi2", "phi3",
          "phimoe", "plamo", "plamo2", "plamo3", "codeshell", "orion", "internlm2", "minicpm", "minicpm3", "gemma",
          "gemma2", "gemma3", "gemma3n", "gemma4", "gemma4-assistant", "gemma-embedding", "starcoder2", "mamba",
          "mamba2", "maple", "jamba", "falcon-h1", "xverse", "command-r", "cohere2", "cohere2moe", "dbrx", "olmo",
          "olmo2", "olmoe", "muse-glimmer", "openelm", "arctic", "deepseek", "deepseek2", "deepseek2-ocr",
          "deepseek32", "deepseek4", "chatglm", "glm4", "glm4moe", "glm-dsa", "bitnet", "t5", "t5encoder", "jais",
          "jais2", "nemotron", "nemotron_h", "nemotron_h_moe", "exaone", "exaone4", "exaone-moe", "rwkv6",
          "rwkv6qwen2", "rwkv7", "arwkv7", "granite", "granitemoe", "granitehybrid", "graniteswitch", "granite_swa",
          "chameleon", "wavtokenizer-dec", "plm", "bailingmoe", "bailingmoe2", "bailingmoe3", "dots1", "dots3note",
          "arcee", "afmoe", "laguna", "ernie4_5", "ernie4_5-moe", "hunyuan-moe", "hunyuan-dense", "hunyuan_vl",
          "hy_v3", "hy_v4", "smollm3", "gpt-oss", "lfm2", "lfm2moe", "dream", "smallthinker", "llada", "llada-moe",
          "seed_oss", "grovemoe", "apertus", "minimax-01", "hrm_text", "minimax-m2", "minimax-m3", "cogvlm", "rnd1",
          "pangu-embedded", "mistral3", "eagle3", "dflash", "mistral4", "paddleocr", "mimo2", "step35", "spark2_5",
          "llama-embed", "maincoder", "kimi-linear", "kimi-k3", "glm5-next", "talkie", "mellum", "nanbeige",
          "qwen3tts", "pockettts"]


@mutation("architecture")
def _architecture(c: Ctx):
    """Another architecture's name on the llama model: with the llama.* keys renamed to its
    prefix (its hyperparameter and tensor loaders run on llama data), or as they are, or a
    name that is no architecture."""
    m = c.model
    arch = ARCHES[(c.index // 2) % len(ARCHES)]
    rename = c.index % 2 == 0
    m.set("general.architecture", STR, arch)
    if rename:
        m.kvs = [KV(arch + kv.key[5:], kv.type, kv.value, kv.elem)
                 if isinstance(kv.key, str) and kv.key.startswith("llama.") else kv for kv in m.kvs]
    return _ser(m), f"architecture {arch!r}, keys {'renamed' if rename else 'left as llama.*'}"


@mutation("architecture_name")
def _architecture_name(c: Ctx):
    m = c.model
    arch = c.pick(["", "LLAMA", "llama ", "x" * 300, b"ll\xffama", b"llama\0x", "unknown", " llama", "llama\n"])
    m.set("general.architecture", STR, arch)
    return _ser(m), f"architecture {arch!r}"


@mutation("tokenizer_tiny")
def _tokenizer_tiny(c: Ctx):
    """Each tokenizer over a vocabulary of 0 to 4 tokens (tensors sized to match)."""
    models = ["gpt2", "llama", "bert", "t5", "rwkv", "plamo2", "none", "whitespace"]
    model = models[c.index % len(models)]
    k = (c.index // len(models)) % 5
    m = base_model(base_vocab()[:k])
    m.set("tokenizer.ggml.model", STR, model)
    if model == "gpt2":
        m.set("tokenizer.ggml.merges", ARR, ["< u", "<u n"][:k], STR)
    return _ser(m), f"tokenizer {model!r} with {k} token(s)"


# ---- structured: tensors ------------------------------------------------------------------


@mutation("tensor_shape")
def _tensor_shape(c: Ctx):
    m = c.model
    i = c.rng.randrange(len(m.tensors))
    t = m.tensors[i]
    blck = GGML_SIZES[t.type][0]
    v = c.pick(["transpose", "wrong_ne0", "wrong_ne1", "extra_dim_1", "extra_dim_2", "leading_1", "zero",
                "zero_ne1", "scalar_like", "4d"])
    d = t.dims
    if v == "transpose":
        dims = tuple(reversed(d)) if len(d) > 1 and d[-1] % blck == 0 else (d[0], d[0] * 2)
    elif v == "wrong_ne0":
        dims = (d[0] + blck * c.rng.choice([1, 2, -1]),) + d[1:]
    elif v == "wrong_ne1":
        dims = (d[0], (d[1] if len(d) > 1 else 1) + c.rng.choice([1, -1, 7]))
    elif v == "extra_dim_1":
        dims = d + (1,)
    elif v == "extra_dim_2":
        dims = d + (2,)
    elif v == "leading_1":
        dims = (blck,) + d if blck > 1 else (1,) + d
    elif v == "zero":
        dims = (0,) + d[1:]
    elif v == "zero_ne1":
        dims = (d[0], 0)
    elif v == "scalar_like":
        dims = (blck,)
    else:
        dims = (d[0], 1, 1, 1)
    dims = tuple(max(x, 0) for x in dims)
    m.tensors[i] = Tensor(t.name, dims, t.type)
    return _ser(m), f"{t.name} shape {d} -> {dims} ({v})"


# types whose block size divides 32 or 64 (every ne0 in the model), i.e. valid in the container
_TYPES_32 = [t for t, (b, _) in GGML_SIZES.items() if 32 % b == 0]
_TYPES_64 = [t for t, (b, _) in GGML_SIZES.items() if 64 % b == 0]


@mutation("tensor_type")
def _tensor_type(c: Ctx):
    m = c.model
    i = c.rng.randrange(len(m.tensors))
    t = m.tensors[i]
    candidates = [x for x in (_TYPES_64 if t.dims[0] % 64 == 0 else _TYPES_32) if x != t.type]
    new = candidates[c.index % len(candidates)]
    m.tensors[i] = Tensor(t.name, t.dims, new)
    return _ser(m), f"{t.name} stored as ggml type {new} (was {t.type})"


@mutation("tensor_set")
def _tensor_set(c: Ctx):
    m = c.model
    names = [t.name for t in m.tensors]
    v = c.pick(["drop", "duplicate", "extra_unknown", "extra_layer", "no_output", "rope_freqs_bad", "qkv_fused_too",
                "bias_bad_shape", "drop_all", "only_embd", "reorder", "huge_unknown", "name_63", "name_64"])
    desc = v
    if v == "drop":
        name = c.rng.choice(names)
        m.tensors.pop(m.tensor_index(name))
        desc = f"{name} missing"
    elif v == "duplicate":
        j = c.rng.randrange(len(m.tensors))
        m.tensors.insert(c.rng.randrange(len(m.tensors)), m.tensors[j])
        desc = f"{m.tensors[j].name} twice"
    elif v == "extra_unknown":
        m.tensors.append(Tensor("blk.0.something_odd.weight", (N_EMBD,), GGML_F32))
    elif v == "extra_layer":
        m.tensors.append(Tensor(f"blk.{c.rng.choice([2, 99, 511, 512, 4096])}.attn_norm.weight", (N_EMBD,), GGML_F32))
    elif v == "no_output":
        m.tensors.pop(m.tensor_index("output.weight"))
    elif v == "rope_freqs_bad":
        m.tensors.append(Tensor("rope_freqs.weight", (c.rng.choice([1, 7, 64, 8]),), GGML_F32))
    elif v == "qkv_fused_too":
        m.tensors.append(Tensor("blk.0.attn_qkv.weight", (N_EMBD, c.rng.choice([128, 64, 96])), GGML_F16))
    elif v == "bias_bad_shape":
        name = c.rng.choice(["blk.0.attn_q.bias", "blk.1.ffn_down.bias", "blk.0.attn_output.bias", "output_norm.bias"])
        m.tensors.append(Tensor(name, (c.rng.choice([1, 63, 128]),), GGML_F32))
        desc = f"{name} with a wrong shape"
    elif v == "drop_all":
        m.tensors = []
    elif v == "only_embd":
        m.tensors = m.tensors[:1]
    elif v == "reorder":
        c.rng.shuffle(m.tensors)
    elif v == "huge_unknown":  # an unused tensor with a big (but representable) shape and no data behind it
        data, lay = serialize(m)
        m.tensors.append(Tensor("blk.0.unused.weight", (N_EMBD,), GGML_F32))
        data, lay = serialize(m)
        t = lay.tensors[-1]
        buf = bytearray(data)
        struct.pack_into("<q", buf, t.dims[0], 2**40)
        return bytes(buf), "an unused tensor of 2**40 floats whose data is not in the file"
    else:
        length = 63 if v == "name_63" else 64
        m.tensors.append(Tensor("blk.0." + "x" * (length - 6), (N_EMBD,), GGML_F32))
    return _ser(m), desc


@mutation("kv_structure")
def _kv_structure(c: Ctx):
    m = c.model
    v = c.pick(["duplicate_key", "empty_key", "long_key", "nul_key", "invalid_utf8_key", "many_keys",
                "empty_arrays", "huge_string", "bool_2", "string_nul", "name_invalid_utf8", "big_string_array"])
    if v == "duplicate_key":
        m.kvs.append(c.rng.choice(m.kvs))
    elif v == "empty_key":
        m.kvs.append(KV("", U32, 1))
    elif v == "long_key":
        m.kvs.append(KV("k" * 70000, U32, 1))
    elif v == "nul_key":
        m.kvs.append(KV("llama.block_count\0hidden", U32, 99))
    elif v == "invalid_utf8_key":
        m.kvs.append(KV(b"\xff\xfe.key", U32, 1))
    elif v == "many_keys":
        m.kvs += [KV(f"hostile.k{i}", U8, i % 256) for i in range(10000)]
    elif v == "empty_arrays":
        m.kvs += [KV(f"hostile.empty{t}", ARR, [], t) for t in range(13) if t != ARR]
    elif v == "huge_string":
        m.set("general.name", STR, "n" * 2_000_000)
    elif v == "bool_2":
        m.set("tokenizer.ggml.add_bos_token", BOOL, 2)
    elif v == "string_nul":
        m.set("general.architecture", STR, "llama\0")
    elif v == "name_invalid_utf8":
        m.set("general.name", STR, b"\xff\xfe\xfd")
    else:
        m.set("hostile.arr_str", ARR, ["s" * 100] * 50000, STR)
    return _ser(m), v


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    cls: str
    data: bytes
    description: str


def parse_id(case_id: str) -> tuple[str, int, int]:
    cls, index, seed = case_id.split(":")
    return cls, int(index), int(seed)


def make_case(case_id: str) -> Case:
    """Re-creates the case named ``class:index:seed`` (``base:0:0`` is the unmodified model)."""
    cls, index, seed = parse_id(case_id)
    model, data, layout = base()
    if cls == "base":
        return Case(case_id, cls, data, "the base model")
    if cls not in CLASSES:
        raise ValueError(f"unknown mutation class {cls!r}")
    ctx = Ctx(cls, index, seed, _rng_for(cls, index, seed), model, data, layout)
    out, desc = CLASSES[cls].fn(ctx)
    return Case(case_id, cls, out, desc)


def case_ids(n: int, seed: int, classes: Sequence[str] | None = None, start: int = 0) -> list[str]:
    """``n`` case ids cycling through ``classes`` (all by default), index k // len(classes)."""
    classes = list(classes or CLASSES)
    return [f"{classes[k % len(classes)]}:{k // len(classes)}:{seed}" for k in range(start, start + n)]


# ---------------------------------------------------------------------------------------------
# Worker (subprocess side)
# ---------------------------------------------------------------------------------------------

WORKER_ENV = {"GGML_NO_BACKTRACE": "1", "PYTHONFAULTHANDLER": "1", "OMP_NUM_THREADS": "1"}
PROMPT = "the quick brown fox"


def _worker_main(mem_limit_gb: float) -> None:
    import faulthandler
    import resource
    import shutil

    # Results go to the original stdout only; anything native code prints to fd 1 goes to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    faulthandler.enable()
    # AddressSanitizer reserves terabytes of address space for its shadow memory: no address-space
    # limit under it (scripts/gpu_run.sh asan preloads it; with the limit every worker aborted).
    if mem_limit_gb > 0 and "libasan" not in os.environ.get("LD_PRELOAD", ""):
        limit = int(mem_limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # llama_cpp before numpy (make_case imports it): see tests/conftest.py
    from llama_cpp import Llama, ModelLoadError, SamplingParams

    greedy = SamplingParams(temperature=0.0)
    tmp = tempfile.mkdtemp(prefix="hostile-gguf-")
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            req = json.loads(line)
            case_id = req.get("id") or req.get("path")
            sys.stderr.write(f"@@case {case_id}\n")
            sys.stderr.flush()
            path = req.get("path")
            own = path is None
            if own:
                path = os.path.join(tmp, "case.gguf")
                with open(path, "wb") as f:
                    f.write(make_case(case_id).data)
            result: dict[str, Any] = {"id": case_id}
            t0 = time.monotonic()
            try:
                sys.stderr.write("@@phase load\n")
                sys.stderr.flush()
                llm = Llama(path, n_ctx=64, n_batch=64, n_ubatch=64, n_threads=1, n_threads_batch=1, verbose=False)
            except ModelLoadError as e:
                result.update(outcome="ModelLoadError", message=str(e))
            except Exception as e:  # noqa: BLE001 - the type is the finding
                result.update(outcome=type(e).__name__, message=str(e), phase="load")
            else:
                phase = "metadata"
                try:
                    sys.stderr.write("@@phase metadata\n")
                    sys.stderr.flush()
                    result["n_vocab"] = llm.n_vocab()
                    _ = llm.metadata  # every key through llama.cpp's string conversion
                    phase = "generate"
                    sys.stderr.write("@@phase generate\n")
                    sys.stderr.flush()
                    text = llm.generate(PROMPT, max_tokens=2, sampling=greedy)
                    result.update(outcome="loaded", message=text)
                except Exception as e:  # noqa: BLE001
                    result.update(outcome=f"{type(e).__name__}@{phase}", message=str(e), phase=phase)
                sys.stderr.write("@@phase close\n")
                sys.stderr.flush()
                try:
                    llm.close()
                except Exception as e:  # noqa: BLE001
                    if result.get("outcome") == "loaded":
                        result.update(outcome=f"{type(e).__name__}@close", message=str(e), phase="close")
            result["seconds"] = round(time.monotonic() - t0, 4)
            if own:
                os.unlink(path)
            out.write(json.dumps(result) + "\n")
            out.flush()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Runner (parent side)
# ---------------------------------------------------------------------------------------------

_ABORT_RE = re.compile(r"(?P<loc>[^\s:'\"]+\.(?:c|cc|cpp|h|hpp)):(?P<line>\d+): (?P<msg>.*)$")
_INTERESTING = ("GGML_ASSERT", "GGML_ABORT", "terminate called", "what():", "Fatal Python error", "error",
                "Assertion", "AddressSanitizer", "double free", "corrupted", "malloc")


# Exceptions a model that loaded may raise while generating and still count as handled: a file
# whose structure is sound but whose numbers are garbage (NaN or infinite weights, a shifted
# data section) loads, and its first generation ends with GenerationError ("the model produced
# no usable logits"): a typed error, the process alive. Anything else there is a finding.
ACCEPTED_AT_GENERATE: tuple[str, ...] = ("GenerationError",)


@dataclass
class Result:
    id: str
    cls: str
    outcome: str
    message: str = ""
    abort: str = ""  # the native abort line (file:line: text) or the first fatal line
    stderr_tail: str = ""
    phase: str = ""  # load / metadata / generate / close (for crashes: the last one the worker announced)
    seconds: float = 0.0
    reproduced: bool | None = None  # crashes: whether a fresh worker crashed on the case alone
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        if self.outcome == "ModelLoadError":
            return message_is_specific(self.message)
        return self.outcome == "loaded" or self.outcome in [f"{e}@generate" for e in ACCEPTED_AT_GENERATE]

    @property
    def abort_site(self) -> str:
        """The abort location without the build's directory prefix (``ggml/src/gguf.cpp:123``)."""
        m = _ABORT_RE.search(self.abort)
        if m:
            loc = m.group("loc")
            for anchor in ("/ggml/", "/src/", "/common/", "/vendor/"):
                if anchor in loc:
                    loc = loc[loc.index(anchor) + 1:]
                    break
            return f"{loc}:{m.group('line')}"
        return self.abort[:120] if self.abort else ""

    @property
    def site(self) -> str:
        """What groups failures: the outcome and, where known, the abort location."""
        return f"{self.outcome} {self.abort_site}".strip()


def message_is_specific(message: str) -> bool:
    """A ModelLoadError message that says what is wrong with the file, not only that it failed."""
    reason = message.split("': ", 1)[-1].strip()
    return bool(reason) and reason not in ("llama.cpp rejected the file", "failed") and len(reason) > 8


def _signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal{-rc}"


def _case_stderr(text: str, case_id: str) -> tuple[str, str]:
    """The worker's stderr since the case began, and the last phase it announced."""
    marker = f"@@case {case_id}\n"
    i = text.rfind(marker)
    part = text[i + len(marker):] if i >= 0 else text[-8000:]
    phases = re.findall(r"^@@phase (\w+)$", part, re.M)
    part = "\n".join(line for line in part.splitlines() if not line.startswith("@@phase"))
    return part, (phases[-1] if phases else "")


def _abort_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if _ABORT_RE.search(ln):
            return ln
    for key in ("terminate called", "what():", "Fatal Python error", "AddressSanitizer", "double free",
                "corrupted", "malloc():", "free():"):
        for ln in lines:
            if key in ln:
                return ln
    return ""


class Worker:
    """One ``hostile_gguf.py --worker`` process, its stderr in a file of its own."""

    def __init__(self, log_dir: Path, serial: int, python: str, mem_limit_gb: float, env: dict[str, str]):
        self.stderr_path = log_dir / f"worker-{serial:04d}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        full_env = dict(os.environ, **WORKER_ENV, **env)
        self.proc = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--worker", "--mem-limit-gb", str(mem_limit_gb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=full_env, bufsize=0)
        self._buf = b""

    def send(self, request: dict[str, str]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()

    def readline(self, timeout: float) -> bytes | None:
        """A result line; None on timeout; b"" when the worker ended."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return b""
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, kill: bool = False) -> int:
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                try:
                    assert self.proc.stdin is not None
                    self.proc.stdin.close()
                except OSError:
                    pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for s in (self.proc.stdin, self.proc.stdout):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self._stderr.close()
        return self.proc.returncode


class Runner:
    """Feeds cases to a worker one at a time; a crash or a hang costs that worker, and the
    next case goes to a fresh one."""

    def __init__(self, log_dir: Path | str, timeout: float = 30.0, python: str = sys.executable,
                 mem_limit_gb: float = 4.0, env: dict[str, str] | None = None, keep_logs: bool = False):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.python = python
        self.mem_limit_gb = mem_limit_gb
        self.env = env or {}
        self.keep_logs = keep_logs
        self._serial = 0
        self._worker: Worker | None = None
        self.workers_started = 0

    def _new_worker(self) -> Worker:
        self._serial += 1
        self.workers_started += 1
        return Worker(self.log_dir, self._serial, self.python, self.mem_limit_gb, self.env)

    def _retire(self, worker: Worker, kill: bool = False) -> int:
        rc = worker.stop(kill=kill)
        if not self.keep_logs and rc == 0:
            worker.stderr_path.unlink(missing_ok=True)
        return rc

    def run_one(self, case_id: str, path: str | None = None) -> Result:
        if self._worker is None:
            self._worker = self._new_worker()
        w = self._worker
        cls = parse_id(case_id)[0] if path is None else "file"
        request = {"id": case_id} if path is None else {"path": path}
        t0 = time.monotonic()
        try:
            w.send(request)
            line = w.readline(self.timeout)
        except BrokenPipeError:
            line = b""
        elapsed = round(time.monotonic() - t0, 4)
        if line:
            d = json.loads(line)
            extra = {k: v for k, v in d.items() if k not in ("id", "outcome", "message", "seconds", "phase")}
            r = Result(case_id, cls, d["outcome"], d.get("message", ""), phase=d.get("phase", ""),
                       seconds=d.get("seconds", elapsed), extra=extra)
            if not r.accepted:  # an abort turned into an exception still names its site
                r.abort = _abort_line(r.message)
            return r
        # the worker died (b"") or hung (None)
        self._worker = None
        if line is None:
            self._retire(w, kill=True)
            tail, phase = _case_stderr(w.stderr_text(), case_id)
            return Result(case_id, cls, "hang", f"no result within {self.timeout:g} s", _abort_line(tail),
                          tail[-3000:], phase, elapsed)
        rc = self._retire(w)
        tail, phase = _case_stderr(w.stderr_text(), case_id)
        outcome = f"crash:{_signal_name(rc)}" if rc < 0 else f"crash:exit{rc}"
        return Result(case_id, cls, outcome, "", _abort_line(tail), tail[-3000:], phase, elapsed)

    def close(self) -> None:
        if self._worker is not None:
            self._retire(self._worker)
            self._worker = None

    def run(self, ids: Iterable[str], confirm: bool = False,
            progress: Callable[[int, Result], None] | None = None) -> list[Result]:
        """Runs every case. ``confirm``: a crash or hang is run again alone in a fresh worker, to
        tell a crash of this file from damage a previous case left in the worker."""
        results = []
        try:
            for k, case_id in enumerate(ids):
                r = self.run_one(case_id)
                if confirm and not r.accepted and (r.outcome.startswith("crash") or r.outcome == "hang"):
                    self.close()
                    again = self.run_one(case_id)
                    self.close()
                    r.reproduced = again.outcome == r.outcome
                    if not r.abort and again.abort:
                        r.abort, r.stderr_tail = again.abort, again.stderr_tail
                results.append(r)
                if progress:
                    progress(k, r)
        finally:
            self.close()
        return results


def describe(results: Sequence[Result]) -> None:
    """Fills in each result's class description (re-created from the id)."""
    for r in results:
        if r.cls != "file" and not r.description:
            try:
                r.description = make_case(r.id).description
            except Exception as e:  # noqa: BLE001
                r.description = f"(cannot re-create: {e})"


SLOW_SECONDS = 2.0  # a case this slow is listed (the base model loads and generates in ~20 ms)


def summarize(results: Sequence[Result]) -> dict[str, Any]:
    by_outcome = collections.Counter(r.outcome if r.accepted or r.outcome != "ModelLoadError" else
                                     "ModelLoadError(vague)" for r in results)
    by_class: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for r in results:
        by_class[r.cls][r.outcome] += 1
    failures = [r for r in results if not r.accepted]
    sites: dict[str, list[Result]] = collections.defaultdict(list)
    for r in failures:
        sites[r.site].append(r)
    return {
        "cases": len(results),
        "accepted": len(results) - len(failures),
        "by_outcome": dict(by_outcome.most_common()),
        "by_class": {c: dict(v) for c, v in sorted(by_class.items())},
        "failure_sites": {
            site: {"count": len(rs), "classes": sorted({r.cls for r in rs}), "abort": rs[0].abort,
                   "phase": rs[0].phase, "example": rs[0].id, "description": rs[0].description,
                   "message": rs[0].message[:300]}
            for site, rs in sorted(sites.items(), key=lambda kv: -len(kv[1]))},
        "slow": [{"id": r.id, "class": r.cls, "seconds": r.seconds, "outcome": r.outcome}
                 for r in sorted(results, key=lambda r: -r.seconds) if r.seconds >= SLOW_SECONDS],
        "failures": [{"id": r.id, "class": r.cls, "outcome": r.outcome, "abort": r.abort, "phase": r.phase,
                      "reproduced": r.reproduced, "description": r.description, "message": r.message[:300]}
                     for r in failures],
    }


def failure_report(results: Sequence[Result], limit: int = 60) -> str:
    """One line per failing case: id, class, outcome, phase, abort line (or message)."""
    lines = []
    for r in [r for r in results if not r.accepted][:limit]:
        what = r.abort or r.message[:200] or r.stderr_tail.strip().splitlines()[-1:] or ""
        lines.append(f"{r.id} [{r.cls}] {r.outcome} during {r.phase or '?'}: {what}  ({r.description})")
    n = sum(not r.accepted for r in results)
    if n > limit:
        lines.append(f"... and {n - limit} more")
    return "\n".join(lines)


def installed_build() -> str:
    """Where the workers' ``llama_cpp`` comes from and when its extension was built (the
    package is imported only in the workers)."""
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return "llama_cpp not found"
    pkg = Path(list(spec.submodule_search_locations)[0])
    cores = sorted(pkg.glob("_core*.so")) + sorted(pkg.glob("_core*.pyd"))
    if not cores:
        return str(pkg)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(cores[0].stat().st_mtime))
    return f"{cores[0]} (built {stamp} UTC)"


def save_failures(results: Sequence[Result], directory: Path | str, one_per_site: bool = False) -> list[Path]:
    """Writes the file of each failing case (or one per distinct abort site) and its stderr."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written, seen = [], set()
    for r in results:
        if r.accepted or r.cls == "file":
            continue
        site = r.site
        if one_per_site and site in seen:
            continue
        seen.add(site)
        stem = r.id.replace(":", "_")
        path = directory / f"{stem}.gguf"
        path.write_bytes(make_case(r.id).data)
        (directory / f"{stem}.txt").write_text(
            f"id: {r.id}\nclass: {r.cls}\noutcome: {r.outcome}\nphase: {r.phase}\nmutation: {r.description}\n"
            f"abort: {r.abort}\nmessage: {r.message}\n\nstderr:\n{r.stderr_tail}\n")
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--worker", action="store_true", help="run as the worker subprocess")
    p.add_argument("--mem-limit-gb", type=float, default=4.0, help="address-space limit of a worker (0: none)")
    p.add_argument("--cases", type=int, default=1000, help="how many cases, cycling through the classes")
    p.add_argument("--start", type=int, default=0, help="first case number (to resume a long run)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--classes", default="", help="comma-separated classes to run (default: all)")
    p.add_argument("--case", action="append", default=[], help="run this case id (repeatable)")
    p.add_argument("--file", action="append", default=[], help="run this GGUF file (repeatable)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per case before it counts as a hang")
    p.add_argument("--no-confirm", action="store_true", help="do not re-run crashes in a fresh worker")
    p.add_argument("--backtrace", action="store_true", help="let ggml print its backtrace on abort (slow)")
    p.add_argument("--save-failures", metavar="DIR", help="write each failing case's file and stderr here")
    p.add_argument("--one-per-site", action="store_true", help="with --save-failures: one file per abort site")
    p.add_argument("--json", metavar="PATH", help="write the summary as JSON")
    p.add_argument("--results", metavar="PATH", help="write every case's result as a JSON line")
    p.add_argument("--log-dir", metavar="DIR", help="worker stderr files (default: a temporary directory)")
    p.add_argument("--write", nargs=2, metavar=("ID", "PATH"), help="write the file of case ID and exit")
    p.add_argument("--list-classes", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)

    if a.worker:
        _worker_main(a.mem_limit_gb)
        return 0
    if a.list_classes:
        for name, mc in CLASSES.items():
            print(f"{name}{'' if mc.expect_reject else '  (may load)'}")
        return 0
    if a.write:
        case = make_case(a.write[0])
        Path(a.write[1]).write_bytes(case.data)
        print(f"{a.write[1]}: {len(case.data)} bytes, {case.description}")
        return 0

    classes = [c for c in a.classes.split(",") if c] or None
    for c in classes or []:
        if c not in CLASSES:
            p.error(f"unknown class {c!r} (see --list-classes)")
    ids = a.case or ([] if a.file else case_ids(a.cases, a.seed, classes, a.start))
    log_dir = Path(a.log_dir or tempfile.mkdtemp(prefix="hostile-logs-"))
    env = {"GGML_NO_BACKTRACE": ""} if a.backtrace else {}
    runner = Runner(log_dir, timeout=a.timeout, mem_limit_gb=a.mem_limit_gb, env=env)
    if a.backtrace:
        WORKER_ENV.pop("GGML_NO_BACKTRACE", None)

    t0 = time.monotonic()
    counts: collections.Counter[str] = collections.Counter()

    def progress(k: int, r: Result) -> None:
        counts[r.outcome] += 1
        if not a.quiet and (not r.accepted):
            print(f"  {r.id}: {r.outcome} {r.abort or r.message[:160]}", flush=True)
        if not a.quiet and (k + 1) % 200 == 0:
            print(f"[{k + 1} cases, {time.monotonic() - t0:.0f} s] {dict(counts)}", flush=True)

    results = runner.run(ids, confirm=not a.no_confirm, progress=progress)
    for path in a.file:
        results.append(runner.run_one(os.path.abspath(path), os.path.abspath(path)))
    runner.close()
    elapsed = time.monotonic() - t0
    describe([r for r in results if not r.accepted])
    summary = summarize(results)
    summary["seconds"] = round(elapsed, 1)
    summary["seconds_per_case"] = round(elapsed / max(len(results), 1), 4)
    summary["workers_started"] = runner.workers_started
    summary["seed"] = a.seed
    summary["llama_cpp"] = installed_build()

    print(f"\nllama_cpp: {summary['llama_cpp']}")
    print(f"{len(results)} cases in {elapsed:.1f} s ({summary['seconds_per_case'] * 1000:.0f} ms/case), "
          f"{runner.workers_started} worker(s); outcomes: {summary['by_outcome']}")
    if summary["failure_sites"]:
        print("\nfailure sites (count, example case, abort line):")
        for site, info in summary["failure_sites"].items():
            print(f"  {info['count']:5d}  {site}\n         e.g. {info['example']} ({info['description']}), "
                  f"phase {info['phase'] or '?'}\n         {info['abort'] or info['message'][:200]}")
    if summary["slow"]:
        print(f"\nslow cases (>= {SLOW_SECONDS:g} s):")
        describe([r for r in results if r.seconds >= SLOW_SECONDS])
        for r in sorted(results, key=lambda r: -r.seconds):
            if r.seconds >= SLOW_SECONDS:
                print(f"  {r.seconds:7.2f} s  {r.id} {r.outcome} ({r.description})")
    if a.save_failures:
        written = save_failures(results, a.save_failures, one_per_site=a.one_per_site)
        print(f"\n{len(written)} failing case file(s) written to {a.save_failures}")
    if a.results:
        describe(results)
        with open(a.results, "w") as f:
            for r in results:
                d = dataclasses.asdict(r)
                d["accepted"] = r.accepted
                f.write(json.dumps(d) + "\n")
    if a.json:
        Path(a.json).write_text(json.dumps(summary, indent=1))
    return 0 if summary["accepted"] == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
