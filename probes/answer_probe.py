"""Answer-discrimination probe (METHODS, "Free-text knowledge"): can a probe on U's residual
stream tell a fact's true answer from wrong but plausible ones, beyond the holdout control?

Candidates. For each fact: the true answer (label 1) and its perturbed answers (label 0): the
fact's own ``perturbed_answers`` where given, else up to ``n_perturbed`` other answers of the
same set to the same question form (the same ``attribute`` where one is given; other subjects'
answers, so each answer string is true for some facts and wrong for others and its surface
alone separates nothing). The report says which source was used.

Probe. The residual stream at the last token of ``prompt + candidate`` (a ``"final"`` capture of
the joined text), at every depth, with each answer string's mean state and then each fact's
mean state removed (:func:`centred`: the answer alone and the prompt alone cannot separate
anything, and a grouped fold cannot learn an answer string's base rate). Per depth, a standardised logistic regression (C = ``c``)
is fitted true-vs-perturbed on U's states of one set and scored out of fold (grouped K-fold by
subject: a subject's facts never sit on both sides). Per fact: the share of its perturbed
answers that the probe scores below the true one (ties count half), minus 0.5 (chance).

Decision depth: the intermediate depth where O's F-minus-H score (the identical procedure on
O's states) is largest, chosen from O alone. effect = U's mean score on F there, control = on
H (the model never learned which H answer is true: only surface cues separate them), with a
subject-bootstrap CI and a subject-permutation p.

Descriptive for now: it reports whether the CI of F minus H lies above 0 with p < ``alpha``
but does not vote. On the closed-vocabulary small zoo (3 seeds, standard resampling) that test
held for 2 of 13 deleted models (seed 2's ``retrain``, seed 1's ``npo``), far above the ~2.5%
a vote may err by under the verdict rule; it is to vote once it is validated on free-text
model organisms. This is the re-fitted variant; the R-fitted and O-transfer variants of the
attribute probes are not built yet.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from forensics.capture import CaptureSpec, resid_hooks
from forensics.context import AuditContext
from forensics.evidence import Evidence
from forensics.registry import register
from forensics.stats import cluster_bootstrap_diff_ci, cluster_permutation_p

QUESTION = "Can a probe on U's residual stream tell F's true answers from wrong ones, beyond the holdout control?"

METHOD = (
    "Answer discrimination: the residual at the last token of prompt + true answer and of prompt + each "
    "perturbed answer (the data's own, else other subjects' answers to the same question form); per depth a "
    "logistic-regression probe true vs perturbed, fitted on U's states of one set and scored out of fold "
    "(folds grouped by subject); per fact the share of its perturbed answers scored below the true one, minus "
    "0.5. Effect: U's mean on F at the intermediate depth where O's F-vs-H difference is largest (chosen from "
    "O alone); control: the same on H; subject-bootstrap CI and subject-permutation p. Descriptive until "
    "validated on free-text model organisms. Span: the answer's tokens given the prompt "
    "(read at its last token); familiarity with F's subjects alone cannot tell F's true answer from another "
    "subject's."
)


@dataclass
class AnswerProbeConfig:
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
    #: "Finds F" (the reason) also needs the permutation p below this.
    alpha: float = 0.05


def candidates(facts, n_perturbed: int, seed: int) -> tuple[list[list[str]], str]:
    """Per fact, its perturbed answers, and where they came from (``"data"`` or ``"built"``)."""
    if all(f.perturbed_answers for f in facts):
        return [list(f.perturbed_answers) for f in facts], "data"
    rng = np.random.default_rng(seed)
    out = []
    for i, f in enumerate(facts):
        pool = sorted({g.answer for j, g in enumerate(facts) if j != i and g.answer.strip() != f.answer.strip()
                       and (g.subject != f.subject or f.subject is None) and g.attribute == f.attribute})
        out.append(list(rng.permutation(pool)[:n_perturbed]) if pool else [])
    return out, "built"


def centred(X: np.ndarray, owner: np.ndarray, answer_ids: np.ndarray) -> np.ndarray:
    """``X`` ``[n_texts, d]`` with the mean state of each answer string removed, then the mean
    state of each fact's candidates: what is left is the prompt-by-answer interaction. No label
    is used, so nothing leaks across folds; the answer string alone and the prompt alone
    separate nothing."""
    X = X - _group_means(X, answer_ids)
    return X - _group_means(X, owner)


def _group_means(X: np.ndarray, ids: np.ndarray) -> np.ndarray:
    _, index = np.unique(ids, return_inverse=True)
    sums = np.zeros((index.max() + 1, X.shape[1]))
    np.add.at(sums, index, X)
    return (sums / np.bincount(index)[:, None])[index]


def _scores(acts, hooks, labels, owner, answer_ids, groups, n_facts, config) -> np.ndarray:
    """Per depth and fact: share of its perturbed answers scored below its true one, minus 0.5."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    text_groups = groups[owner]
    out = np.zeros((len(hooks), n_facts))
    for d, hook in enumerate(hooks):
        X = centred(acts[hook].numpy().astype(np.float64), owner, answer_ids)
        decision = np.zeros(len(labels))
        for train, test in GroupKFold(n_splits=config.n_folds).split(X, groups=text_groups):
            probe = make_pipeline(StandardScaler(), LogisticRegression(C=config.c, max_iter=1000))
            probe.fit(X[train], labels[train])
            decision[test] = probe.decision_function(X[test])
        for i in range(n_facts):
            mine = owner == i
            true = decision[mine & (labels == 1)]
            wrong = decision[mine & (labels == 0)]
            out[d, i] = ((true[0] > wrong).mean() + 0.5 * (true[0] == wrong).mean() - 0.5) if len(wrong) else 0.0
    return out


