"""Membership inference (METHODS section 10): does U still treat the forget set like
training data, beyond the holdout control?

Scores. Each fact is scored as one text, ``prompt + answer``, tokenised exactly as
:func:`forensics.behaviour.encode_facts` does (so the subject's name, which U was trained
on, counts as well as the answer). Per text, with ``lp_t`` the log-probability of token
``t`` given its prefix (every token after the first):

- **LOSS** (Yeom et al.): the mean token NLL;
- **zlib** (Carlini et al.): mean token NLL / ``len(zlib.compress(text.encode("utf-8")))``;
- **Min-K%** (Shi et al., k = 20%): mean of the ``max(1, int(k * n))`` lowest ``lp_t``;
- **Min-K%++** (Zhang et al., k = 20%): the same over ``(lp_t - mu_t) / sigma_t``, where
  ``mu_t`` and ``sigma_t^2`` are the mean and variance of ``log p(z)`` for ``z`` drawn from
  the model's own next-token distribution at ``t`` (variance clamped at 1e-6).

These follow open-unlearning's definitions (``src/evals/metrics/mia``); there scores are
signed like a loss and the forget set is labelled 0, so its AUC is P(forget looks more
like a member than holdout). Here every score is signed so that *higher = more member-
like* and F is the positive class: the same AUC.

Statistic. ROC-AUC of F (positive) against H, per attack, with a CI from a *subject*
bootstrap (F and H subjects resampled independently: the paraphrases of one subject's
facts are not independent). Control: 0.5 (F and H are exchangeable for a model that saw
neither), or, when a reference model is given, the reference's AUC on the same data
(paired bootstrap), which also gives MUSE's **PrivLeak** = (AUC_U - AUC_Ref) / AUC_Ref.

Interpretation: AUC well above the control means F still looks like training data, as
it does in O (recovery above the control: METHODS' control rule is one-sided). AUC well
*below* it means U was pushed past a never-trained model on F (over-unlearning): a
trace of the unlearning itself, not of the knowledge, so it is reported but does not
vote (an over-unlearned model that really deleted F would otherwise be called
SUPPRESSED).

Vote (the four attacks form one family; CIs are Bonferroni-adjusted at ``1 - alpha/4``):

- ``suppressed``: some attack's adjusted CI of ``AUC_U - control`` lies above 0.
  Reported effect: that attack's AUC (the largest difference).
- ``deleted``: the procedure has power on this model pair (O's AUC for the same attack
  has an adjusted CI above ``0.5 + min_power``) and, for every attack, U's adjusted CI lies
  inside ``+-deleted_share * (AUC_O - 0.5)``: U is at most a quarter as member-like on F as
  O was. Reported effect: Min-K%++.
- no vote otherwise.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from forensics.behaviour import encode_facts, logits_fn_for
from forensics.data import Fact
from forensics.evidence import AuditInputs, Evidence, register
from forensics.stats import cluster_permutation_p

QUESTION = "Does U still treat the forget set like training data (membership inference), beyond the control?"
ATTACKS = ("loss", "zlib", "min_k", "min_k_pp")


# ------------------------------------------------------------------ batched token scoring

def fact_token_ids(tokenizer, facts: Sequence[Fact]) -> list[list[int]]:
    """``prompt + answer`` token ids per fact (as behaviour scoring tokenises them)."""
    return [p + a for p, a in encode_facts(tokenizer, facts)]


def _batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None):
    """Index batches of sequences sorted by length (little padding), capped in tokens."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batch: list[int] = []
    for i in order:
        width = lengths[i]
        if batch and (len(batch) >= batch_size or (max_tokens and (len(batch) + 1) * width > max_tokens)):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    lengths = torch.tensor([len(r) for r in rows])
    for k, r in enumerate(rows):
        tokens[k, : len(r)] = torch.as_tensor(r)
    return tokens, lengths


@torch.no_grad()
def sequence_losses(
    model, sequences: Sequence[Sequence[int]], batch_size: int = 512, device="cpu", pad_id: int = 0,
    max_tokens: int | None = 65536,
) -> np.ndarray:
    """Mean token NLL of each whole sequence (every token after the first), in right-padded
    batches sorted by length. Right padding never changes the logits of real positions in a
    causal model, so no attention mask is needed. Fully vectorised: no per-row Python work.
    """
    fn = logits_fn_for(model)
    out = np.zeros(len(sequences))
    for idx in _batches([len(s) for s in sequences], batch_size, max_tokens):
        tokens, lengths = _pad([list(sequences[i]) for i in idx], pad_id)
        tokens = tokens.to(device)
        lp = torch.log_softmax(fn(tokens)[:, :-1].float(), dim=-1)
        picked = lp.gather(-1, tokens[:, 1:, None])[..., 0]
        mask = (torch.arange(tokens.shape[1] - 1, device=device)[None, :] < (lengths.to(device) - 1)[:, None])
        nll = -(picked * mask).sum(1) / mask.sum(1).clamp(min=1)
        out[idx] = nll.cpu().numpy()
    return out


