"""Membership inference (docs/methods.md §10): does U still treat the forget set like
training data, beyond the holdout control?

Span and scores. Each fact is tokenised as behaviour scoring does
(:func:`forensics.compute.scoring.encode_facts`) and scored on a *span* (``span``): by default the
answer's tokens given the prompt, as open-unlearning scores QA data, so that a model which
has only seen the subjects' names and the question forms (but never the answers) does not
look like a member (a fact with a ``key``: the key's tokens given the prompt and the answer's
frame before it, since a sentence answer's frame often repeats the subject's name; a sentence
answer *without* a key: its value tokens (``unkeyed_span``), those the prompt does not contain and
outside the frame the retain set's answers of the same question form share,
:func:`forensics.compute.measures.value_positions`; each is still read given its whole prefix);
``span="text"`` scores every token of ``prompt + answer`` after the first
(the subject's name counts too), and whichever span does not decide is reported as a
descriptive table (``details.other_span``). Per span, with ``lp_t`` the log-probability of
token ``t`` given its prefix (:func:`forensics.compute.scoring.token_stats`,
:func:`forensics.compute.mia.attack_scores`):

- **LOSS** (Yeom et al. 2018): the mean token NLL;
- **zlib** (Carlini et al. 2021): mean token NLL / ``len(zlib.compress(text.encode("utf-8")))``
  (the answer's text, or the whole text);
- **Min-K%** (Shi et al. 2024, k = 20%): mean of the ``max(1, int(k * n))`` lowest ``lp_t``;
- **Min-K%++** (Zhang et al. 2024, k = 20%): the same over ``(lp_t - mu_t) / sigma_t``, where
  ``mu_t`` and ``sigma_t^2`` are the mean and variance of ``log p(z)`` for ``z`` drawn from
  the model's own next-token distribution at ``t`` (variance clamped at 1e-6).

These follow open-unlearning's definitions (``src/evals/metrics/mia``); there scores are
signed like a loss and the forget set is labelled 0, so its AUC is P(forget looks more
like a member than holdout). Here every score is signed so that *higher = more member-
like* and F is the positive class: the same AUC.

Statistic. ROC-AUC of F (positive) against H, per attack, with a CI from a *subject*
bootstrap (F and H subjects resampled independently: the paraphrases of one subject's
facts are not independent; every model gets the same resamples). Control: 0.5 (F and H
are exchangeable for a model that saw neither), or, when a reference model is given, the
reference's AUC on the same data (paired bootstrap), which also gives MUSE's **PrivLeak**
(Shi et al. 2024) = (AUC_U - AUC_Ref) / AUC_Ref. p: a subject permutation test of F
against H on U's score ranks (control 0.5), or the paired bootstrap (reference); the
reported p is Bonferroni-adjusted over the four attacks.

Interpretation: AUC well above the control means F still looks like training data, as
it does in O (recovery above the control: docs/methods.md's control rule is one-sided). AUC well
*below* it means U was pushed past a never-trained model on F (over-unlearning): a
trace of the unlearning itself, not of the knowledge, so it is reported but does not
vote (an over-unlearned model that really deleted F would otherwise be called
SUPPRESSED).

Vote (the four attacks form one family; CIs are Bonferroni-adjusted at ``1 - alpha/4``):

- ``suppressed``: some attack's adjusted CI of ``AUC_U - control`` lies above 0.
  Reported effect: that attack's AUC (the largest difference).
- ``deleted``: the procedure has power on this model pair (for *every* attack, O's AUC
  has an adjusted CI above ``0.5 + min_power``) and, for every attack, U's adjusted CI of
  ``AUC_U - control`` lies inside ``+-deleted_share * (AUC_O - 0.5)``: U is at most
  ``deleted_share`` as member-like on F as O was. Reported effect: Min-K%++.
- no vote otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from forensics.compute.measures import answer_frames, key_facts, value_span
from forensics.compute.mia import ATTACKS, attack_scores, auc
from forensics.compute.scoring import encode_facts, token_stats
from forensics.compute.stats import cluster_permutation_p
from forensics.core.context import AuditContext
from forensics.core.evidence import DELETION_BOUND, Evidence, Vote, deletion_bound
from forensics.core.minimum import (
    BOUND_TEST,
    P_TEST,
    SUBJECT_BOOTSTRAP,
    SUBJECT_PERMUTATION,
    VoteMinimum,
    subject_groups,
)
from forensics.core.registry import register
from forensics.inputs.data import Fact

QUESTION = "Does U still treat the forget set like training data (membership inference), beyond the control?"

#: Short, stable method text (the report prints it).
METHOD = (
    "LOSS, zlib, Min-K% and Min-K%++ membership scores of each fact's answer tokens given its prompt "
    "(the span is configurable; the whole prompt + answer text is reported alongside) under U; ROC-AUC "
    "of F (members) against H per attack, with a subject-bootstrap CI Bonferroni-adjusted over the four "
    "attacks. Control: 0.5, or a reference model's AUC on the same facts when one is given. Votes "
    "suppressed when some attack's CI of AUC minus control lies above 0; deleted when every attack has "
    "power in O (O's AUC clearly above 0.5) and every attack's CI stays within a set share (default a "
    "quarter) of O's margin over 0.5. F scored below the control does not vote. On the answer span "
    "(a key's tokens, or without a key the answer's tokens that are neither in the prompt nor in the frame "
    "R's answers of the same question share), familiarity with F's subjects alone does not move it; on "
    "the text span it does."
)


#: The spans the attacks can score.
SPANS = ("answer", "text")
#: What the answer span reads of a fact without a key (:class:`MembershipConfig`).
UNKEYED_SPANS = ("value", "new", "whole")


def fact_attack_scores(
    loaded,
    facts: Sequence[Fact],
    k: float = 0.2,
    batch_size: int = 256,
    spans: Sequence[str] = SPANS,
    value_pool: Sequence[Fact] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Membership scores of each fact under ``loaded``, per span: ``{span: {attack: [n_facts]}}``
    for every attack in :data:`forensics.compute.mia.ATTACKS`, higher = more member-like.

    Span ``"answer"``: the answer's tokens given the prompt (zlib over the answer text); given a
    ``value_pool`` (the retain set), a fact *without a key* reads only its answer's value tokens
    (:func:`forensics.compute.measures.value_positions`, frames from
    :func:`forensics.compute.measures.answer_frames` of the pool), each still given its full
    prefix, and zlib compresses their decoded text. ``"text"``: every token of
    ``prompt + answer`` after the first (zlib over the whole text). One forward pass serves both.
    NaN where a span has no token. ``k``: Min-K% share (fraction).
    """
    pad = loaded.tokenizer.pad_token_id or 0
    encoded = encode_facts(loaded.tokenizer, facts)
    stats = token_stats(loaded.model, [p + a for p, a in encoded], batch_size, loaded.device, pad)
    out = {}
    if "text" in spans:
        out["text"] = attack_scores(stats, [f.text for f in facts], k)
    if "answer" in spans:  # lp[t] is the log-prob of token t + 1: the answer's tokens sit at len(p) - 1 ...
        frames = None if value_pool is None else answer_frames(loaded.tokenizer, value_pool)
        answer_stats, answer_texts = [], []
        for f, s, (p, a) in zip(facts, stats, encoded):
            picked = list(range(len(a))) if frames is None else value_span(f, p, a, frames)
            at = np.asarray(picked, dtype=int) + len(p) - 1
            answer_stats.append({key: s[key][at] for key in ("lp", "mu", "sigma")})
            answer_texts.append(f.answer if len(picked) == len(a) else loaded.tokenizer.decode([a[j] for j in picked]))
        out["answer"] = attack_scores(answer_stats, answer_texts, k)
    return out


