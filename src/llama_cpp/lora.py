"""LoRA adapters: the handle :meth:`Llama.load_lora` returns, and a context's active set."""

from __future__ import annotations

from . import _core
from .errors import ValidationError


class LoraAdapter:
    """A LoRA adapter loaded by :meth:`Llama.load_lora`; pass it to :meth:`Llama.remove_lora`."""

    __slots__ = ("path", "scale")

    def __init__(self, path: str, scale: float) -> None:
        self.path = path
        self.scale = scale

    def __repr__(self) -> str:
        return f"LoraAdapter({self.path!r}, scale={self.scale})"


class AdapterSet:
    """The active adapters of one context, in load order (llama.cpp takes the whole set at once;
    the KV cache is cleared with every change, since it was computed without it)."""

    def __init__(self) -> None:
        self._active: list[tuple[LoraAdapter, _core.LoraAdapter]] = []

    @property
    def adapters(self) -> list[LoraAdapter]:
        return [a for a, _ in self._active]

    def load(self, model: _core.Model, context: _core.Context, path: str, scale: float) -> LoraAdapter:
        adapter = LoraAdapter(path, scale)
        self._apply(context, [*self._active, (adapter, _core.LoraAdapter.load(model, path))])
        return adapter

    def remove(self, api: str, context: _core.Context, adapter: LoraAdapter | str) -> None:
        if isinstance(adapter, LoraAdapter):
            keep = [(a, h) for a, h in self._active if a is not adapter]
        else:
            keep = [(a, h) for a, h in self._active if a.path != adapter]
        if len(keep) == len(self._active):
            raise ValidationError(f"[{api}] {adapter!r} is not loaded")
        self._apply(context, keep)

    def clear(self, context: _core.Context) -> None:
        self._apply(context, [])

    def _apply(self, context: _core.Context, active: list[tuple[LoraAdapter, _core.LoraAdapter]]) -> None:
        context.set_adapters([(h, a.scale) for a, h in active])
        context.clear()
        self._active = active