@torch.no_grad()
def token_stats(
    model, sequences: Sequence[Sequence[int]], batch_size: int = 256, device="cpu", pad_id: int = 0,
) -> list[dict[str, np.ndarray]]:
    """Per sequence: ``lp`` (log p of each token after the first), and ``mu``/``sigma`` of
    ``log p(z)`` under the model's next-token distribution at the same positions (Min-K%++)."""
    fn = logits_fn_for(model)
    out: list[dict[str, np.ndarray]] = [{} for _ in sequences]
    for idx in _batches([len(s) for s in sequences], batch_size, None):
        tokens, lengths = _pad([list(sequences[i]) for i in idx], pad_id)
        tokens = tokens.to(device)
        lp = torch.log_softmax(fn(tokens)[:, :-1].float(), dim=-1)
        picked = lp.gather(-1, tokens[:, 1:, None])[..., 0]
        p = lp.exp()
        mu = (p * lp).sum(-1)
        var = ((p * lp.square()).sum(-1) - mu.square()).clamp(min=1e-6)
        picked, mu, sigma = picked.cpu().numpy(), mu.cpu().numpy(), var.sqrt().cpu().numpy()
        for row, i in enumerate(idx):
            n = int(lengths[row]) - 1
            out[i] = {"lp": picked[row, :n], "mu": mu[row, :n], "sigma": sigma[row, :n]}
    return out


def attack_scores(stats: list[dict[str, np.ndarray]], texts: Sequence[str], k: float = 0.2) -> dict[str, np.ndarray]:
    """Member-likeness per text for each attack (higher = more like training data)."""
    scores = {name: np.zeros(len(stats)) for name in ATTACKS}
    for i, (s, text) in enumerate(zip(stats, texts)):
        lp = s["lp"]
        if len(lp) == 0:
            for name in ATTACKS:
                scores[name][i] = np.nan
            continue
        loss = -lp.mean()
        num_k = max(1, int(len(lp) * k))
        scores["loss"][i] = -loss
        scores["zlib"][i] = -loss / max(1, len(zlib.compress(text.encode("utf-8"))))
        scores["min_k"][i] = np.sort(lp)[:num_k].mean()
        scores["min_k_pp"][i] = np.sort((lp - s["mu"]) / s["sigma"])[:num_k].mean()
    return scores


def fact_attack_scores(loaded, facts: Sequence[Fact], k: float = 0.2, batch_size: int = 256) -> dict[str, np.ndarray]:
    pad = loaded.tokenizer.pad_token_id or 0
    stats = token_stats(loaded.model, fact_token_ids(loaded.tokenizer, facts), batch_size, loaded.device, pad)
    return attack_scores(stats, [f.text for f in facts], k)


# ---------------------------------------------------------------------------- AUC + CI

def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC-AUC of ``pos`` against ``neg`` (Mann-Whitney, ties count one half)."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    n1, n0 = len(pos), len(neg)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _cluster_index(groups: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(groups == g) for g in dict.fromkeys(groups.tolist())]


def bootstrap_aucs(
    pos_by_model: list[np.ndarray], g_pos: np.ndarray, neg_by_model: list[np.ndarray], g_neg: np.ndarray,
    n_boot: int, seed: int,
) -> np.ndarray:
    """AUCs over subject-bootstrap resamples, ``[n_boot, n_models]``; every model gets the
    same resample (paired)."""
    cp, cn = _cluster_index(g_pos), _cluster_index(g_neg)
    rng = np.random.default_rng(seed)
    out = np.zeros((n_boot, len(pos_by_model)))
    for b in range(n_boot):
        ip = np.concatenate([cp[j] for j in rng.integers(0, len(cp), len(cp))])
        ineg = np.concatenate([cn[j] for j in rng.integers(0, len(cn), len(cn))])
        for m, (pos, neg) in enumerate(zip(pos_by_model, neg_by_model)):
            out[b, m] = auc(pos[ip], neg[ineg])
    return out


def _groups(facts: Sequence[Fact], prefix: str) -> np.ndarray:
    return np.array([f.subject or f"{prefix}-{i}" for i, f in enumerate(facts)])


# ------------------------------------------------------------------------------ the line

@dataclass
class MembershipConfig:
    k: float = 0.2
    batch_size: int = 256
    n_boot: int = 500
    n_perm: int = 1000
    seed: int = 0
    alpha: float = 0.05
    #: "deleted" needs U's CI inside +- this share of O's AUC - 0.5.
    deleted_share: float = 0.25
    #: ... and O's adjusted CI above 0.5 + this (the attack can see membership at all).
    min_power: float = 0.1


