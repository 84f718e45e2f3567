"""Model families: which family a GGUF belongs to, read from the file itself
(``general.architecture``, ``general.name``/``basename``, the chat template, the tokenizer;
the file name only as a fallback), and each family's recommended sampling.

Chat formatting, thinking switches and tool-call parsing are not per-family code here: they
come from the model's own chat template through llama.cpp's common chat layer. The family
tells what a user should expect and which sampling the model's authors recommend."""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from .sampling import SamplingParams

__all__ = ["ModelFamily", "FamilyInfo", "detect_family", "family_info"]


class ModelFamily(enum.Enum):
    """A model family. ``UNKNOWN`` still chats through the model's own template."""

    QWEN3 = "Qwen3 (hybrid thinking)"
    QWEN3_INSTRUCT_2507 = "Qwen3 Instruct-2507"
    QWEN3_THINKING_2507 = "Qwen3 Thinking-2507"
    QWEN2_5 = "Qwen2.5"
    QWQ = "QwQ"
    GEMMA2 = "Gemma 2"
    GEMMA3 = "Gemma 3"
    GEMMA4 = "Gemma 4"
    MISTRAL = "Mistral"
    MINISTRAL = "Ministral"
    DEVSTRAL = "Devstral"
    MAGISTRAL = "Magistral"
    LLAMA3 = "Llama 3.x"
    PHI3 = "Phi-3 / Phi-3.5"
    PHI4 = "Phi-4"
    GPT_OSS = "GPT-OSS"
    DEEPSEEK_R1 = "DeepSeek-R1 (and distills)"
    SMOLLM2 = "SmolLM2"
    SMOLLM3 = "SmolLM3"
    GRANITE = "Granite"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class FamilyInfo:
    """What a family's authors recommend. ``sampling``: the recommended settings (None: no
    published recommendation, the library's defaults apply); ``sampling_no_think``: the
    settings for a hybrid model with thinking off, when they differ; ``source``: where the
    numbers come from; ``thinking``: ``"always"`` for models that always reason, ``"none"``
    for models that never do, None when the chat template tells (a switch: ``"hybrid"``)."""

    sampling: SamplingParams | None = None
    sampling_no_think: SamplingParams | None = None
    source: str = ""
    thinking: str | None = None


def _p(temperature: float, top_p: float = 1.0, top_k: int = 0, min_p: float = 0.0,
       repeat_penalty: float = 1.0) -> SamplingParams:
    return SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
                          repeat_penalty=repeat_penalty)


_QWEN_THINK = _p(0.6, top_p=0.95, top_k=20)
_QWEN_NO_THINK = _p(0.7, top_p=0.8, top_k=20)

_INFO: dict[ModelFamily, FamilyInfo] = {
    ModelFamily.QWEN3: FamilyInfo(_QWEN_THINK, _QWEN_NO_THINK, "Qwen3 model cards, 'Best Practices'"),
    ModelFamily.QWEN3_INSTRUCT_2507: FamilyInfo(_QWEN_NO_THINK, None, "Qwen3-*-Instruct-2507 model cards"),
    ModelFamily.QWEN3_THINKING_2507: FamilyInfo(_QWEN_THINK, None, "Qwen3-*-Thinking-2507 model cards"),
    ModelFamily.QWQ: FamilyInfo(_p(0.6, top_p=0.95, top_k=40), None, "QwQ-32B model card, 'Usage Guidelines'"),
    ModelFamily.QWEN2_5: FamilyInfo(_p(0.7, top_p=0.8, top_k=20, repeat_penalty=1.05), None,
                                    "Qwen2.5-*-Instruct generation_config.json"),
    ModelFamily.GEMMA3: FamilyInfo(_p(1.0, top_p=0.95, top_k=64), None, "Gemma 3 generation_config.json"),
    ModelFamily.GEMMA4: FamilyInfo(_p(1.0, top_p=0.95, top_k=64), None, "Gemma 4 model card"),
    ModelFamily.MISTRAL: FamilyInfo(_p(0.15), None, "Mistral-Small-3.x model cards (temperature 0.15)"),
    ModelFamily.DEVSTRAL: FamilyInfo(_p(0.15), None, "Devstral model card (temperature 0.15)"),
    ModelFamily.MAGISTRAL: FamilyInfo(_p(0.7, top_p=0.95), None, "Magistral model card"),
    ModelFamily.MINISTRAL: FamilyInfo(_p(0.7, top_p=0.95), None, "Ministral 3 reasoning model cards"),
    ModelFamily.LLAMA3: FamilyInfo(_p(0.6, top_p=0.9), None, "Llama 3.x generation_config.json"),
    ModelFamily.GPT_OSS: FamilyInfo(_p(1.0, top_p=1.0), None, "gpt-oss model card (temperature 1.0, top_p 1.0)"),
    ModelFamily.DEEPSEEK_R1: FamilyInfo(_p(0.6, top_p=0.95), None, "DeepSeek-R1 model card, 'Usage Recommendations'"),
    ModelFamily.SMOLLM3: FamilyInfo(_p(0.6, top_p=0.95), None, "SmolLM3-3B model card"),
}


