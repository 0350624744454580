"""What to capture (:class:`CaptureSpec`, hook-name helpers) and what comes back
(:class:`Activations`); see :mod:`forensics.compute.capture` for positions and layout."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from forensics.compute.capture.store import _concat_shards
from forensics.core.errors import ForensicsInputError

Position = Literal["final", "subject", "all"]
POSITIONS: tuple[str, ...] = ("final", "subject", "all")


@dataclass(frozen=True)
class CaptureSpec:
    """What to capture: which hook points, at which token positions.

    ``hooks``: TransformerLens hook names whose activation is ``[batch, pos, d]``; kept in
    the given order, duplicates dropped. ``position``: ``"final"``, ``"subject"`` or
    ``"all"`` (see the module docstring).
    """

    hooks: tuple[str, ...]
    position: Position = "final"

    def __post_init__(self):
        hooks = (self.hooks,) if isinstance(self.hooks, str) else tuple(self.hooks)
        if not hooks:
            raise ForensicsInputError("a capture needs at least one hook name")
        if any(not isinstance(h, str) or not h for h in hooks):
            raise ForensicsInputError(f"hook names must be non-empty strings, got {hooks!r}")
        if any(h.startswith("meta.") for h in hooks):
            raise ForensicsInputError("hook names may not start with 'meta.'")
        object.__setattr__(self, "hooks", tuple(dict.fromkeys(hooks)))
        if self.position not in POSITIONS:
            raise ForensicsInputError(
                f"unknown capture position {self.position!r}; choose one of {', '.join(POSITIONS)}"
            )


def resid_hooks(n_layers: int) -> tuple[str, ...]:
    """The residual stream at every depth: block 0's input, then every block's output.

    ``("blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", ..., f"blocks.{n-1}.hook_resid_post")``
    (``n_layers + 1`` names). ``blocks.0.hook_resid_pre`` is the embedding (token
    embedding plus, for GPT-2, the learned positional embedding).
    """
    if n_layers < 1:
        raise ForensicsInputError(f"n_layers must be at least 1, got {n_layers}")
    return ("blocks.0.hook_resid_pre",) + tuple(f"blocks.{l}.hook_resid_post" for l in range(n_layers))


def spread(n: int, budget: int | None) -> list[int]:
    """At most ``budget`` of the indices ``0 .. n-1``, evenly spaced, always with the first and the
    last (the layer budget of the lines that run once per block or depth: patching, steering, the
    tuned lens; docs/methods.md "Layer budgets"). ``budget`` None, or at least ``n``: every index.
    A budget below 2 is raised to 2. Returns a sorted list of distinct ints."""
    if budget is None or n <= budget:
        return list(range(n))
    budget = max(budget, 2)
    return sorted({round(i * (n - 1) / (budget - 1)) for i in range(budget)})


def spread_text(budget: int | None, unit: str = "blocks") -> str:
    """How :func:`spread` reads ``budget`` in words: "every block" or "up to 6 blocks (evenly
    spaced, with the first and the last)" (for the lines' declared budgets)."""
    if budget is None:
        return f"every {unit.rstrip('s')}"
    return f"up to {max(budget, 2)} {unit} (evenly spaced, with the first and the last)"


def layer_hook(layer: int) -> str:
    """The residual stream after block ``layer``."""
    return f"blocks.{layer}.hook_resid_post"


def hook_block(hook: str) -> int | None:
    """The block ``l`` of a ``blocks.{l}.hook_resid_post`` hook name (:func:`layer_hook`), else None."""
    parts = hook.split(".")
    if len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit() and parts[2] == "hook_resid_post":
        return int(parts[1])
    return None


class Activations:
    """Captured activations: float32 ``[n_prompts, d]`` per hook (``[total_tokens, d]`` for "all").

    ``acts["blocks.3.hook_resid_post"]`` or ``acts.layer(3)``. Metadata:

    * ``prompt_lengths``: int64 ``[n_prompts]``, tokens per prompt (BOS included if the
      tokenizer adds one);
    * ``positions``: int64 ``[n_prompts]``, the token index captured per prompt ("final"
      and "subject"); ``None`` for "all";
    * ``token_offsets``: int64 ``[n_prompts + 1]`` for "all" (``None`` otherwise);
    * ``cache_path``: the cache folder, when there is one; ``from_cache``: True when the
      model was not run at all (a complete cache was found).
    """

    def __init__(
        self,
        spec: CaptureSpec,
        prompt_lengths: torch.Tensor,
        positions: torch.Tensor | None,
        tensors: dict[str, torch.Tensor] | None = None,
        shard_files: list[Path] | None = None,
        cache_path: Path | None = None,
        from_cache: bool = False,
    ):
        self.spec = spec
        self.prompt_lengths = prompt_lengths
        self.positions = positions
        self.cache_path = cache_path
        self.from_cache = from_cache
        self._tensors = tensors
        self._shard_files = shard_files
        if spec.position == "all":
            offsets = torch.zeros(len(prompt_lengths) + 1, dtype=torch.int64)
            torch.cumsum(prompt_lengths, 0, out=offsets[1:])
            self.token_offsets: torch.Tensor | None = offsets
        else:
            self.token_offsets = None

    @property
    def hooks(self) -> tuple[str, ...]:
        """The captured hook names, in the spec's order."""
        return self.spec.hooks

    @property
    def position(self) -> str:
        """The captured position mode: ``"final"``, ``"subject"`` or ``"all"``."""
        return self.spec.position

    @property
    def n_prompts(self) -> int:
        """Number of prompts captured."""
        return len(self.prompt_lengths)

    def __len__(self) -> int:
        return self.n_prompts

    def __contains__(self, hook: object) -> bool:
        return hook in self.spec.hooks

    def __iter__(self) -> Iterator[str]:
        return iter(self.spec.hooks)

    def __getitem__(self, hook: str) -> torch.Tensor:
        if hook not in self.spec.hooks:
            raise KeyError(f"{hook!r} was not captured; captured hooks: {', '.join(self.spec.hooks)}")
        if self._tensors is not None:
            return self._tensors[hook]
        return _concat_shards(self._shard_files or [], hook)

    def layer(self, layer: int) -> torch.Tensor:
        """The residual stream after block ``layer`` (``blocks.{layer}.hook_resid_post``)."""
        return self[layer_hook(layer)]

    def tokens_of(self, hook: str, prompt: int) -> torch.Tensor:
        """ "all" mode: prompt ``prompt``'s ``[n_tokens, d]`` rows of ``hook``."""
        if self.token_offsets is None:
            raise ValueError("tokens_of() is for position='all' captures")
        lo, hi = int(self.token_offsets[prompt]), int(self.token_offsets[prompt + 1])
        return self[hook][lo:hi]

    def to_dict(self) -> dict[str, torch.Tensor]:
        """Every hook's tensor, in memory."""
        return {hook: self[hook] for hook in self.spec.hooks}

    def __repr__(self) -> str:
        where = f", cache={str(self.cache_path)!r}" if self.cache_path else ""
        return f"Activations(n_prompts={self.n_prompts}, position={self.position!r}, hooks={len(self.hooks)}{where})"
