"""The forward runner: tokenise prompts, run right-padded length-sorted batches with hooks
on the requested points only, gather the chosen positions (see "Batching and padding" and
"Cost" in :mod:`forensics.compute.capture`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from forensics.compute.capture.spec import Activations
from forensics.compute.scoring import doubled_bos, pad_right
from forensics.core.errors import ForensicsInputError

_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.")
#: Hook points that run before block 0.
_PRE_BLOCK_HOOKS = ("hook_embed", "hook_pos_embed", "hook_tokens")

# --------------------------------------------------------------------------- tokenisation


@dataclass
class _Encoded:
    """One shard's prompts, tokenised, with the position to capture in each."""

    ids: list[list[int]]
    positions: list[int]  # final or subject position (final for "all", unused)


def _encode(
    tokenizer, prompts: Sequence[str], subjects: Sequence[str] | None, position: str, n_ctx: int, first_index: int
) -> _Encoded:
    need_offsets = position == "subject"
    if need_offsets and not getattr(tokenizer, "is_fast", False):
        raise ForensicsInputError("subject positions need a fast tokenizer (tokenizer.json) for its offset mapping")
    if need_offsets:
        enc = tokenizer(list(prompts), return_offsets_mapping=True)
    else:
        enc = tokenizer(list(prompts))
    ids = [list(x) for x in enc["input_ids"]]
    offsets = list(enc["offset_mapping"]) if need_offsets else None
    for k, row in enumerate(ids):  # a doubled BOS keeps one, as forensics.compute.scoring.encode_prompt does
        if doubled_bos(tokenizer, row):
            ids[k] = row[1:]
            if offsets is not None:
                offsets[k] = list(offsets[k])[1:]
    positions = []
    for k, row in enumerate(ids):
        index = first_index + k
        if not row:
            raise ForensicsInputError(f"prompt {index} ({prompts[k]!r}) tokenises to zero tokens")
        if len(row) > n_ctx:
            raise ForensicsInputError(
                f"prompt {index} is {len(row)} tokens long, more than the model's context of {n_ctx}"
            )
        if need_offsets:
            assert subjects is not None and offsets is not None
            positions.append(_subject_last_token(prompts[k], subjects[k], offsets[k], index))
        else:
            positions.append(len(row) - 1)
    return _Encoded(ids=ids, positions=positions)


def _subject_last_token(prompt: str, subject: str, offsets, index: int) -> int:
    start = prompt.find(subject)
    end = start + len(subject)
    last = None
    for t, (s, e) in enumerate(offsets):
        if e > s and s < end and e > start:  # a real token overlapping the subject's characters
            last = t
    if last is None:  # cannot happen for a subject found in the prompt, but be explicit
        raise ForensicsInputError(f"prompt {index}: subject {subject!r} maps to no token of {prompt!r}")
    return last


def _check_subjects(prompts: Sequence[str], subjects: Sequence[str | None] | None) -> None:
    if subjects is None:
        raise ForensicsInputError("position='subject' needs one subject string per prompt")
    if len(subjects) != len(prompts):
        raise ForensicsInputError(f"{len(subjects)} subjects given for {len(prompts)} prompts")
    for i, (prompt, subject) in enumerate(zip(prompts, subjects)):
        if not isinstance(subject, str) or not subject:
            raise ForensicsInputError(f"prompt {i} ({prompt!r}) has no subject")
        if subject not in prompt:
            raise ForensicsInputError(f"prompt {i}: subject {subject!r} not found in prompt {prompt!r}")


# --------------------------------------------------------------------------- the forward pass


def _resolve_hooks(model, hooks: Sequence[str]) -> int | None:
    """Check the hook names exist; return the ``stop_at_layer`` that still runs them all."""
    unknown = [h for h in hooks if h not in model.hook_dict]
    if unknown:
        examples = ", ".join(list(model.hook_dict)[:6])
        raise ForensicsInputError(
            f"unknown hook name(s) {', '.join(unknown)} for this model (hook names look like: {examples}, ...)"
        )
    last_layer = -1
    for hook in hooks:
        match = _BLOCK_RE.match(hook)
        if match:
            last_layer = max(last_layer, int(match.group(1)))
        elif hook not in _PRE_BLOCK_HOOKS:
            return None  # ln_final.* and friends: run the whole model
    return last_layer + 1