_ALWAYS_THINKS = (ModelFamily.QWQ, ModelFamily.QWEN3_THINKING_2507, ModelFamily.DEEPSEEK_R1, ModelFamily.GPT_OSS,
                  ModelFamily.MAGISTRAL)
_NEVER_THINKS = (ModelFamily.QWEN3_INSTRUCT_2507, ModelFamily.QWEN2_5, ModelFamily.GEMMA2, ModelFamily.GEMMA3,
                 ModelFamily.MISTRAL, ModelFamily.DEVSTRAL, ModelFamily.LLAMA3, ModelFamily.PHI3, ModelFamily.PHI4,
                 ModelFamily.SMOLLM2)


def family_info(family: ModelFamily) -> FamilyInfo:
    """The family's recommendations (sampling empty when none are published) and whether it
    always, never or optionally reasons."""
    info = _INFO.get(family, FamilyInfo())
    if family in _ALWAYS_THINKS:
        return replace(info, thinking="always")
    if family in _NEVER_THINKS:
        return replace(info, thinking="none")
    return info


# Names, as they appear in general.name / general.basename or a file name, most specific first.
_NAME_RULES: tuple[tuple[str, ModelFamily], ...] = (
    (r"gpt[-_ ]?oss", ModelFamily.GPT_OSS),
    (r"deepseek[-_ ]?r1", ModelFamily.DEEPSEEK_R1),
    (r"qwq", ModelFamily.QWQ),
    (r"qwen3.*thinking[-_ ]?2507|qwen3.*2507.*thinking", ModelFamily.QWEN3_THINKING_2507),
    (r"qwen3.*instruct[-_ ]?2507|qwen3.*2507.*instruct", ModelFamily.QWEN3_INSTRUCT_2507),
    (r"qwen[-_ ]?3", ModelFamily.QWEN3),
    (r"qwen[-_ ]?2\.5", ModelFamily.QWEN2_5),
    (r"gemma[-_ ]?4", ModelFamily.GEMMA4),
    (r"gemma[-_ ]?3", ModelFamily.GEMMA3),
    (r"gemma[-_ ]?2", ModelFamily.GEMMA2),
    (r"magistral", ModelFamily.MAGISTRAL),
    (r"devstral", ModelFamily.DEVSTRAL),
    (r"ministral", ModelFamily.MINISTRAL),
    (r"mistral|mixtral", ModelFamily.MISTRAL),
    (r"llama[-_ ]?3", ModelFamily.LLAMA3),
    (r"phi[-_ ]?4", ModelFamily.PHI4),
    (r"phi[-_ ]?3", ModelFamily.PHI3),
    (r"smollm[-_ ]?3", ModelFamily.SMOLLM3),
    (r"smollm[-_ ]?2", ModelFamily.SMOLLM2),
    (r"granite", ModelFamily.GRANITE),
)

