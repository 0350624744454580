"""Answer-discrimination probe (docs/methods.md, "Free-text knowledge"): can a probe on U's residual
stream tell a fact's true answer from wrong but plausible ones, beyond the holdout control?

Candidates. For each fact: the true answer and its perturbed answers: the fact's own
``perturbed_answers`` where given, else up to ``n_perturbed`` other answers of the same set to
the same question form (the same ``attribute`` where one is given; other subjects' answers).
The report says which source was used. Where the fact has its own perturbed answers and a
``paraphrased_answer``, the paraphrase stands for the true answer (:func:`true_candidate`:
TOFU builds perturbed answers from the paraphrase, so the two share a sentence frame).

Answers as labels. A fact's candidates share a sentence frame (``" Zo was born in <place>."``);
the part that differs (:func:`distinctive_spans`: ``"Port Kelmar"``) names each answer, and
other subjects' facts carry the same parts as their true answers (values repeat across
subjects). One-word answers are their own part.

Probe. The residual stream at the last token before the distinctive part: the prompt plus
the frame's head (``"...Answer: Zo was born in"``; the prompt alone for one-word answers),
where the model's next token would start the answer, at every depth. Per depth and model, a
standardised, class-balanced multinomial logistic regression (C = ``c``) decodes the true part
from that state. Variant ``"retain"`` (default, the one that votes): fitted on the model's own
states of R's facts and applied to F and H, which it never saw (R's answers are the same
kind: values repeat across subjects). Variant ``"refit"``: fitted on the set's own facts out
of fold, grouped by subject. Per fact: the share of its perturbed answers whose decoder logit
(without intercept) lies below the true answer's, ties half, minus 0.5 (chance); facts whose
true part (or every perturbed part) the decoder never had as a label are not scored.

Decision depth: the intermediate depth where O's F-minus-H score (the identical procedure on
O's states) is largest, chosen from O alone. effect = U's mean score on F there, control = on
H (facts no model learned: the decoder can only guess), with a subject-bootstrap CI and a
subject-permutation p.

Vote: ``suppressed`` when the CI of F minus H lies above 0 and p < ``alpha``. Never
``deleted``: a decoder that finds nothing has not shown it could.

Why R-fitted. Re-fitted out of fold, a held-out subject's own answer is rarer in the other
folds of a balanced world, which pulls both F and H below chance by amounts that differ
between the sets by more than the subject bootstrap sees: on the bio zoo it voted on one
``retrain`` of three (seed 1: CI [+0.03, +0.15]). Fitted on R, H sits at chance (-0.02 to
+0.03) and that ``retrain`` gives [-0.13, +0.01] (docs/decisions.md).

Why the prompt side. Reading at the answer's own last token (``prompt + candidate``, true vs
perturbed) found no discrimination even in O on the bio zoo (docs/decisions.md): the state
after an answer need not say whether it was right, while the state before it carries the
answer the model is about to give. It is the attribute probes' decoding, with answers as
labels.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np

from forensics.compute.capture import CaptureSpec, resid_hooks
from forensics.compute.stats import cluster_bootstrap_diff_ci, cluster_permutation_p
from forensics.core.context import AuditContext
from forensics.core.evidence import Evidence, Vote
from forensics.core.minimum import P_TEST, SUBJECT_PERMUTATION, VoteMinimum, subject_groups
from forensics.core.registry import register

QUESTION = "Can a probe on U's residual stream tell F's true answers from wrong ones, beyond the holdout control?"

METHOD = (
    "Answer discrimination: the residual at the last token before the part of the answer that differs "
    "between the true and the perturbed answers (the data's own perturbed answers, else other subjects' "
    "answers to the same question form); per depth a logistic-regression decoder of that part, fitted on U's "
    "states of the retain set and applied to F and H; per fact the share of its "
    "perturbed answers scored below the true one, minus 0.5. Effect: U's mean on F at the intermediate depth "
    "where O's F-vs-H difference is largest (chosen from O alone); control: the same on H; subject-bootstrap "
    "CI and permutation p. Votes suppressed when the CI lies above 0; never votes deleted. Span: the answer's "
    "first token given the prompt; familiarity with F's subjects alone cannot tell F's true answer from "
    "another subject's."
)


@dataclass
class AnswerProbeConfig(VoteMinimum):
    """Settings of the answer-discrimination probe (:func:`answer_probe_line`)."""

    #: Perturbed answers per fact when the data give none (built from other subjects' answers).
    n_perturbed: int = 3
    #: Folds of the cross-validation, grouped by subject.
    n_folds: int = 5
    #: Inverse L2 strength of the logistic regression.
    c: float = 1.0
    #: Texts per forward pass during activation capture.
    batch_size: int = 64
    #: Subject-bootstrap resamples (count).
    n_boot: int = 1000
    #: Subject permutations for the p-value (count).
    n_perm: int = 1000
    #: Seed of the built perturbed answers, the bootstrap and the permutations.
    seed: int = 0
    #: The "suppressed" vote also needs the permutation p below this.
    alpha: float = 0.05
    #: Below this share (fraction) of scorable facts in F or H the line does not run.
    min_scorable: float = 0.5
    #: Where the decoder is fitted: "retain" (on each model's own R states, applied to F and H,
    #: which are never fitted on) or "refit" (on the set's own facts, out of fold by subject).
    variant: Literal["retain", "refit"] = "retain"


def candidates(facts, n_perturbed: int, seed: int) -> tuple[list[list[str]], str]:
    """Per fact, its perturbed answers, and where they came from (``"data"`` or ``"built"``)."""
    if all(f.perturbed_answers for f in facts):
        return [list(f.perturbed_answers) for f in facts], "data"
    rng = np.random.default_rng(seed)
    out = []
    for i, f in enumerate(facts):
        pool = sorted(
            {
                g.answer
                for j, g in enumerate(facts)
                if j != i
                and g.answer.strip() != f.answer.strip()
                and (g.subject != f.subject or f.subject is None)
                and g.attribute == f.attribute
            }
        )
        out.append(list(rng.permutation(pool)[:n_perturbed]) if pool else [])
    return out, "built"


def true_candidate(fact) -> str:
    """The true answer the perturbed ones are compared with: the paraphrased answer where the
    fact has one and its own perturbed answers (TOFU builds those from the paraphrase, so the two
    share a sentence frame), else the answer."""
    if fact.paraphrased_answer and fact.perturbed_answers:
        return fact.paraphrased_answer
    return fact.answer


def distinctive_spans(candidates: list[str]) -> list[tuple[str, str]]:
    """For one fact's candidate answers: each candidate's frame head and the part that names its
    answer. The words and punctuation all candidates share at the start and at the end are the
    sentence frame: ``" Zo was born in Port Kelmar."`` and ``" Zo was born in Old Dravos."``
    give ``(" Zo was born in ", "Port Kelmar")`` and ``(" Zo was born in ", "Old Dravos")``.
    Candidates that do not differ in such a part (or a single candidate) are whole answers:
    ``("", candidate.strip())``."""
    found = [list(re.finditer(r"\w+|[^\w\s]", c)) for c in candidates]
    words = [[m.group() for m in f] for f in found]
    shortest = min(len(w) for w in words)
    head = 0
    while head < shortest and len({w[head] for w in words}) == 1:
        head += 1
    tail = 0
    while tail < shortest - head and len({w[len(w) - 1 - tail] for w in words}) == 1:
        tail += 1
    whole = [("", c.strip()) for c in candidates]
    if len(candidates) < 2 or head + tail == shortest:
        return whole
    out = [(c[: f[head].start()], c[f[head].start() : f[len(f) - 1 - tail].end()]) for c, f in zip(candidates, found)]
    return out if len({span for _, span in out}) == len(out) else whole


def reading_prefixes(facts, perturbed) -> tuple[list[str], np.ndarray, list[list[str]]]:
    """Per fact: the text the probe reads (prompt + the frame head of its true candidate, ending
    on the last token before the answer's distinctive part), the true part, and the perturbed
    answers' parts."""
    prefixes, true, wrong = [], [], []
    for f, others in zip(facts, perturbed):
        spans = distinctive_spans([true_candidate(f)] + list(others))
        prefixes.append(f.prompt + spans[0][0].rstrip())
        true.append(spans[0][1])
        wrong.append([span for _, span in spans[1:]])
    return prefixes, np.array(true), wrong


def _decoder(X: np.ndarray, labels: np.ndarray, config):
    """A standardised multinomial logistic regression of ``labels`` on ``X``, class-balanced;
    returns ``(scaler, coefficients [n_classes, d], label -> row)``, or None with fewer than two
    labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if len(set(labels)) < 2:
        return None
    scaler = StandardScaler().fit(X)
    with warnings.catch_warnings():  # many answers, few facts each: expected, not a mistake
        warnings.filterwarnings("ignore", message="The number of unique classes", category=UserWarning)
        clf = LogisticRegression(C=config.c, max_iter=1000, class_weight="balanced").fit(scaler.transform(X), labels)
    coef = clf.coef_ if len(clf.classes_) > 2 else np.vstack([-clf.coef_[0], clf.coef_[0]]) / 2
    return scaler, coef, {label: k for k, label in enumerate(clf.classes_)}


def _rank_scores(decoder, X: np.ndarray, true, wrong) -> np.ndarray:
    """Per fact: share of its perturbed answers whose decoder logit (without intercept) lies below
    the true answer's, ties half, minus 0.5; NaN where the decoder never had the true answer (or
    any perturbed one) as a label."""
    out = np.full(len(true), np.nan)
    if decoder is None:
        return out
    scaler, coef, column = decoder
    logits = scaler.transform(X) @ coef.T
    for i, (t_label, w_labels) in enumerate(zip(true, wrong)):
        known = [column[w] for w in w_labels if w in column]
        if t_label in column and known:
            t, w = logits[i, column[t_label]], logits[i, known]
            out[i] = (t > w).mean() + 0.5 * (t == w).mean() - 0.5
    return out


def scorable_facts(true: np.ndarray, wrong: list[list[str]], groups: np.ndarray, retain_true: np.ndarray, config):
    """Which facts the probe can score, bool ``[n]``, from the data alone (before any forward
    pass): those whose true part and at least one perturbed part are labels of the decoder that
    scores them: R's true parts (variant ``"retain"``), or the true parts of the other folds
    (``"refit"``, the same grouped folds :func:`_refit_scores` uses). A decoder with fewer than
    two labels scores nothing. The same facts :func:`_rank_scores` leaves finite."""

    def known(labels: set[str], idx) -> list[bool]:
        if len(labels) < 2:
            return [False] * len(idx)
        return [true[i] in labels and any(w in labels for w in wrong[i]) for i in idx]

    out = np.zeros(len(true), dtype=bool)
    if config.variant == "retain":
        out[:] = known(set(retain_true.tolist()), range(len(true)))
        return out
    from sklearn.model_selection import GroupKFold

    for train, test in GroupKFold(n_splits=config.n_folds).split(np.zeros((len(true), 1)), groups=groups):
        out[test] = known(set(true[train].tolist()), test)
    return out


def _refit_scores(acts, hooks, true, wrong, groups, config) -> np.ndarray:
    """``[n_depths, n_facts]``: the decoder fitted on the set's own facts out of fold (grouped by
    subject) and applied to the held-out fold."""
    from sklearn.model_selection import GroupKFold

    out = np.full((len(hooks), len(true)), np.nan)
    for d, hook in enumerate(hooks):
        X = acts[hook].numpy().astype(np.float64)
        for train, test in GroupKFold(n_splits=config.n_folds).split(X, groups=groups):
            decoder = _decoder(X[train], true[train], config)
            out[d, test] = _rank_scores(decoder, X[test], true[test], [wrong[i] for i in test])
    return out


def _transfer_scores(train_acts, train_true, acts, hooks, true, wrong, config) -> np.ndarray:
    """``[n_depths, n_facts]``: the decoder fitted on another set's states (R's) applied to these."""
    out = np.full((len(hooks), len(true)), np.nan)
    for d, hook in enumerate(hooks):
        decoder = _decoder(train_acts[hook].numpy().astype(np.float64), train_true, config)
        out[d] = _rank_scores(decoder, acts[hook].numpy().astype(np.float64), true, wrong)
    return out


def _budget(config: AnswerProbeConfig) -> str:
    return (
        "O and U: the residual stream at one position per answer (before the part true and perturbed "
        f"answers differ) of F, R and H, every depth; {config.n_perturbed} perturbed answers per fact "
        "decoded from those states, no further model pass"
    )


@register(
    "answer_probe",
    question=QUESTION,
    needs=("original", "unlearned", "forget", "retain", "holdout"),
    config=AnswerProbeConfig,
    votes=("suppressed",),
    side="above",
    order=22,
    method=METHOD,
    budget=_budget,
)
def answer_probe_line(ctx: AuditContext, config: AnswerProbeConfig | None = None) -> Evidence:
    """The answer-discrimination probe on O and U, F vs H at O's decision depth (see the module
    docstring). "Not run" with fewer subjects than folds in a set, fewer than two layers, a set
    where no fact has a perturbed answer, or one where fewer than ``min_scorable`` of the facts
    can be scored (answers whose distinctive part no other subject's fact has). ``details``:
    where the perturbed answers came from, the decision depth, the scorable share per set and
    per model and set the mean score at every depth."""
    config = config or AnswerProbeConfig()
    if ctx.original.n_layers < 2:
        return Evidence.not_run("the probe needs at least two layers")
    if config.variant not in ("retain", "refit"):
        return Evidence.not_run(f"unknown variant {config.variant!r}; choose retain or refit")
    if config.variant == "retain" and not ctx.retain:
        return Evidence.not_run("the retain-fitted decoder needs a retain set")
    # everything the data alone decides, before any forward pass
    retain_prefixes, retain_true = [], np.array([])
    if config.variant == "retain":
        retain_perturbed, _ = candidates(ctx.retain, config.n_perturbed, config.seed)
        retain_prefixes, retain_true, _ = reading_prefixes(ctx.retain, retain_perturbed)
    sets, sources, groups, scorable = {}, {}, {}, {}
    for name, facts in (("forget", ctx.forget), ("holdout", ctx.holdout)):
        perturbed, sources[name] = candidates(facts, config.n_perturbed, config.seed)
        if not any(perturbed):
            return Evidence.not_run(
                f"no {name} fact has a perturbed answer (none given, "
                "and no other subject's answer to the same question form)",
            )
        assert facts is not None
        groups[name] = subject_groups(facts, name)
        if len(np.unique(groups[name])) < config.n_folds:
            return Evidence.not_run(
                f"{len(np.unique(groups[name]))} {name} subjects, fewer than the {config.n_folds} folds"
            )
        sets[name] = reading_prefixes(facts, perturbed)
        _, true, wrong = sets[name]
        scorable[name] = float(scorable_facts(true, wrong, groups[name], retain_true, config).mean())
        if scorable[name] < config.min_scorable:
            return Evidence.not_run(
                (
                    f"only {scorable[name]:.0%} of the {name} facts can be scored: their answers share no distinctive "
                    "part with other subjects' answers (sentence answers need perturbed answers in the same frame, "
                    "or a 'key')"
                ),
            )
    hooks = resid_hooks(ctx.original.n_layers)
    spec = CaptureSpec(hooks, "final")
    scores, fitted = {}, {}
    if config.variant == "retain":
        for role, loaded in (("original", ctx.original), ("unlearned", ctx.unlearned)):
            fitted[role] = (ctx.capture(loaded, retain_prefixes, spec, batch_size=config.batch_size), retain_true)
    for name in ("forget", "holdout"):
        prefixes, true, wrong = sets[name]
        for role, loaded in (("original", ctx.original), ("unlearned", ctx.unlearned)):
            acts = ctx.capture(loaded, prefixes, spec, batch_size=config.batch_size)
            if config.variant == "refit":
                scores[(role, name)] = _refit_scores(acts, hooks, true, wrong, groups[name], config)
            else:
                train_acts, train_true = fitted[role]
                scores[(role, name)] = _transfer_scores(train_acts, train_true, acts, hooks, true, wrong, config)
    mean = {k: np.nanmean(v, axis=1) for k, v in scores.items()}
    o_diff = mean[("original", "forget")] - mean[("original", "holdout")]
    depth = max(range(1, len(hooks) - 1), key=lambda d: o_diff[d])
    f, h = scores[("unlearned", "forget")][depth], scores[("unlearned", "holdout")][depth]
    keep_f, keep_h = np.isfinite(f), np.isfinite(h)
    f, gf, h, gh = f[keep_f], groups["forget"][keep_f], h[keep_h], groups["holdout"][keep_h]
    ci = cluster_bootstrap_diff_ci(f, gf, h, gh, config.n_boot, config.seed)
    p = cluster_permutation_p(f, gf, h, gh, config.n_perm, config.seed)
    vote, reason = decide(ci, p, config)
    table = {f"{role}/{name}": mean[(role, name)].tolist() for role, name in scores}
    return Evidence(
        status="ok",
        metric=f"share of perturbed answers a decoder on U's residual scores below the true one, minus 0.5, "
        f"at depth {depth}",
        effect=float(f.mean()),
        control=float(h.mean()),
        ci=ci,
        p_value=p,
        vote=cast("Vote | None", vote),
        reason=reason,
        details={
            P_TEST: SUBJECT_PERMUTATION,
            "variant": config.variant,
            "decision_depth": depth,
            "original_difference_by_depth": o_diff.tolist(),
            "table": table,
            "scorable_share": scorable,
            "perturbed_answers": {
                n: "from the data" if s == "data" else "built from other subjects' answers to the same question form"
                for n, s in sources.items()
            },
        },
        figures={"answer_probe": _figure(table)},
    )


def decide(ci: tuple[float, float], p: float, config: AnswerProbeConfig) -> tuple[str | None, str]:
    """``suppressed`` when the subject-bootstrap CI of U's F-minus-H discrimination lies above 0
    and its permutation p is below ``config.alpha``; else no vote (this probe never votes deleted)."""
    if ci[0] > 0 and p < config.alpha:
        return "suppressed", (
            "a probe on U's residual stream tells F's true answers from wrong ones beyond the holdout control"
        )
    return None, "no discrimination of F's true answers above the control; this probe never votes deleted"


def _figure(table: dict) -> bytes:
    from forensics.compute.plotting import figure_png, plt

    fig, ax = plt.subplots(figsize=(4.5, 2.8))
    for key, values in table.items():
        ax.plot(
            range(len(values)),
            values,
            marker="o",
            linestyle="-" if key.startswith("unlearned") else "--",
            label=key.replace("/", " · "),
        )
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xlabel("depth (0 = embeddings)")
    ax.set_ylabel("true-above-perturbed share - 0.5")
    ax.set_title("Answer-discrimination probe", fontsize=9)
    ax.legend(fontsize=6)
    return figure_png(fig)
