"""The audit context: one audit's inputs and the intermediate results its lines share.

Every evidence line receives the :class:`AuditContext` of its audit. Besides the inputs
(models and fact sets), it hands out the results several lines need, each computed once
per audit and then served from memory:

- **activations** (:meth:`AuditContext.capture`, :meth:`AuditContext.capture_facts`):
  keyed by (model, prompts and subjects, hook spec), as the on-disk capture cache is
  (:func:`forensics.compute.capture.cache_key`; the batch size does not enter the key). With a
  ``cache_dir`` the captures of the audit's own models also live on disk under
  ``cache_dir/activations`` and survive the process (resume, and audits that share an
  original); models a line derives (copies, twins) stay in memory;
- **answer scores** (:meth:`AuditContext.fact_scores`): greedy correctness and answer
  log-prob per fact (:func:`forensics.compute.scoring.score_facts`, batches of
  :data:`SCORE_BATCH_SIZE`), keyed by (model, fact set); greedy **generations**
  (:meth:`AuditContext.generations`) and the **answer measure** built on them or on the
  answer scores (:meth:`AuditContext.answer_scores`, :mod:`forensics.compute.measures`);
- **the SAE** (:meth:`AuditContext.sae`): O's SAE for a training config and layer,
  trained (or loaded from ``cache_dir``) once;
- **the tuned lens** (:meth:`AuditContext.tuned_lens`): a model's translators (O's; U's own
  for the tuned-lens line's default reader), fitted on R once per model.

``counts`` records how many times each kind of result was computed and served, for
benchmarks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from forensics.compute.capture import Activations, CaptureSpec, capture
from forensics.compute.scoring import FactScores, logits_fn_for, score_facts
from forensics.core.registry import REQUIREMENTS
from forensics.inputs.data import Fact, content_hash

if TYPE_CHECKING:
    from forensics.inputs.data import Sequence as SequenceItem
    from forensics.inputs.loading import LoadedModel

#: Facts per forward pass when the context scores answers.
SCORE_BATCH_SIZE = 64


@dataclass
class AuditContext:
    """One audit's inputs (``None`` where not given) and its shared intermediate results.

    ``cache_dir``: where activations and SAEs are kept on disk (None: memory only).
    """

    original: LoadedModel
    unlearned: LoadedModel
    forget: list[Fact]
    retain: list[Fact]
    holdout: list[Fact] | None = None
    reference: LoadedModel | None = None
    sequences: list[SequenceItem] | None = None
    cache_dir: Path | None = None
    counts: Counter = field(default_factory=Counter)
    _memo: dict[tuple, Any] = field(default_factory=dict, repr=False)
    _sae_memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def available(self) -> set[str]:
        """Names of the inputs that are present (from :data:`forensics.core.registry.REQUIREMENTS`)."""
        return {name for name in REQUIREMENTS if getattr(self, name) is not None}

    @property
    def activation_dir(self) -> Path | None:
        """The on-disk activation store (None without a cache folder)."""
        return self.cache_dir / "activations" if self.cache_dir is not None else None

    def _shared(self, kind: str, key: tuple, compute, owner: Any = None):
        """The memoised ``compute()`` under ``(kind,) + key``. ``owner`` (a model whose ``id``
        is part of the key) is kept alive with the entry, so its ``id`` cannot be reused."""
        full = (kind,) + key
        if full in self._memo:
            self.counts[f"{kind}.served"] += 1
            return self._memo[full][1]
        self.counts[f"{kind}.computed"] += 1
        value = compute()
        self._memo[full] = (owner, value)
        return value

    def stored_result(self, kind: str, key: Mapping[str, Any], compute: Callable[[], dict]) -> dict:
        """``compute()`` (a JSON-serialisable dict) once per audit for ``(kind, key)``, and, with a
        cache folder, once for every audit that shares it: the result is kept in
        ``cache_dir/<kind>/<stable key>.json`` (the cross-audit tier; an unreadable file is a
        miss). ``key`` must name everything the result depends on (models by
        :func:`forensics.core.keys.model_identity`, data by content hash, the config)."""
        from forensics.compute.atomic import read_json, write_json_atomic
        from forensics.core.evidence import jsonable
        from forensics.core.keys import stable_key

        digest = stable_key({"kind": kind, **key})[:40]
        path = self.cache_dir / kind / f"{digest}.json" if self.cache_dir is not None else None

        def load_or_compute() -> dict:
            stored = read_json(path) if path is not None else None
            if stored is not None:
                self.counts[f"{kind}.from_disk"] += 1
                return stored
            value = jsonable(compute())
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(path, value)
            return value

        return self._shared(kind, (digest,), load_or_compute)

    def _is_input_model(self, loaded) -> bool:
        """True for the audit's own models; derived ones (copies, twins) never touch the disk
        cache, whose key names a model by its checkpoint's files."""
        return any(loaded is m for m in (self.original, self.unlearned, self.reference))

    def capture(
        self,
        loaded: LoadedModel,
        prompts: Sequence[str],
        spec: CaptureSpec,
        subjects: Sequence[str | None] | None = None,
        batch_size: int = 64,
    ) -> Activations:
        """:func:`forensics.compute.capture.capture` of ``prompts`` through ``loaded``, once per audit
        for each (model, prompts, subjects, spec); see the module docstring."""
        prompts = list(prompts)
        subject_key = tuple(subjects) if spec.position == "subject" and subjects is not None else None
        key = (
            id(loaded.model),
            loaded.weights_hash,
            content_hash(prompts),
            content_hash(s or "" for s in subject_key) if subject_key else None,
            spec.hooks,
            spec.position,
        )
        disk = self.activation_dir if self._is_input_model(loaded) else None
        return self._shared(
            "activations",
            key,
            lambda: capture(loaded, prompts, spec, subjects=subjects, batch_size=batch_size, cache_dir=disk),
            owner=loaded.model,
        )

    def capture_facts(
        self, loaded: LoadedModel, facts: Sequence[Fact], spec: CaptureSpec, batch_size: int = 64
    ) -> Activations:
        """:meth:`capture` of the facts' prompts (their subjects for ``position="subject"``)."""
        subjects = [f.subject for f in facts] if spec.position == "subject" else None
        return self.capture(loaded, [f.prompt for f in facts], spec, subjects=subjects, batch_size=batch_size)

    def fact_scores(self, loaded: LoadedModel, facts: Sequence[Fact]) -> FactScores:
        """Greedy correctness and answer log-prob of every fact under ``loaded``
        (:func:`forensics.compute.scoring.score_facts`), once per audit for each (model, facts)."""
        facts = list(facts)
        key = (id(loaded.model), loaded.weights_hash, content_hash(facts))
        return self._shared(
            "fact_scores",
            key,
            lambda: score_facts(logits_fn_for(loaded.model), loaded.tokenizer, facts, SCORE_BATCH_SIZE, loaded.device),
            owner=loaded.model,
        )

    def generations(self, loaded: LoadedModel, facts: Sequence[Fact], max_new_tokens: int = 32) -> list[str]:
        """Greedy generations of ``loaded`` for the facts' prompts
        (:func:`forensics.compute.freetext.greedy_generations`), once per audit for each (model, facts, length)."""
        from forensics.compute.freetext import greedy_generations

        facts = list(facts)
        key = (id(loaded.model), loaded.weights_hash, content_hash(facts), max_new_tokens)
        return self._shared(
            "generations",
            key,
            lambda: greedy_generations(
                loaded.model, loaded.tokenizer, facts, max_new_tokens, SCORE_BATCH_SIZE, loaded.device
            ),
            owner=loaded.model,
        )

    def answer_scores(
        self, loaded: LoadedModel, facts: Sequence[Fact], measure: str, max_new_tokens: int = 32
    ) -> np.ndarray:
        """Per-fact scores of the answer measure ``measure`` (:mod:`forensics.compute.measures`) of
        ``loaded``, float ``[n]`` (a fresh copy each call); once per audit for each (model, facts,
        measure, length): exact match from :meth:`fact_scores`, ROUGE-L from :meth:`generations`."""
        from forensics.compute.measures import measure_facts

        facts = list(facts)

        def compute() -> np.ndarray:
            if measure == "exact":
                return self.fact_scores(loaded, facts).correct.astype(float)
            generations = self.generations(loaded, facts, max_new_tokens) if measure == "rouge" else None
            return measure_facts(
                measure,
                loaded.model,
                loaded.tokenizer,
                facts,
                loaded.device,
                SCORE_BATCH_SIZE,
                max_new_tokens,
                generations,
            )

        key = (id(loaded.model), loaded.weights_hash, content_hash(facts), measure, max_new_tokens)
        return np.array(self._shared("answer_scores", key, compute, owner=loaded.model), dtype=float)

    def sae(self, config, layer: int | None = None):
        """O's SAE (:func:`forensics.sae.train.get_sae`) for ``config`` (a :class:`forensics.sae.train.SAETrainConfig`)
        at ``layer``, trained on every token of F, R, H and the sequences; once per audit."""
        from forensics.sae.train import get_sae, token_texts

        texts = token_texts(self.forget, self.retain, self.holdout, self.sequences)
        key = (
            repr(sorted(config.training_fields().items())),
            str(config.sae_path),
            layer,
            config.min_explained_variance,
            config.max_dead_fraction,
            config.max_l0_fraction,
        )
        return self._shared(
            "sae",
            key,
            lambda: get_sae(
                self.original,
                texts,
                config,
                layer=layer,
                capture_fn=self.capture,
                cache_dir=self.cache_dir,
                memo=self._sae_memo,
            ),
        )

    def tuned_lens(self, config, loaded=None):
        """The tuned lens (:func:`forensics.compute.lens.fit_tuned_lens`) of ``loaded`` (default O)
        for ``config`` (a :class:`forensics.lines.tuned_lens.TunedLensConfig`), fitted on every token
        of R's texts to that model's own output; once per audit and model."""
        from forensics.compute.lens import fit_tuned_lens

        loaded = loaded or self.original
        texts = [f.text for f in self.retain]
        key = (
            id(loaded.model),
            loaded.weights_hash,
            content_hash(texts),
            repr(sorted(config.training_fields().items())),
        )
        return self._shared(
            "tuned_lens",
            key,
            lambda: fit_tuned_lens(loaded, texts, config, self.capture),
            owner=loaded.model,
        )