def span_scores(loaded, facts: Sequence[Fact], config, pool: Sequence[Fact] = ()) -> dict[str, dict[str, np.ndarray]]:
    """:func:`fact_attack_scores` of both spans; facts with a ``key`` score the key's tokens
    as their answer span, given the prompt and the answer's frame before the key
    (:func:`forensics.compute.measures.key_facts`): the frame often repeats the subject's name, which
    a model that only saw the subjects would also predict. Facts without one score their value
    tokens (``config.unkeyed_span``: frames from ``pool``, the retain set, for "value"; none for "new")."""
    keyed = key_facts(facts)
    values = {"value": list(pool), "new": []}.get(config.unkeyed_span)
    if keyed == list(facts):
        return fact_attack_scores(loaded, facts, config.k, config.batch_size, value_pool=values)
    return {
        "answer": fact_attack_scores(loaded, keyed, config.k, config.batch_size, ("answer",), values)["answer"],
        "text": fact_attack_scores(loaded, facts, config.k, config.batch_size, spans=("text",))["text"],
    }


# ---------------------------------------------------------------------------- AUC + CI


def _finite_auc(pos: np.ndarray, neg: np.ndarray) -> float | None:
    """AUC over the finite scores only (None when a side has none): a descriptive number."""
    pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    return auc(pos, neg) if len(pos) and len(neg) else None


