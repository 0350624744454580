"""Behaviour (METHODS section 1): does the unlearned model still answer the forget set?

A *gate*, not a verdict on its own: if U still answers F like O does, the line votes
``not_forgotten`` (verdict NOT_FORGOTTEN) and the deeper lines only describe.

Span. Each fact is run as ``prompt + answer`` under teacher forcing and scored on its
answer tokens (:mod:`forensics.scoring`: the prompt tokenised with the tokenizer's own
special-token settings, the answer without special tokens, the two concatenated).
*Greedy accuracy* is exact match of greedy decoding over the answer's tokens (every answer
token is the arg-max at its position, which one forward pass decides). *Answer log-prob*
is log P(answer | prompt), the sum of the answer tokens' log-probabilities, in nats. Both
are reported for O and U on F, R and H (R shows what unlearning cost on kept facts).

Effect and control. effect = U's greedy accuracy on F; control = U's greedy accuracy on H
(facts no model saw: what U gets by guessing common answers; 0 when no holdout set is
given). CI of effect - control: percentile bootstrap over facts, F and H resampled
independently; p: two-sided permutation test (:mod:`forensics.stats`).

Vote. ``not_forgotten`` when O answers F above its own control (margin
``acc_F(O) - acc_H(O) > 0``), U keeps at least ``retained_share_not_forgotten`` of that
margin (``(acc_F(U) - acc_H(U)) / margin``) and the CI lies above 0. Otherwise no vote:
U forgot behaviourally, and the other lines decide between deleted and suppressed.

Free text. When the forget set carries free-text or multiple-choice fields
(``paraphrased_answer``, ``perturbed_answers``, ``choices``, ``key``), ``details["free_text"]``
adds per model and set: ROUGE-L recall of greedy generations, the truth ratio and choice
accuracy (:mod:`forensics.freetext`). They are reported, not yet voted on: the gate's rule
is still exact match.

Paper: no single one; this is the output-level forgetting check of unlearning benchmarks
such as TOFU (Maini et al. 2024), with exact match in place of ROUGE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forensics.context import AuditContext
from forensics.evidence import Evidence
from forensics.minimum import VoteMinimum
from forensics.registry import register
from forensics.scoring import FactScores
from forensics.stats import bootstrap_mean_diff_ci, permutation_p_value


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
    "lines decide. Span: the answer's tokens given the prompt; familiarity with F's subjects alone cannot "
    "raise it."
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
)
def behaviour_line(ctx: AuditContext, config: BehaviourConfig | None = None) -> Evidence:
    """Greedy accuracy and answer log-prob on F, R, H for O and U (see the module docstring).

    effect = acc_F(U); control = acc_H(U) (what U "knows" about facts nobody trained on:
    guessing the commonest answers; 0 without a holdout set). Vote ``not_forgotten`` when U
    keeps at least ``retained_share_not_forgotten`` of O's above-control accuracy on F with
    a CI above zero; otherwise no vote (U forgot behaviourally and the other lines decide).

    ``details``: ``table`` (role -> set -> accuracy, mean answer log-prob in nats, n),
    ``retained_share``, ``retain_cost`` (acc_R(O) - acc_R(U)) and
    ``forgotten_behaviourally``. ``config``: :class:`BehaviourConfig` (defaults when None).
    """
    config = config or BehaviourConfig()
    sets = {"forget": ctx.forget, "retain": ctx.retain}
    if ctx.holdout:
        sets["holdout"] = ctx.holdout
    scores: dict[str, dict[str, FactScores]] = {}
    for role, loaded in (("original", ctx.original), ("unlearned", ctx.unlearned)):
        scores[role] = {name: ctx.fact_scores(loaded, facts) for name, facts in sets.items()}
    table = {
        role: {name: {"accuracy": s.accuracy, "mean_logprob": s.mean_logprob, "n": len(s.correct)}
               for name, s in per_set.items()}
        for role, per_set in scores.items()
    }
    u, o = scores["unlearned"], scores["original"]
    effect = u["forget"].accuracy
    control_scores = u["holdout"].correct if "holdout" in u else np.zeros(1)
    control = float(control_scores.mean())
    ci = bootstrap_mean_diff_ci(u["forget"].correct, control_scores, config.n_boot, config.seed)
    p = permutation_p_value(u["forget"].correct, control_scores, config.n_perm, config.seed)
    o_control = float(o["holdout"].correct.mean()) if "holdout" in o else 0.0
    o_margin = o["forget"].accuracy - o_control
    retained_share = (effect - control) / o_margin if o_margin > 0 else float("nan")
    still_answers = bool(o_margin > 0 and retained_share >= config.retained_share_not_forgotten and ci[0] > 0)
    retain_cost = o["retain"].accuracy - u["retain"].accuracy
    return Evidence(
        line="behaviour",
        question=QUESTION,
        status="ok",
        metric="greedy answer accuracy of U on F (effect) vs on H (control)",
        effect=effect,
        control=control if "holdout" in u else None,
        ci=ci,
        p_value=p,
        vote="not_forgotten" if still_answers else None,
        reason=(
            f"U keeps {retained_share:.0%} of O's above-control accuracy on F"
            if o_margin > 0 else "O itself does not answer F above the control"
        ),
        details={
            "table": table,
            "retained_share": retained_share if np.isfinite(retained_share) else None,
            "retain_cost": retain_cost,
            "forgotten_behaviourally": not still_answers,
            **({"free_text": _free_text_table(ctx, sets, config)} if _wants_free_text(ctx, config) else {}),
        },
        figures={"behaviour": _behaviour_figure(table)},
    )


FREE_TEXT_FIELDS = ("paraphrased_answer", "perturbed_answers", "choices", "key")


def _wants_free_text(ctx: AuditContext, config: BehaviourConfig) -> bool:
    if config.free_text not in ("auto", "on", "off"):
        from forensics.errors import ForensicsInputError

        raise ForensicsInputError(f"behaviour.free_text must be auto, on or off, not {config.free_text!r}")
    if config.free_text != "auto":
        return config.free_text == "on"
    return any(getattr(f, name) is not None for f in ctx.forget for name in FREE_TEXT_FIELDS)


def _free_text_table(ctx: AuditContext, sets: dict, config: BehaviourConfig) -> dict:
    """Per model and set: mean ROUGE-L recall of greedy generations, mean truth ratio and choice
    accuracy (None where no fact carries what the measure needs)."""
    from forensics.freetext import choice_correct, greedy_generations, rouge_l_recall, truth_ratios

    def mean(values: np.ndarray):
        return float(np.nanmean(values)) if np.isfinite(values).any() else None

    table = {}
    for role, loaded in (("original", ctx.original), ("unlearned", ctx.unlearned)):
        table[role] = {}
        for name, facts in sets.items():
            generations = greedy_generations(loaded.model, loaded.tokenizer, facts, config.max_new_tokens,
                                             device=loaded.device)
            table[role][name] = {
                "rouge_l_recall": mean(rouge_l_recall([f.answer for f in facts], generations)),
                "truth_ratio": mean(truth_ratios(loaded.model, loaded.tokenizer, facts, loaded.device)),
                "choice_accuracy": mean(choice_correct(loaded.model, loaded.tokenizer, facts, loaded.device)),
            }
    return table


def _behaviour_figure(table: dict) -> bytes:
    from forensics.plotting import figure_png, plt

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
