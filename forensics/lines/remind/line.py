"""REMIND input loss landscapes (docs/methods.md §7; REMIND): do forgotten examples
sit on a different loss landscape in U than facts nobody trained on?

Span (``span``). Each example is a fact's ``prompt + answer`` text, tokenised as behaviour
scoring does (:func:`forensics.compute.scoring.encode_facts`). By default (``"answer"``) a neighbour
substitutes prompt tokens only and a loss is the mean NLL of the *answer's* tokens given
the (perturbed) prompt: the landscape of what the model predicts for the answer, which a
model that has only seen F's subjects and question forms (never the answers) does not
share with O. A fact with a ``key`` is read as the prompt plus the answer's frame up to the
key, and the key as its answer (:func:`forensics.compute.measures.key_facts`). ``"text"`` substitutes any token and scores every token after the first, as
the REMIND paper does for whole texts; the subject's name then counts, so familiarity with
F's subjects alone moves it (measured on the zoo's hard negatives, see the README).

Neighbours. An example's *substitutable* positions are its non-special tokens (of the
prompt, for the answer span); with ``n`` of them, the largest radius is ``R = round(0.3 * n)`` (``substitution_share``). Neighbour
``j`` (``j = 0..14``, ``n_neighbours``) replaces ``r_j = 1 + j mod R`` distinct positions,
drawn at random, each with one of the 20 nearest tokens (``k_nearest``) to the original in
U's *input-embedding* cosine space (special tokens and the token itself excluded), drawn
at random. So the neighbours cover radii 1..R, which gives the slope. A seeded
``numpy.random.default_rng(seed)`` draws everything; the same neighbours are scored under
O and U. An example needs ``R >= 2`` (n >= 5 tokens) for a slope: shorter ones are dropped,
and a set that loses more than half its examples (or keeps fewer than ``min_examples``) is
"not run".

Losses. The loss of an example is its mean token NLL in nats over the span (for ``"text"``
every token after the first, so a substitution changes both context and targets). Every
original and neighbour of every example goes through
:func:`forensics.compute.scoring.sequence_losses` in large right-padded batches sorted by length
(never one neighbour at a time; ``benchmarks/remind.py`` compares the two).

Features per example: original loss, mean / max / std of the neighbour losses, and the
slope of loss against the number of substituted tokens (least squares over the original
at radius 0 and every neighbour).

Classifiers (descriptive, in ``details``): LogisticRegression (standardised) and
RandomForest (200 trees) on the five features, F vs R vs H. The 80/20 split is stratified
by set and seeded (``split_seed``) and, when facts carry a subject, grouped by subject
(StratifiedGroupKFold, first of 5 folds), so paraphrases of one subject never sit on both
sides. Out of sample: ROC-AUC one-vs-rest (macro), forget-vs-rest ROC-AUC and TPR at 1%
FPR, and F-vs-H ROC-AUC (P(F) on the F and H test examples). Baselines on the same split:
LOSS, zlib and Min-K%++ (k = 20%), each as the single feature of the same logistic
regression. The REMIND paper reports about 82% multi-class ROC-AUC
(``details.published_multiclass_auc``). ``max_per_set`` subsamples each set (whole
subjects, seeded) to bound the cost.

Vote: the landscape contrast. effect = mean slope on F in U, control = mean slope on H in
U, CI by subject bootstrap, p by subject permutation (both :mod:`forensics.compute.stats`).
The slopes are *length-adjusted* first (:func:`length_adjusted_slopes`, ANCOVA with the set
as factor): the slope falls with the number of tokens, and F and H, both random draws of
subjects, can differ in mean length by chance. Each slope is moved to F and H's mean
length along the *common within-set* line, fitted on F, R and H together after removing
each set's own mean (so what a model knows about one set does not tilt the line).
O's own contrast (the same statistic in O) is the signature of knowing F and fixes the
side on which a contrast in U counts:

- ``suppressed``: O shows the contrast (its CI excludes 0) and U's CI excludes 0 on the
  *same side*: U still treats F as O does, beyond the holdout control (docs/methods.md's control
  rule is one-sided: recovery *above* the control). A contrast on the other side (F
  flatter than H where O's F is sharper) is a trace of the unlearning itself, not of
  knowledge: it is reported in the reason but does not vote;
- ``deleted``: O shows the contrast (the scan has power on this pair) and U's CI lies
  inside ``+-deleted_share * |O's contrast|``;
- no vote otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from forensics.compute.measures import key_facts
from forensics.compute.scoring import encode_facts, sequence_losses
from forensics.compute.stats import cluster_bootstrap_diff_ci, cluster_permutation_p
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
from forensics.lines.remind.landscape import (
    FEATURES,
    baseline_scores,
    classify,
    landscape_features,
    make_neighbours,
    max_radius,
    nearest_tokens,
    split_indices,
    substitutable_positions,
)

QUESTION = "Do forgotten facts sit on a different input loss landscape in U than unseen facts?"
SETS = ("forget", "retain", "holdout")
#: The spans a scan can score (see the module docstring).
SPANS = ("answer", "text")

#: Short, stable method text (the report prints it).
METHOD = (
    "REMIND input-loss-landscape scan of each fact: loss of the answer's tokens given the prompt (the span is "
    "configurable; by default only answers count, so familiarity with F's subjects alone does not move it) "
    "under neighbours that swap 1..R random prompt tokens for tokens near them in U's input-embedding space, "
    "and the slope of loss against the number of swapped tokens, length-adjusted. Effect: U's mean slope on F; control: U's mean "
    "slope on H; subject-bootstrap CI and subject-permutation p. O's own F-vs-H contrast fixes the side: "
    "votes suppressed when U's CI excludes 0 on O's side, deleted when O's contrast is significant and U's "
    "CI lies within a set share of it."
)


@dataclass
class RemindConfig(VoteMinimum):
    """Settings of the REMIND line (:func:`remind_line`)."""

    #: Neighbours per example (count); neighbour ``j`` substitutes ``1 + j mod R`` tokens.
    n_neighbours: int = 15
    #: Candidate replacements per token: its nearest tokens by cosine of U's input embeddings.
    k_nearest: int = 20
    #: Largest radius ``R`` as a share (fraction) of the example's substitutable tokens.
    substitution_share: float = 0.3
    #: Seed of the subsample, the neighbour draws (set ``k`` uses ``seed + 1000 k``), the
    #: bootstrap and the permutations.
    seed: int = 0
    #: Seed of the classifiers' 80/20 split and of the random forest.
    split_seed: int = 42
    #: Sequences per forward pass when scoring losses (token statistics use at most 256).
    batch_size: int = 512
    #: At most this many examples per set, whole subjects drawn at random (None: all).
    max_per_set: int | None = 480
    #: Subject-bootstrap resamples for the CIs of the slope contrast (count).
    n_boot: int = 1000
    #: Subject permutations for the p-value of U's contrast (count).
    n_perm: int = 1000
    #: "deleted" needs U's CI inside +- this share (fraction) of O's absolute F-vs-H contrast.
    deleted_share: float = 0.25
    #: A set needs at least this many examples long enough for a slope, else "not run".
    min_examples: int = 10
    #: Tokens a loss reads: "answer" (substitute prompt tokens, score the answer given the
    #: prompt) or "text" (substitute any token, score every token after the first; the
    #: subject's name counts too).
    span: str = "answer"


def _subsample(facts: list[Fact], limit: int | None, seed: int) -> list[Fact]:
    if limit is None or len(facts) <= limit:
        return facts
    subjects = list(dict.fromkeys(f.subject for f in facts))
    if all(subjects):
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(subjects))
        keep, count = set(), 0
        per = {s: sum(f.subject == s for f in facts) for s in subjects}
        for k in order:
            if count >= limit:
                break
            keep.add(subjects[k])
            count += per[subjects[k]]
        return [f for f in facts if f.subject in keep]
    idx = np.sort(np.random.default_rng(seed).choice(len(facts), limit, replace=False))
    return [facts[i] for i in idx]


@dataclass
class Scan:
    """One REMIND scan's inputs, per set name (``forget``, ``retain``, ``holdout``): the facts
    kept, their token ids, their neighbours (:func:`make_neighbours`), how many facts
    were dropped as too short and where each example's scored span starts."""

    facts: dict[str, list[Fact]]
    tokens: dict[str, list[list[int]]]
    neighbours: dict[str, tuple[list[list[int]], np.ndarray, np.ndarray]]
    dropped: dict[str, int]
    #: Per set, each example's first scored position (its prompt's length) for the answer
    #: span; None for the text span (every token after the first).
    starts: dict[str, list[int] | None] | None = None