def _cluster_index(groups: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(groups == g) for g in dict.fromkeys(groups.tolist())]


def bootstrap_aucs(
    pos_by_model: list[np.ndarray],
    g_pos: np.ndarray,
    neg_by_model: list[np.ndarray],
    g_neg: np.ndarray,
    n_boot: int,
    seed: int,
) -> np.ndarray:
    """AUCs over subject-bootstrap resamples, ``[n_boot, n_models]``; every model gets the
    same resample (paired).

    ``pos_by_model`` / ``neg_by_model``: per model, the scores of the positive (F) and
    negative (H) texts, ``[n_pos]`` / ``[n_neg]``; ``g_pos`` / ``g_neg``: their subjects.
    Positive and negative subjects are resampled independently."""
    cp, cn = _cluster_index(g_pos), _cluster_index(g_neg)
    rng = np.random.default_rng(seed)
    out = np.zeros((n_boot, len(pos_by_model)))
    for b in range(n_boot):
        ip = np.concatenate([cp[j] for j in rng.integers(0, len(cp), len(cp))])
        ineg = np.concatenate([cn[j] for j in rng.integers(0, len(cn), len(cn))])
        for m, (pos, neg) in enumerate(zip(pos_by_model, neg_by_model)):
            out[b, m] = auc(pos[ip], neg[ineg])
    return out


# ------------------------------------------------------------------------------ the line


@dataclass
class MembershipConfig(VoteMinimum):
    """Settings of the membership-inference line (:func:`membership_line`)."""

    #: Which tokens the attacks score: "answer" (the answer's tokens given the prompt, as
    #: open-unlearning scores QA data) or "text" (every token of prompt + answer). The other span is
    #: reported as a descriptive table.
    span: str = "answer"
    #: What the answer span of a fact *without* a ``key`` reads: "value" (its tokens that the prompt
    #: does not contain and that are outside the frame the retain set's answers of its question form
    #: share, :func:`forensics.compute.measures.value_positions`), "new" (its tokens the prompt does
    #: not contain: the frame part needs questions that share a form, which hand-written QA such as
    #: TOFU's rarely has) or "whole" (every answer token). A model that only ever saw F's subjects
    #: copies their names from the question and writes R's frames for them.
    unkeyed_span: str = "value"
    #: Share (fraction) of a text's lowest-scoring tokens that Min-K% and Min-K%++ average.
    k: float = 0.2
    #: Texts per forward pass when computing token statistics.
    batch_size: int = 256
    #: Subject-bootstrap resamples for the AUC CIs, shared by all models (count).
    n_boot: int = 500
    #: Subject permutations for the p-value without a reference model (count).
    n_perm: int = 1000
    #: Seed of the bootstrap and permutation draws.
    seed: int = 0
    #: Family-wise error rate over the four attacks: CIs at ``1 - alpha / 4``.
    alpha: float = 0.05
    #: "deleted" needs U's adjusted CI of AUC_U - control inside +- this share (fraction) of
    #: O's AUC - 0.5, for every attack.
    deleted_share: float = 0.25
    #: ... and, for every attack, O's adjusted AUC CI above 0.5 + this (AUC units): the
    #: attack can see membership at all.
    min_power: float = 0.1


