"""Behaviour (docs/methods.md §1): does the unlearned model still answer the forget set?

A *gate*, not a verdict on its own: if U still answers F like O does, the line votes
``not_forgotten`` (verdict NOT_FORGOTTEN) and the deeper lines only describe.

Span. Each fact is run as ``prompt + answer`` under teacher forcing and scored on its
answer tokens (:mod:`forensics.compute.scoring`: the prompt tokenised with the tokenizer's own
special-token settings, the answer without special tokens, the two concatenated).
*Greedy accuracy* is exact match of greedy decoding over the answer's tokens (every answer
token is the arg-max at its position, which one forward pass decides). *Answer log-prob*
is log P(answer | prompt), the sum of the answer tokens' log-probabilities, in nats. Both
are reported for O and U on F, R and H (R shows what unlearning cost on kept facts).

Effect and control. effect = U's greedy accuracy on F; control = U's greedy accuracy on H
(facts no model saw: what U gets by guessing common answers; 0 when no holdout set is
given). CI of effect - control: percentile bootstrap over facts, F and H resampled
independently; p: two-sided permutation test (:mod:`forensics.compute.stats`). With a holdout
set, ``details["p_subjects"]`` is the same test permuting whole subjects between F and H: a
``not_forgotten`` vote stands on fewer than ``min_subjects`` subjects (TOFU's 7 holdout authors)
only when it is below 0.05 (:func:`forensics.core.minimum.subjects_needed`).

Vote. ``not_forgotten`` when O answers F above its own control (margin
``acc_F(O) - acc_H(O) > 0``), U keeps at least ``retained_share_not_forgotten`` of that
margin (``(acc_F(U) - acc_H(U)) / margin``) and the CI lies above 0. Otherwise no vote:
U forgot behaviourally, and the other lines decide between deleted and suppressed.

Free text. When the forget set carries free-text or multiple-choice fields
(``paraphrased_answer``, ``perturbed_answers``, ``choices``, ``key``), ``details["free_text"]``
adds per model and set: ROUGE-L recall of greedy generations, the truth ratio and choice
accuracy (:mod:`forensics.compute.freetext`), and the gate's measure (effect, control, CI, vote) is
the set's answer measure (:mod:`forensics.compute.measures`): choice accuracy when every fact is
multiple choice, else ROUGE-L recall of greedy generations against the key span (the whole
answer where there is no key, as TOFU): exact match of a whole sentence says little about
what a model knows. The rule is the same on any measure; ``details["gate_measure"]`` names the one used and
``details["original_margin"]`` is O's F minus H on it (the verdict's "O answers F above the
control" check).

Paper: no single one; this is the output-level forgetting check of unlearning benchmarks
such as TOFU (Maini et al. 2024).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from forensics.compute.measures import NAMES as MEASURE_NAMES
from forensics.compute.measures import SHORT as MEASURE_SHORT
from forensics.compute.measures import is_free_text, measure_for
from forensics.compute.scoring import FactScores
from forensics.compute.stats import bootstrap_mean_diff_ci, cluster_permutation_p, permutation_p_value
from forensics.core.context import AuditContext
from forensics.core.evidence import Evidence, Vote
from forensics.core.minimum import P_SUBJECTS, VoteMinimum, subject_groups
from forensics.core.registry import register


@dataclass
class BehaviourConfig(VoteMinimum):
    """Settings of the behaviour gate (:func:`behaviour_line`)."""

    #: Bootstrap resamples for the CI of effect - control (count).
    n_boot: int = 2000
    #: Permutations for the p-value of effect - control (count).
    n_perm: int = 2000
    #: Seed of the bootstrap and permutation draws.
    seed: int = 0
    #: U counts as still answering F when it keeps at least this share (fraction, 0..1) of O's
    #: above-control F accuracy and the CI of F minus control lies above 0.
    retained_share_not_forgotten: float = 0.5
    #: Free-text measures (ROUGE-L, truth ratio, choice accuracy): "auto" when the forget set
    #: carries free-text or multiple-choice fields, "on" or "off".
    free_text: str = "auto"
    #: Longest greedy generation for ROUGE-L (tokens).
    max_new_tokens: int = 32


QUESTION = "Does the unlearned model still answer the forget set?"

#: Short, stable method text (the report prints it).
METHOD = (
    "Greedy answer accuracy (exact match of every answer token of prompt + answer under teacher forcing) "
    "and answer log-probability of O and U on F, R and H. Effect: U's accuracy on F; control: U's "
    "accuracy on H (facts no model saw), with a bootstrap CI over facts and a permutation p. Votes "
    "not_forgotten when O answers F above its own H accuracy, U keeps at least a set share (default half) "
    "of that margin on F and the CI of F minus H lies above 0; otherwise it does not vote and the other "
    "lines decide. On free text the measure is ROUGE-L recall of greedy generations (choice accuracy for "
    "multiple choice). Span: the answer's tokens given the prompt; familiarity with F's subjects alone cannot "
    "raise it."
)


def _budget(config: BehaviourConfig) -> str:
    return (
        "O and U: one teacher-forced pass over F, R and H, logits at the answer positions only (the "
        "audit's shared scores); on free text also greedy generation of at most "
        f"{config.max_new_tokens} tokens per fact with a key/value cache (shared)"
    )


@register(
    "behaviour",
    question=QUESTION,
    needs=("original", "unlearned", "forget", "retain"),
    config=BehaviourConfig,
    votes=("not_forgotten",),
    side="above",
    order=10,
    method=METHOD,
    budget=_budget,
    role="gate",
    profiles={"quick": {"n_boot": 500, "n_perm": 500}, "standard": {"n_boot": 2000, "n_perm": 2000}},
)
def behaviour_line(ctx: AuditContext, config: BehaviourConfig | None = None) -> Evidence:
    """Greedy accuracy and answer log-prob on F, R, H for O and U (see the module docstring).

    effect = U's answer measure on F; control = the same on H (what U "knows" about facts
    nobody trained on: guessing the commonest answers; 0 without a holdout set). Vote
    ``not_forgotten`` when U keeps at least ``retained_share_not_forgotten`` of O's
    above-control measure on F with a CI above zero; otherwise no vote (U forgot
    behaviourally and the other lines decide).

    ``details``: ``table`` (role -> set -> accuracy, mean answer log-prob in nats, n),
    ``gate_measure``, ``original_margin``, ``retained_share``, ``retain_cost`` (the measure
    on R, O minus U), ``forgotten_behaviourally`` and, for free text, ``free_text``.
    ``config``: :class:`BehaviourConfig` (defaults when None).
    """
    config = config or BehaviourConfig()
    sets = {"forget": ctx.forget, "retain": ctx.retain}
    if ctx.holdout:
        sets["holdout"] = ctx.holdout
    scores: dict[str, dict[str, FactScores]] = {}
    for role, loaded in (("original", ctx.original), ("unlearned", ctx.unlearned)):
        scores[role] = {name: ctx.fact_scores(loaded, facts) for name, facts in sets.items()}
    table = {
        role: {
            name: {"accuracy": s.accuracy, "mean_logprob": s.mean_logprob, "n": len(s.correct)}
            for name, s in per_set.items()
        }
        for role, per_set in scores.items()
    }
    free_text = _wants_free_text(ctx, config)
    measure = "exact" if not free_text else measure_for(ctx.forget) if is_free_text(ctx.forget) else "rouge"
    per_fact = {
        role: {name: ctx.answer_scores(loaded, facts, measure, config.max_new_tokens) for name, facts in sets.items()}
        for role, loaded in (("original", ctx.original), ("unlearned", ctx.unlearned))
    }
    u, o = per_fact["unlearned"], per_fact["original"]
    effect = float(u["forget"].mean())
    control_scores = u["holdout"] if "holdout" in u else np.zeros(1)
    control = float(control_scores.mean())
    ci = bootstrap_mean_diff_ci(u["forget"], control_scores, config.n_boot, config.seed)
    p = permutation_p_value(u["forget"], control_scores, config.n_perm, config.seed)
    subject_p = (
        {
            P_SUBJECTS: cluster_permutation_p(
                u["forget"],
                subject_groups(ctx.forget, "forget"),
                u["holdout"],
                subject_groups(sets["holdout"], "holdout"),
                config.n_perm,
                config.seed,
            )
        }
        if "holdout" in sets
        else {}
    )
    o_control = float(o["holdout"].mean()) if "holdout" in o else 0.0
    o_margin = float(o["forget"].mean()) - o_control
    retained_share = (effect - control) / o_margin if o_margin > 0 else float("nan")
    vote, reason = decide(o_margin, retained_share, ci, MEASURE_SHORT[measure], config)
    still_answers = vote == "not_forgotten"
    retain_cost = float(o["retain"].mean() - u["retain"].mean())
    return Evidence(
        status="ok",
        metric=f"{MEASURE_NAMES[measure]} of U on F (effect) vs on H (control)",
        effect=effect,
        control=control if "holdout" in u else None,
        ci=ci,
        p_value=p,
        vote=cast("Vote | None", vote),
        reason=reason,
        details={
            "table": table,
            "gate_measure": MEASURE_NAMES[measure],
            "original_margin": o_margin,
            "retained_share": retained_share if np.isfinite(retained_share) else None,
            "retain_cost": retain_cost,
            "forgotten_behaviourally": not still_answers,
            **subject_p,
            **({"free_text": _free_text_table(ctx, sets, config)} if free_text else {}),
        },
        figures={"behaviour": _behaviour_figure(table)},
    )


def decide(
    original_margin: float, retained_share: float, ci: tuple[float, float], measure: str, config: BehaviourConfig
) -> tuple[str | None, str]:
    """The gate's vote and reason: ``not_forgotten`` when O answers F above the control
    (``original_margin > 0``: O's measure on F minus on H), U keeps at least
    ``config.retained_share_not_forgotten`` of that margin (``retained_share``) and the CI of U's
    F-minus-H difference lies above 0; else no vote. ``measure``: the measure's short name, for
    the reason."""
    still_answers = bool(original_margin > 0 and retained_share >= config.retained_share_not_forgotten and ci[0] > 0)
    reason = (
        f"U keeps {retained_share:.0%} of O's above-control {measure} on F"
        if original_margin > 0
        else "O itself does not answer F above the control"
    )
    return ("not_forgotten" if still_answers else None), reason


def _wants_free_text(ctx: AuditContext, config: BehaviourConfig) -> bool:
    if config.free_text not in ("auto", "on", "off"):
        from forensics.core.errors import ForensicsInputError

        raise ForensicsInputError(f"behaviour.free_text must be auto, on or off, not {config.free_text!r}")
    if config.free_text != "auto":
        return config.free_text == "on"
    return is_free_text(ctx.forget)


def _free_text_table(ctx: AuditContext, sets: dict, config: BehaviourConfig) -> dict:
    """Per model and set: mean ROUGE-L recall of greedy generations against the answer (TOFU's
    number) and against the key span (where facts have one), mean truth ratio and choice
    accuracy (None where no fact carries what the measure needs)."""
    from forensics.compute.freetext import choice_correct, rouge_l_recall, truth_ratios

    def mean(values: np.ndarray):
        return float(np.nanmean(values)) if np.isfinite(values).any() else None

    table = {}
    for role, loaded in (("original", ctx.original), ("unlearned", ctx.unlearned)):
        table[role] = {}
        for name, facts in sets.items():
            generations = ctx.generations(loaded, facts, config.max_new_tokens)
            keyed = [i for i, f in enumerate(facts) if f.key]
            table[role][name] = {
                "rouge_l_recall": mean(rouge_l_recall([f.answer for f in facts], generations)),
                "rouge_l_recall_key": mean(
                    rouge_l_recall([facts[i].key for i in keyed], [generations[i] for i in keyed])
                )
                if keyed
                else None,
                "truth_ratio": mean(truth_ratios(loaded.model, loaded.tokenizer, facts, loaded.device)),
                "choice_accuracy": mean(choice_correct(loaded.model, loaded.tokenizer, facts, loaded.device)),
            }
    return table


def _behaviour_figure(table: dict) -> bytes:
    from forensics.compute.plotting import figure_png, plt

    sets = list(table["original"])
    fig, ax = plt.subplots(figsize=(5, 3))
    width = 0.38
    x = np.arange(len(sets))
    for k, role in enumerate(("original", "unlearned")):
        values = [table[role][s]["accuracy"] for s in sets]
        ax.bar(x + (k - 0.5) * width, values, width, label=role)
    ax.set_xticks(x, sets)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("greedy answer accuracy")
    ax.legend(frameon=False)
    ax.set_title("Behaviour: forget / retain / holdout")
    return figure_png(fig)