def prepare_scan(ctx: AuditContext, config: RemindConfig, sets: Sequence[str] = SETS) -> Scan | str:
    """Neighbours for every set (one :class:`Scan`), or a one-line reason the scan cannot run
    (an unknown span, a set missing, or too many of its examples too short for a slope)."""
    if config.span not in SPANS:
        return f"unknown span {config.span!r}; choose one of {', '.join(SPANS)}"
    tok = ctx.unlearned.tokenizer
    special = set(tok.all_special_ids)
    answer_span = config.span == "answer"
    facts, tokens, starts, dropped = {}, {}, {}, {}
    min_tokens = next(n for n in range(1, 1000) if max_radius(n, config.substitution_share) >= 2)
    where = "prompt tokens" if answer_span else "tokens"
    for name in sets:
        chosen = _subsample(list(getattr(ctx, name) or []), config.max_per_set, config.seed)
        if not chosen:
            return f"REMIND needs a {name} set"
        if answer_span:  # a key's tokens given the prompt and the answer's frame before the key
            chosen = key_facts(chosen)
        encoded = encode_facts(tok, chosen)
        ids = [p + a for p, a in encoded]
        ends = [len(p) for p, _ in encoded] if answer_span else [None] * len(ids)
        ok = [
            len(substitutable_positions(s, special, e)) >= min_tokens and (e is None or e < len(s))
            for s, e in zip(ids, ends)
        ]
        n_short = len(ok) - sum(ok)
        if n_short > len(ok) / 2 or sum(ok) < config.min_examples:
            return (
                f"sequences too short for {config.substitution_share:.0%} substitution: {n_short} of {len(ok)} "
                f"{name} examples have fewer than {min_tokens} substitutable {where}"
            )
        facts[name] = [f for f, k in zip(chosen, ok) if k]
        tokens[name] = [s for s, k in zip(ids, ok) if k]
        starts[name] = [e for e, k in zip(ends, ok) if k] if answer_span else None
        dropped[name] = n_short
    vocab = min(len(tok), ctx.unlearned.model.cfg.d_vocab)
    exclude = list(special) + list(range(vocab, ctx.unlearned.model.cfg.d_vocab))
    all_ids = {t for name in sets for s in tokens[name] for t in s}
    nearest = nearest_tokens(
        ctx.unlearned.model.W_E.detach(), cast("Sequence[int]", all_ids), config.k_nearest, exclude
    )
    neighbours = {}
    for k, name in enumerate(sets):
        neighbours[name] = make_neighbours(
            tokens[name],
            special,
            nearest,
            config.n_neighbours,
            config.substitution_share,
            config.seed + 1000 * k,
            ends=starts[name],
        )
    return Scan(facts, tokens, neighbours, dropped, starts)


