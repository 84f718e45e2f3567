"""``info``: a model's metadata, family, chat template and context; the backends."""

from __future__ import annotations

import argparse
import json
import os

from .. import print_system_info
from ..families import detect_family, family_info
from ..llama import Llama
from .common import progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", help="GGUF file (without it: the backends only)")
    parser.add_argument("--template", action="store_true", help="print the whole chat template")
    parser.add_argument("--metadata", action="store_true", help="print every metadata key")
    parser.add_argument("--json", action="store_true", help="one JSON object (model facts only)")


def _int(metadata: dict[str, str], key: str) -> int | None:
    value = metadata.get(f"{metadata.get('general.architecture', '')}.{key}")
    return int(value) if value is not None and value.isdigit() else None


def run(args: argparse.Namespace) -> int:
    if not args.model:
        print_system_info()
        return 0
    with progress(f"reading {args.model}"), Llama(args.model, vocab_only=True) as llm:
        metadata, template = llm.metadata, llm.chat_template
        facts = {
            "path": llm.model_path,
            "size_bytes": os.path.getsize(llm.model_path),
            "name": metadata.get("general.name", ""),
            "architecture": metadata.get("general.architecture", ""),
            "family": detect_family(metadata, template, llm.model_path).name,
            # A vocabulary-only load has no hyperparameters: they are read from the metadata.
            "n_ctx_train": _int(metadata, "context_length"),
            "n_embd": _int(metadata, "embedding_length"),
            "n_layer": _int(metadata, "block_count"),
            "n_vocab": llm.n_vocab(),
            "chat_template": template if args.template else template[:200],
        }
    facts["thinking"] = family_info(detect_family(metadata, template, llm.model_path)).thinking
    if args.json:
        print(json.dumps({**facts, **({"metadata": metadata} if args.metadata else {})}, ensure_ascii=False))
        return 0
    for key, value in facts.items():
        if key != "chat_template":
            print(f"{key:12} {value}")
    print("chat template" + ("" if args.template else " (first 200 characters; --template for all)") + ":")
    print(facts["chat_template"] or "(none)")
    if args.metadata:
        for key in sorted(metadata):
            print(f"  {key} = {metadata[key][:120]}")
    print()
    print_system_info()
    return 0