def _quantiles(x: np.ndarray, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    return float(np.quantile(x, a)), float(np.quantile(x, 1 - a))


@register("membership_inference", QUESTION, needs=("original", "unlearned", "forget", "holdout"))
def membership_line(inputs: AuditInputs, config: MembershipConfig | None = None) -> Evidence:
    config = config or MembershipConfig()
    line = "membership_inference"
    if not inputs.holdout:
        return Evidence.not_run(line, QUESTION, "membership inference needs a holdout set as the non-member control")
    if len(inputs.forget) < 2 or len(inputs.holdout) < 2:
        return Evidence.not_run(line, QUESTION, "membership inference needs at least 2 forget and 2 holdout facts")
    models = {"unlearned": inputs.unlearned, "original": inputs.original}
    if inputs.reference is not None:
        models["reference"] = inputs.reference
    scores = {
        (role, name): fact_attack_scores(m, facts, config.k, config.batch_size)
        for role, m in models.items() for name, facts in (("forget", inputs.forget), ("holdout", inputs.holdout))
    }
    for (role, name), per_attack in scores.items():
        if any(not np.isfinite(v).all() for v in per_attack.values()):
            return Evidence.not_run(line, QUESTION, f"non-finite log-probabilities from the {role} model on the {name} set")
    gF, gH = _groups(inputs.forget, "f"), _groups(inputs.holdout, "h")
    level = 1 - config.alpha / len(ATTACKS)
    roles = list(models)
    table: dict = {}
    for attack in ATTACKS:
        pos = [scores[(r, "forget")][attack] for r in roles]
        neg = [scores[(r, "holdout")][attack] for r in roles]
        boots = bootstrap_aucs(pos, gF, neg, gH, config.n_boot, config.seed)
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
            p = cluster_permutation_p(ranks[: len(pos[u])], gF, ranks[len(pos[u]):], gH, config.n_perm, config.seed)
        o = roles.index("original")
        table[attack] = {
            "auc": point,
            "control": control,
            "difference": point["unlearned"] - control,
            "ci": list(_quantiles(diffs, 0.95)),
            "ci_family": list(_quantiles(diffs, level)),
            "original_ci_family": list(_quantiles(boots[:, o], level)),
            "p_value": p,
            "privleak": ((point["unlearned"] - point["reference"]) / point["reference"]
                         if "reference" in point else None),
        }
    significant = [a for a in ATTACKS if table[a]["ci_family"][0] > 0]
    below = [a for a in ATTACKS if table[a]["ci_family"][1] < 0]
    if significant:
        chosen = max(significant, key=lambda a: table[a]["difference"])
        row = table[chosen]
        vote = "suppressed"
        reason = (f"{chosen}: F looks more like training data than the control "
                  f"(AUC {row['auc']['unlearned']:.2f} vs {row['control']:.2f})")
    elif below:
        chosen = min(below, key=lambda a: table[a]["difference"])
        row = table[chosen]
        vote = None
        reason = (f"{chosen}: F looks less like training data than the control (AUC {row['auc']['unlearned']:.2f} "
                  f"vs {row['control']:.2f}): over-unlearning, a trace of the unlearning, not of the knowledge "
                  "(no vote)")
    else:
        chosen = "min_k_pp"
        row = table[chosen]
        powered = [a for a in ATTACKS if table[a]["original_ci_family"][0] > 0.5 + config.min_power]
        inside = all(
            max(abs(table[a]["ci_family"][0]), abs(table[a]["ci_family"][1]))
            < config.deleted_share * (table[a]["auc"]["original"] - 0.5)
            for a in ATTACKS
        )
        if len(powered) == len(ATTACKS) and inside:
            vote = "deleted"
            reason = (f"no attack tells F from the control, and every attack's CI is within "
                      f"{config.deleted_share:.0%} of O's own membership signal")
        else:
            vote = None
            reason = ("no attack tells F from the control, but the CIs are too wide (or O's signal too weak) "
                      "to call it deleted")
    return Evidence(
        line=line,
        question=QUESTION,
        status="ok",
        metric=f"ROC-AUC of {chosen} membership scores, F (members) vs H; control = "
               + ("the reference model's AUC" if "reference" in roles else "0.5")
               + f"; CI adjusted over {len(ATTACKS)} attacks",
        effect=row["auc"]["unlearned"],
        control=row["control"],
        ci=tuple(row["ci_family"]),
        p_value=min(1.0, row["p_value"] * len(ATTACKS)),
        vote=vote,
        reason=reason,
        details={"attacks": table, "decision_attack": chosen, "k": config.k,
                 "privleak": {a: table[a]["privleak"] for a in ATTACKS} if "reference" in roles else None},
        figures={"membership_inference": _figure(table, roles)},
    )


def _figure(table: dict, roles: list[str]) -> bytes:
    from forensics.plotting import figure_png, plt

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