def scan_features(loaded, scan: Scan, config: RemindConfig, sets: Sequence[str] = SETS) -> dict[str, dict]:
    """Per set: ``features`` ``[n_examples, 5]`` (:func:`landscape_features`) and ``curve``, the
    mean loss (nats, over the scan's span) at radius 0, 1, ..., R_max; all sets' sequences
    scored in one batched pass under ``loaded``."""
    pad = loaded.tokenizer.pad_token_id or 0
    everything, first, spans = [], [], {}
    for name in sets:
        start = len(everything)
        everything += scan.tokens[name]
        everything += scan.neighbours[name][0]
        spans[name] = (start, len(scan.tokens[name]), len(everything))
        own = (
            cast("list[int]", scan.starts[name])
            if scan.starts and scan.starts[name] is not None
            else [1] * len(scan.tokens[name])
        )
        first += own + [own[i] for i in scan.neighbours[name][1]]
    losses = sequence_losses(loaded.model, everything, config.batch_size, loaded.device, pad, starts=first)
    out = {}
    for name in sets:
        start, n, end = spans[name]
        orig, nb = losses[start : start + n], losses[start + n : end]
        _, owner, radius = scan.neighbours[name]
        curve = [float(orig.mean())] + [float(nb[radius == r].mean()) for r in range(1, int(radius.max()) + 1)]
        out[name] = {"features": landscape_features(orig, nb, owner, radius), "curve": curve}
    return out


# ------------------------------------------------------------------------------ the line


def token_counts(scan: Scan) -> dict[str, np.ndarray]:
    """Each example's token count (prompt + answer, special tokens included), per set:
    float arrays ``[n_examples]``."""
    return {name: np.array([len(t) for t in tokens], dtype=float) for name, tokens in scan.tokens.items()}