def _texts(facts, perturbed) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    texts, labels, owner, answers = [], [], [], []
    for i, (f, wrong) in enumerate(zip(facts, perturbed)):
        for answer, label in [(f.answer, 1)] + [(w, 0) for w in wrong]:
            texts.append(replace(f, answer=answer).text)
            labels.append(label)
            owner.append(i)
            answers.append(answer.strip())
    return texts, np.array(labels), np.array(owner), np.array(answers)


@register(
    "answer_probe",
    question=QUESTION,
    needs=("original", "unlearned", "forget", "holdout"),
    config=AnswerProbeConfig,
    side="above",
    order=22,
    method=METHOD,
)
def answer_probe_line(ctx: AuditContext, config: AnswerProbeConfig | None = None) -> Evidence:
    """The answer-discrimination probe on O and U, F vs H at O's decision depth (see the module
    docstring). "Not run" with fewer subjects than folds in a set, fewer than two layers, or a
    set where no fact has a perturbed answer. ``details``: where the perturbed answers came
    from, the decision depth and per model and set the mean score at every depth."""
    config = config or AnswerProbeConfig()
    if ctx.original.n_layers < 2:
        return Evidence.not_run("answer_probe", QUESTION, "the probe needs at least two layers")
    hooks = resid_hooks(ctx.original.n_layers)
    scores, sources, groups = {}, {}, {}
    for name, facts in (("forget", ctx.forget), ("holdout", ctx.holdout)):
        perturbed, sources[name] = candidates(facts, config.n_perturbed, config.seed)
        if not any(perturbed):
            return Evidence.not_run("answer_probe", QUESTION, f"no {name} fact has a perturbed answer (none given, "
                                    "and no other subject's answer to the same question form)")
        groups[name] = np.array([f.subject or f"{name}-{i}" for i, f in enumerate(facts)])
        if len(np.unique(groups[name])) < config.n_folds:
            return Evidence.not_run("answer_probe", QUESTION, f"{len(np.unique(groups[name]))} {name} subjects, "
                                    f"fewer than the {config.n_folds} folds")
        texts, labels, owner, answer_ids = _texts(facts, perturbed)
        for role, loaded in (("original", ctx.original), ("unlearned", ctx.unlearned)):
            acts = ctx.capture(loaded, texts, CaptureSpec(hooks, "final"), batch_size=config.batch_size)
            scores[(role, name)] = _scores(acts, hooks, labels, owner, answer_ids, groups[name], len(facts), config)
    o_diff = scores[("original", "forget")].mean(1) - scores[("original", "holdout")].mean(1)
    depth = max(range(1, len(hooks) - 1), key=lambda d: o_diff[d])
    f, h = scores[("unlearned", "forget")][depth], scores[("unlearned", "holdout")][depth]
    ci = cluster_bootstrap_diff_ci(f, groups["forget"], h, groups["holdout"], config.n_boot, config.seed)
    p = cluster_permutation_p(f, groups["forget"], h, groups["holdout"], config.n_perm, config.seed)
    found = ci[0] > 0 and p < config.alpha
    table = {f"{role}/{name}": scores[(role, name)].mean(1).tolist() for role, name in scores}
    return Evidence(
        line="answer_probe", question=QUESTION, status="descriptive",
        metric=f"share of perturbed answers a probe scores below the true one, minus 0.5, at depth {depth}",
        effect=float(f.mean()), control=float(h.mean()), ci=ci, p_value=p,
        reason=("a probe on U tells F's true answers from wrong ones beyond the holdout control" if found
                else "no discrimination of F's true answers above the control") + " (descriptive)",
        details={"decision_depth": depth, "original_difference_by_depth": o_diff.tolist(), "table": table,
                 "perturbed_answers": {n: "from the data" if s == "data" else
                                       "built from other subjects' answers to the same question form"
                                       for n, s in sources.items()}},
        figures={"answer_probe": _figure(table)},
    )


def _figure(table: dict) -> bytes:
    from forensics.plotting import figure_png, plt

    fig, ax = plt.subplots(figsize=(4.5, 2.8))
    for key, values in table.items():
        ax.plot(range(len(values)), values, marker="o", linestyle="-" if key.startswith("unlearned") else "--",
                label=key.replace("/", " · "))
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xlabel("depth (0 = embeddings)")
    ax.set_ylabel("true-above-perturbed share - 0.5")
    ax.set_title("Answer-discrimination probe", fontsize=9)
    ax.legend(fontsize=6)
    return figure_png(fig)