class _Gatherer:
    """Hook functions that keep only the chosen positions of each requested activation."""

    def __init__(self, hooks: Sequence[str]):
        self.hooks = tuple(hooks)
        self.rows: torch.Tensor | None = None
        self.cols: torch.Tensor | None = None
        self.gathered: dict[str, torch.Tensor] = {}

    def __call__(self, act: torch.Tensor, hook) -> None:
        if act.ndim != 3:
            raise ForensicsInputError(
                f"hook {hook.name} gives a {tuple(act.shape)} activation; capture needs [batch, pos, d]"
            )
        self.gathered[hook.name] = act[self.rows, self.cols]

    def fwd_hooks(self):
        """TransformerLens ``fwd_hooks``: this gatherer on every requested hook point."""
        return [(name, self) for name in self.hooks]


def _run_shard(
    model,
    encoded: _Encoded,
    hooks: Sequence[str],
    position: str,
    batch_size: int,
    stop_at_layer: int | None,
    pad_id: int,
    progress_bar=None,
    out: dict[str, torch.Tensor] | None = None,
    row_base: int = 0,
    total_rows: int | None = None,
) -> dict[str, torch.Tensor]:
    """Capture one shard: ``{hook: float32 CPU tensor}`` in the shard's prompt order.

    With ``out`` (a dict, filled in place), rows go to ``row_base + ...`` of tensors of
    ``total_rows`` rows allocated there on first use: the whole capture's result, so an
    in-memory capture never holds a second copy for concatenation.
    """
    device = model.cfg.device
    lengths = [len(row) for row in encoded.ids]
    n = len(lengths)
    if position == "all":
        offsets = [0]
        for length in lengths:
            offsets.append(offsets[-1] + length)
        n_rows = offsets[-1]
    else:
        n_rows = n
    if out is None:
        out, row_base, total_rows = {}, 0, n_rows
    gatherer = _Gatherer(hooks)
    order = sorted(range(n), key=lambda i: lengths[i])
    with model.hooks(fwd_hooks=gatherer.fwd_hooks()):
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            tokens, _ = pad_right([encoded.ids[i] for i in idx], pad_id)
            if position == "all":
                rows = torch.cat([torch.full((lengths[i],), r, dtype=torch.long) for r, i in enumerate(idx)])
                cols = torch.cat([torch.arange(lengths[i]) for i in idx])
                dest = torch.cat([torch.arange(offsets[i], offsets[i + 1]) for i in idx])
            else:
                rows = torch.arange(len(idx))
                cols = torch.tensor([encoded.positions[i] for i in idx], dtype=torch.long)
                dest = torch.tensor(idx, dtype=torch.long)
            dest += row_base
            gatherer.rows, gatherer.cols = rows.to(device), cols.to(device)
            gatherer.gathered = {}
            model(tokens.to(device), stop_at_layer=stop_at_layer, padding_side="right")
            for name in hooks:
                piece = gatherer.gathered[name].to(device="cpu", dtype=torch.float32)
                if name not in out:
                    assert total_rows is not None
                    out[name] = torch.empty((total_rows, piece.shape[-1]), dtype=torch.float32)
                out[name][dest] = piece
            gatherer.gathered = {}
            if progress_bar is not None:
                progress_bar.update(len(idx))
    return out


# --------------------------------------------------------------------------- cache keys


def _capture_in_memory(
    model, tokenizer, prompts, subjects, spec, bounds, batch_size, stop_at_layer, pad_id, bar
) -> Activations:
    """No cache: tokenise everything first (to size the result), then fill it shard by shard."""
    encoded = _encode(tokenizer, prompts, subjects, spec.position, model.cfg.n_ctx, 0)
    lengths = torch.tensor([len(r) for r in encoded.ids], dtype=torch.int64)
    positions = torch.tensor(encoded.positions, dtype=torch.int64)
    if spec.position == "all":
        starts = [0]
        for length in lengths.tolist():
            starts.append(starts[-1] + length)
    else:
        starts = list(range(len(prompts) + 1))
    tensors: dict[str, torch.Tensor] = {}
    for lo, hi in bounds:
        part = _Encoded(ids=encoded.ids[lo:hi], positions=encoded.positions[lo:hi])
        _run_shard(
            model,
            part,
            spec.hooks,
            spec.position,
            batch_size,
            stop_at_layer,
            pad_id,
            bar,
            out=tensors,
            row_base=starts[lo],
            total_rows=starts[-1],
        )
    return Activations(spec, lengths, None if spec.position == "all" else positions, tensors=tensors)