def length_adjusted_slopes(feats: dict[str, dict], n: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
    """Each example's slope moved to the mean token count of F and H: ``slope - b * (n - n_FH)``,
    with ``n`` the token counts (:func:`token_counts`) and ``b`` the common within-set
    least-squares slope of slope on ``n`` over every set (each set centred on its own means:
    ANCOVA with the set as factor). Returns the adjusted slopes per set and ``b``."""
    s = FEATURES.index("slope")
    slopes = {name: feats[name]["features"][:, s] for name in feats}
    dn = {name: n[name] - n[name].mean() for name in feats}
    sxx = sum(float((dn[name] ** 2).sum()) for name in feats)
    sxy = sum(float((dn[name] * (slopes[name] - slopes[name].mean())).sum()) for name in feats)
    b = sxy / sxx if sxx > 0 else 0.0
    ref = float(np.concatenate([n["forget"], n["holdout"]]).mean())
    return {name: slopes[name] - b * (n[name] - ref) for name in feats}, b


def decide(contrast: dict, config: RemindConfig) -> tuple[str | None, str]:
    """The vote and its reason from U's and O's slope contrasts (F minus H, with CIs); see
    the module docstring."""
    cu, co = contrast["unlearned"], contrast["original"]
    bound = config.deleted_share * abs(co["difference"])
    o_side = np.sign(co["difference"]) if (co["ci"][0] > 0 or co["ci"][1] < 0) else 0.0
    u_side = 1.0 if cu["ci"][0] > 0 else -1.0 if cu["ci"][1] < 0 else 0.0
    shape = lambda c: "sharper" if c["difference"] > 0 else "flatter"  # noqa: E731
    if o_side and u_side == o_side:
        vote, reason = (
            "suppressed",
            (
                f"F's landscape in U is {shape(cu)} than unseen facts', as in O "
                f"(slope {cu['forget']:+.3f} vs {cu['holdout']:+.3f} per substituted token)"
            ),
        )
    elif o_side and max(abs(cu["ci"][0]), abs(cu["ci"][1])) < bound:
        vote, reason = (
            "deleted",
            (
                f"F's landscape in U matches unseen facts' within {config.deleted_share:.0%} of O's contrast "
                f"({co['difference']:+.3f})"
            ),
        )
    elif u_side:
        vote, reason = (
            None,
            (
                f"F's landscape in U is {shape(cu)} than unseen facts' "
                + ("while O shows no contrast" if not o_side else f"where O's is {shape(co)}")
                + ": a trace of the unlearning, not of the knowledge (no vote)"
            ),
        )
    else:
        vote, reason = None, "no landscape contrast in U, but not enough power or precision to call it deleted"
    return vote, reason


def _budget(config: RemindConfig) -> str:
    cap = f" (at most {config.max_per_set} facts a set)" if config.max_per_set else ""
    return (
        f"U: each fact of F, R and H{cap} and {config.n_neighbours} token-swapped neighbours of it, "
        f"loss on the {config.span} span only; O the same, for its own contrast"
    )


@register(
    "remind",
    question=QUESTION,
    needs=("original", "unlearned", "forget", "retain", "holdout"),
    config=RemindConfig,
    votes=("suppressed", "deleted"),
    side="o_side",
    o_side_path=("contrast", "original", "difference"),
    order=60,
    method=METHOD,
    budget=_budget,
)
def remind_line(ctx: AuditContext, config: RemindConfig | None = None) -> Evidence:
    """The REMIND scan of F, R and H under U and O, the classifiers and the vote (see the
    module docstring).

    "Not run" when the scan cannot run (:func:`prepare_scan`) or a model gives non-finite
    losses. ``details``: the contrast in U and O, per-set feature means, classifier and
    baseline metrics, the split, and the loss-by-radius curves. ``config``:
    :class:`RemindConfig`.
    """
    config = config or RemindConfig()
    scan = prepare_scan(ctx, config)
    if isinstance(scan, str):
        return Evidence.not_run(scan)
    u = scan_features(ctx.unlearned, scan, config)
    o = scan_features(ctx.original, scan, config)
    for role, feats in (("unlearned", u), ("original", o)):
        if any(not np.isfinite(v["features"]).all() for v in feats.values()):
            return Evidence.not_run(f"non-finite losses from the {role} model")
    groups = {name: subject_groups(scan.facts[name], name) for name in SETS}

    # Classifiers, F (0) vs R (1) vs H (2), out of sample.
    X = np.concatenate([u[name]["features"] for name in SETS])
    y = np.concatenate([np.full(len(scan.facts[name]), k) for k, name in enumerate(SETS)])
    has_subjects = all(f.subject for name in SETS for f in scan.facts[name])
    g = np.concatenate([groups[name] for name in SETS]) if has_subjects else None
    train, test = split_indices(y, g, config.split_seed)
    classifiers = {kind: classify(X, y, train, test, kind, config.split_seed) for kind in ("logistic", "random_forest")}
    assert scan.starts is not None
    base = {
        name: baseline_scores(ctx.unlearned, scan.facts[name], scan.tokens[name], config.batch_size, scan.starts[name])
        for name in SETS
    }
    baselines = {
        b: classify(
            np.concatenate([base[name][b] for name in SETS])[:, None], y, train, test, "logistic", config.split_seed
        )
        for b in ("LOSS", "zlib", "Min-K%++")
    }

    # The vote: length-adjusted slope contrast F vs H, in U and (power) in O.
    forget_groups, holdout_groups = groups["forget"], groups["holdout"]
    n_tokens = token_counts(scan)
    contrast, per_token, adjusted = {}, {}, {}
    for role, feats in (("unlearned", u), ("original", o)):
        adjusted[role], per_token[role] = length_adjusted_slopes(feats, n_tokens)
        f, h = adjusted[role]["forget"], adjusted[role]["holdout"]
        contrast[role] = {
            "forget": float(f.mean()),
            "holdout": float(h.mean()),
            "difference": float(f.mean() - h.mean()),
            "ci": list(cluster_bootstrap_diff_ci(f, forget_groups, h, holdout_groups, config.n_boot, config.seed)),
        }
    p = cluster_permutation_p(
        adjusted["unlearned"]["forget"],
        forget_groups,
        adjusted["unlearned"]["holdout"],
        holdout_groups,
        config.n_perm,
        config.seed,
    )
    cu = contrast["unlearned"]
    vote, reason = decide(contrast, config)
    co = contrast["original"]
    details = {
        # only where O shows a contrast of its own (its CI excludes 0), as the vote
        DELETION_BOUND: (
            deletion_bound(
                max(abs(cu["ci"][0]), abs(cu["ci"][1])),
                abs(co["difference"]),
                config.deleted_share,
                "|O's F - H slope contrast|",
                kind="trace",
            )
            if co["ci"][0] > 0 or co["ci"][1] < 0
            else None
        ),
        BOUND_TEST: SUBJECT_BOOTSTRAP,
        "span": config.span,
        "n_examples": {name: len(scan.facts[name]) for name in SETS},
        "dropped_too_short": scan.dropped,
        "neighbours_per_example": config.n_neighbours,
        "feature_means": {
            role: {name: dict(zip(FEATURES, feats[name]["features"].mean(0).tolist())) for name in feats}
            for role, feats in (("unlearned", u), ("original", o))
        },
        "contrast": contrast,
        "slope_change_per_token_of_length": per_token,
        "mean_tokens": {name: float(n_tokens[name].mean()) for name in SETS},
        "classifiers": classifiers,
        "baselines": baselines,
        "split": {
            "train": int(len(train)),
            "test": int(len(test)),
            "grouped_by_subject": bool(has_subjects),
            "seed": config.split_seed,
        },
        "published_multiclass_auc": 0.82,
        "loss_by_radius": {"unlearned": {n: u[n]["curve"] for n in SETS}, "original": {n: o[n]["curve"] for n in o}},
    }
    return Evidence(
        status="ok",
        metric=(
            f"mean slope of the {config.span} span's loss per substituted token (input-embedding "
            "neighbours), F vs H in U"
        ),
        effect=cu["forget"],
        control=cu["holdout"],
        ci=tuple(cu["ci"]),
        p_value=p,
        vote=cast("Vote | None", vote),
        reason=reason,
        details=details | {P_TEST: SUBJECT_PERMUTATION},
        figures={"remind_loss_by_radius": _figure(details["loss_by_radius"])},
    )


def _figure(curves: dict) -> bytes:
    from forensics.compute.plotting import figure_png, plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    colours = {"forget": "C3", "retain": "C2", "holdout": "C0"}
    for role, style in (("unlearned", "o-"), ("original", ":")):
        for name, curve in curves[role].items():
            ax.plot(
                range(len(curve)),
                curve,
                style,
                color=colours[name],
                label=f"{'U' if role == 'unlearned' else 'O'} · {name}",
                alpha=1.0 if role == "unlearned" else 0.6,
            )
    ax.set_xlabel("substituted tokens (radius)")
    ax.set_ylabel("mean token NLL")
    ax.legend(fontsize=7, frameon=False, ncol=2)
    ax.set_title("REMIND: loss vs radius", fontsize=9)
    return figure_png(fig)