def _quantiles(x: np.ndarray, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    return float(np.quantile(x, a)), float(np.quantile(x, 1 - a))


def _budget(config: MembershipConfig) -> str:
    return (
        "U and O (and a reference when given): token log-probs and the next-token distribution's "
        f"moments (full vocabulary) at every position of F's and H's prompt + answer, read over the {config.span} span"
    )


@register(
    "membership_inference",
    question=QUESTION,
    needs=("original", "unlearned", "forget", "holdout"),
    config=MembershipConfig,
    votes=("suppressed", "deleted"),
    side="above",
    order=90,
    method=METHOD,
    budget=_budget,
)
def membership_line(ctx: AuditContext, config: MembershipConfig | None = None) -> Evidence:
    """Membership inference of F against H under U, O (and the reference), and the vote (see
    the module docstring).

    "Not run" without a holdout set, with fewer than 2 F or H facts, or when a model gives
    non-finite log-probabilities. ``details``: per attack the AUC of every model, the
    control, the difference, unadjusted and adjusted CIs, p and PrivLeak; the attack that
    decided. ``config``: :class:`MembershipConfig`.
    """
    config = config or MembershipConfig()
    if not ctx.holdout:
        return Evidence.not_run("membership inference needs a holdout set as the non-member control")
    if len(ctx.forget) < 2 or len(ctx.holdout) < 2:
        return Evidence.not_run("membership inference needs at least 2 forget and 2 holdout facts")
    models = {"unlearned": ctx.unlearned, "original": ctx.original}
    if ctx.reference is not None:
        models["reference"] = ctx.reference
    if config.span not in SPANS:
        return Evidence.not_run(f"unknown span {config.span!r}; choose one of {', '.join(SPANS)}")
    if config.unkeyed_span not in UNKEYED_SPANS:
        return Evidence.not_run(
            f"unknown unkeyed_span {config.unkeyed_span!r}; choose one of {', '.join(UNKEYED_SPANS)}"
        )
    by_span = {
        (role, name): span_scores(m, facts, config, ctx.retain)
        for role, m in models.items()
        for name, facts in (("forget", ctx.forget), ("holdout", ctx.holdout))
    }
    scores = {key: spans[config.span] for key, spans in by_span.items()}
    other = next(s for s in SPANS if s != config.span)
    other_span = {
        "span": other,
        "auc": {
            role: {
                attack: _finite_auc(by_span[(role, "forget")][other][attack], by_span[(role, "holdout")][other][attack])
                for attack in ATTACKS
            }
            for role in models
        },
    }
    for (role, name), per_attack in scores.items():
        if any(not np.isfinite(v).all() for v in per_attack.values()):
            return Evidence.not_run(f"non-finite log-probabilities from the {role} model on the {name} set")
    forget_groups, holdout_groups = subject_groups(ctx.forget, "forget"), subject_groups(ctx.holdout, "holdout")
    level = 1 - config.alpha / len(ATTACKS)
    roles = list(models)
    table: dict = {}
    for attack in ATTACKS:
        pos = [scores[(r, "forget")][attack] for r in roles]
        neg = [scores[(r, "holdout")][attack] for r in roles]
        boots = bootstrap_aucs(pos, forget_groups, neg, holdout_groups, config.n_boot, config.seed)
        point = {r: auc(p, n) for r, p, n in zip(roles, pos, neg)}
        u = roles.index("unlearned")
        if "reference" in roles:
            diffs = boots[:, u] - boots[:, roles.index("reference")]
            control = point["reference"]
            p = float(min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean()) + 1 / (len(diffs) + 1)))
        else:
            diffs = boots[:, u] - 0.5
            control = 0.5
            both = np.concatenate([pos[u], neg[u]])
            from scipy.stats import rankdata

            ranks = rankdata(both)
            p = cluster_permutation_p(
                ranks[: len(pos[u])], forget_groups, ranks[len(pos[u]) :], holdout_groups, config.n_perm, config.seed
            )
        o = roles.index("original")
        table[attack] = {
            "auc": point,
            "control": control,
            "difference": point["unlearned"] - control,
            "ci": list(_quantiles(diffs, 0.95)),
            "ci_family": list(_quantiles(diffs, level)),
            "original_ci_family": list(_quantiles(boots[:, o], level)),
            "p_value": p,
            "privleak": (
                (point["unlearned"] - point["reference"]) / point["reference"] if "reference" in point else None
            ),
        }
    vote, reason, chosen = decide(table, config)
    row = table[chosen]
    return Evidence(
        status="ok",
        metric=f"ROC-AUC of {chosen} membership scores of the {config.span} span, F (members) vs H; control = "
        + ("the reference model's AUC" if "reference" in roles else "0.5")
        + f"; CI adjusted over {len(ATTACKS)} attacks",
        effect=row["auc"]["unlearned"],
        control=row["control"],
        ci=tuple(row["ci_family"]),
        p_value=min(1.0, row["p_value"] * len(ATTACKS)),
        vote=cast("Vote | None", vote),
        reason=reason,
        details={
            DELETION_BOUND: _deletion_bound(table, config),
            # with a reference model the p-value is a bootstrap one (not valid at few subjects)
            **({} if "reference" in roles else {P_TEST: SUBJECT_PERMUTATION, BOUND_TEST: SUBJECT_BOOTSTRAP}),
            "attacks": table,
            "decision_attack": chosen,
            "k": config.k,
            "span": config.span,
            "unkeyed_span": config.unkeyed_span,
            "other_span": other_span,
            "privleak": {a: table[a]["privleak"] for a in ATTACKS} if "reference" in roles else None,
        },
        figures={"membership_inference": _figure(table, roles)},
    )


