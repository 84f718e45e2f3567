"""SamplingParams: how each next token is chosen."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._validate import INT32_MAX, check_utf8, require_float, require_int
from .errors import ValidationError

_API = "SamplingParams"
UINT32_MAX = 0xFFFFFFFF


@dataclass(kw_only=True)
class SamplingParams:
    """Sampler settings, applied by llama.cpp's sampler chain in C++.

    The chain runs in llama.cpp's own order: logit bias, penalties, DRY, top-n-sigma,
    top-k, typical-p, top-p, min-p, XTC, temperature, then a random pick from the
    remaining distribution. ``temperature=0`` is greedy decoding (argmax after
    penalties). ``mirostat=1`` or ``2`` replaces the filters with Mirostat.
    Defaults are llama.cpp's. Out-of-range values raise ``ValidationError``.
    """

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    penalty_last_n: int = 64
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    xtc_probability: float = 0.0
    xtc_threshold: float = 0.1
    top_n_sigma: float = -1.0
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_penalty_last_n: int = -1
    dry_sequence_breakers: list[str] = field(default_factory=lambda: ["\n", ":", '"', "*"])
    logit_bias: dict[int, float] | None = None
    min_keep: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        require_float(_API, "temperature", self.temperature, minimum=0.0)
        require_int(_API, "top_k", self.top_k, minimum=0, maximum=INT32_MAX)
        require_float(_API, "top_p", self.top_p, minimum=0.0, maximum=1.0)
        require_float(_API, "min_p", self.min_p, minimum=0.0, maximum=1.0)
        require_float(_API, "typical_p", self.typical_p, minimum=0.0, maximum=1.0)
        require_float(_API, "repeat_penalty", self.repeat_penalty, minimum=0.0)
        if self.repeat_penalty == 0.0:
            raise ValidationError(f"[{_API}] repeat_penalty must be > 0 (1.0 disables it)")
        require_int(_API, "penalty_last_n", self.penalty_last_n, minimum=-1, maximum=INT32_MAX)
        require_float(_API, "frequency_penalty", self.frequency_penalty, minimum=-2.0, maximum=2.0)
        require_float(_API, "presence_penalty", self.presence_penalty, minimum=-2.0, maximum=2.0)
        require_int(_API, "mirostat", self.mirostat, minimum=0, maximum=2)
        require_float(_API, "mirostat_tau", self.mirostat_tau, minimum=0.0)
        require_float(_API, "mirostat_eta", self.mirostat_eta, minimum=0.0)
        require_float(_API, "xtc_probability", self.xtc_probability, minimum=0.0, maximum=1.0)
        require_float(_API, "xtc_threshold", self.xtc_threshold, minimum=0.0, maximum=1.0)
        require_float(_API, "top_n_sigma", self.top_n_sigma)
        require_float(_API, "dry_multiplier", self.dry_multiplier, minimum=0.0)
        require_float(_API, "dry_base", self.dry_base, minimum=1.0)
        require_int(_API, "dry_allowed_length", self.dry_allowed_length, minimum=1, maximum=INT32_MAX)
        require_int(_API, "dry_penalty_last_n", self.dry_penalty_last_n, minimum=-1, maximum=INT32_MAX)
        breakers = self.dry_sequence_breakers
        if isinstance(breakers, str) or not isinstance(breakers, (list, tuple)) or not all(
            isinstance(b, str) and b for b in breakers
        ):
            raise ValidationError(f"[{_API}] dry_sequence_breakers must be a list of non-empty strings, got {breakers!r}")
        for b in breakers:
            check_utf8(_API, "dry_sequence_breakers", b)
        if self.logit_bias is not None:
            if not isinstance(self.logit_bias, dict):
                raise ValidationError(
                    f"[{_API}] logit_bias must be a dict of token id to bias, got {type(self.logit_bias).__name__}"
                )
            for token, bias in self.logit_bias.items():
                require_int(_API, "logit_bias token id", token, minimum=0, maximum=INT32_MAX)
                require_float(_API, f"logit_bias[{token}]", bias)
        require_int(_API, "min_keep", self.min_keep, minimum=0, maximum=INT32_MAX)
        if self.seed is not None:
            require_int(_API, "seed", self.seed, minimum=-1, maximum=UINT32_MAX)

    @classmethod
    def greedy(cls) -> SamplingParams:
        """Deterministic argmax decoding (what llama.cpp's tools do with ``--temp 0``)."""
        return cls(temperature=0.0)