_ARCHITECTURES = {
    "gpt-oss": ModelFamily.GPT_OSS,
    "gemma2": ModelFamily.GEMMA2,
    "gemma3": ModelFamily.GEMMA3,
    "gemma3n": ModelFamily.GEMMA3,
    "gemma4": ModelFamily.GEMMA4,
    "smollm3": ModelFamily.SMOLLM3,
    "granite": ModelFamily.GRANITE,
    "granitemoe": ModelFamily.GRANITE,
    "granitehybrid": ModelFamily.GRANITE,
}


def _by_name(text: str) -> ModelFamily | None:
    for pattern, family in _NAME_RULES:
        if re.search(pattern, text, re.IGNORECASE):
            return family
    return None


def _qwen3_variant(template: str) -> ModelFamily:
    """Qwen3 hybrid, Instruct-2507 or Thinking-2507, told apart by the template: the hybrid
    has the ``enable_thinking`` switch, Thinking-2507 opens ``<think>`` itself, Instruct-2507
    has no thinking at all."""
    if "enable_thinking" in template:
        return ModelFamily.QWEN3
    if re.search(r"assistant\\n<think>\\n", template):
        return ModelFamily.QWEN3_THINKING_2507
    return ModelFamily.QWEN3_INSTRUCT_2507 if "<think>" not in template else ModelFamily.QWEN3


def _by_template(template: str, architecture: str) -> ModelFamily | None:
    t = template
    if "<|channel|>" in t and "<|start|>" in t:
        return ModelFamily.GPT_OSS
    if "<｜Assistant｜>" in t and "<think>" in t:
        return ModelFamily.DEEPSEEK_R1
    if "<|im_start|>" in t:
        if "/no_think" in t:
            return ModelFamily.SMOLLM3
        if "<|im_sep|>" in t:
            return ModelFamily.PHI4
        if architecture in ("qwen3", "qwen3moe"):
            return _qwen3_variant(t)
        if re.search(r"assistant\\n<think>\\n", t):
            return ModelFamily.QWQ  # a Qwen2-era ChatML template that always opens a think block
        if "enable_thinking" in t:
            return _qwen3_variant(t)
        if "You are Qwen, created by Alibaba Cloud" in t:
            return ModelFamily.QWEN2_5
    if "<|im_sep|>" in t:
        return ModelFamily.PHI4
    if "<|start_header_id|>" in t:
        return ModelFamily.LLAMA3
    if "<|start_of_role|>" in t:
        return ModelFamily.GRANITE
    if "<|assistant|>" in t and "<|end|>" in t:
        return ModelFamily.PHI3
    if "<start_of_turn>" in t:
        return ModelFamily.GEMMA3 if architecture != "gemma2" else ModelFamily.GEMMA2
    if "<|turn>" in t:
        return ModelFamily.GEMMA4
    if "[INST]" in t or "[SYSTEM_PROMPT]" in t:
        return ModelFamily.MISTRAL
    return None


def detect_family(metadata: Mapping[str, str], template: str = "", path: str | os.PathLike[str] | None = None
                  ) -> ModelFamily:
    """The family of a model from its GGUF metadata (``general.architecture``,
    ``general.name``, ``general.basename``, ``general.finetune``), its chat template and, only
    when those tell nothing, its file name."""
    architecture = metadata.get("general.architecture", "").lower()
    names = " ".join(metadata.get(k, "") for k in ("general.basename", "general.name", "general.finetune"))
    family = _by_name(names)
    if family is ModelFamily.QWEN3 or (family is None and architecture in ("qwen3", "qwen3moe")):
        return _qwen3_variant(template)  # the template tells hybrid, Instruct-2507, Thinking-2507
    if family is not None:
        return family
    family = _ARCHITECTURES.get(architecture)
    if family is not None:
        return family
    if architecture == "phi3":
        return ModelFamily.PHI4 if "<|im_sep|>" in template else ModelFamily.PHI3
    family = _by_template(template, architecture)
    if family is not None:
        return family
    if path is not None:
        family = _by_name(os.path.basename(os.fspath(path)))
        if family is not None:
            return family
    return ModelFamily.UNKNOWN