def _figure(table: dict, roles: list[str]) -> bytes:
    from forensics.compute.plotting import figure_png, plt

    fig, ax = plt.subplots(figsize=(5, 3))
    x = np.arange(len(ATTACKS))
    width = 0.8 / len(roles)
    for k, role in enumerate(roles):
        ax.bar(x + (k - (len(roles) - 1) / 2) * width, [table[a]["auc"][role] for a in ATTACKS], width, label=role)
    ax.axhline(0.5, color="black", lw=0.7, ls="--")
    ax.set_xticks(x, ATTACKS)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("ROC-AUC, F vs H")
    ax.legend(frameon=False, fontsize=7)
    ax.set_title("Membership inference (0.5 = F like unseen data)", fontsize=9)
    return figure_png(fig)


def _deletion_bound(table: dict[str, dict], config: MembershipConfig) -> dict | None:
    """The attack closest to missing a recovery: the largest ratio of the larger absolute end of
    its adjusted CI of AUC_U - control to O's own signal (AUC_O - 0.5)
    (:func:`forensics.core.evidence.deletion_bound`); None when some attack's O shows no signal."""
    bounds = [
        deletion_bound(
            max(abs(table[a]["ci_family"][0]), abs(table[a]["ci_family"][1])),
            table[a]["auc"]["original"] - 0.5,
            config.deleted_share,
            f"O's {a} ROC-AUC minus 0.5",
            kind="trace",
        )
        for a in ATTACKS
    ]
    if any(b is None for b in bounds):
        return None
    return max((b for b in bounds if b is not None), key=lambda b: b["share"])


def decide(table: dict[str, dict], config: MembershipConfig) -> tuple[str | None, str, str]:
    """The vote, its reason and the attack it rests on, from each attack's row of ``table``
    (``ci_family``: the family-wise CI of U's AUC minus the control; ``difference``;
    ``auc`` of ``original`` and ``unlearned``; ``original_ci_family``: the CI of O's own AUC;
    ``control``).

    ``suppressed`` when some attack's CI lies above 0 (the largest difference is reported); an
    attack whose CI lies below 0 is over-unlearning: no vote; otherwise ``deleted`` when every
    attack has power (O's CI above ``0.5 + config.min_power``) and every CI lies within
    ``config.deleted_share`` of O's own signal (its AUC minus 0.5), else no vote.
    """
    significant = [a for a in ATTACKS if table[a]["ci_family"][0] > 0]
    below = [a for a in ATTACKS if table[a]["ci_family"][1] < 0]
    if significant:
        chosen = max(significant, key=lambda a: table[a]["difference"])
        row = table[chosen]
        return (
            "suppressed",
            f"{chosen}: F looks more like training data than the control "
            f"(AUC {row['auc']['unlearned']:.2f} vs {row['control']:.2f})",
            chosen,
        )
    if below:
        chosen = min(below, key=lambda a: table[a]["difference"])
        row = table[chosen]
        return (
            None,
            f"{chosen}: F looks less like training data than the control (AUC {row['auc']['unlearned']:.2f} "
            f"vs {row['control']:.2f}): over-unlearning, a trace of the unlearning, not of the knowledge "
            "(no vote)",
            chosen,
        )
    powered = [a for a in ATTACKS if table[a]["original_ci_family"][0] > 0.5 + config.min_power]
    inside = all(
        max(abs(table[a]["ci_family"][0]), abs(table[a]["ci_family"][1]))
        < config.deleted_share * (table[a]["auc"]["original"] - 0.5)
        for a in ATTACKS
    )
    if len(powered) == len(ATTACKS) and inside:
        return (
            "deleted",
            f"no attack tells F from the control, and every attack's CI is within "
            f"{config.deleted_share:.0%} of O's own membership signal",
            "min_k_pp",
        )
    return (
        None,
        "no attack tells F from the control, but the CIs are too wide (or O's signal too weak) to call it deleted",
        "min_k_pp",
    )
