"""``ggtqc calibrate``: thresholds fitted to people's labels, with a stated guarantee.

The claim a calibration makes is about the pairs a person would keep (``accept`` labels):
*with probability at least the confidence, the new thresholds keep at least the target share
of them*, where "keep" means not rejected (a pair in a review band is kept for a person to
look at). Among the settings that can make that claim, it picks one that rejects as many
labelled faults as it can.

How (learn-then-test, with fixed-sequence testing):

1. **Fit a path.** On the *fit* labels, start from thresholds that keep every labelled good
   pair with room to spare, then tighten one field at a time, each step the one that rejects
   the most further faults per further good pair lost. This gives a sequence of settings from
   lenient to strict.
2. **Certify along it.** On the *certification* labels (good pairs of the uniformly random
   audit sample that the fit never saw), walk the path from the lenient end and keep going
   while the one-sided Clopper-Pearson lower bound of the share kept stays at or above the
   target. Testing in a fixed order this way holds the error rate at 1 - confidence, however
   long the path.

Only the audit sample estimates a whole run: the review queue holds borderline pairs and the
rejected queues hold what the old thresholds disliked, so their labels shape the path but
never certify it. Faults from every queue shape the path (the claim is not about them).

With too few audit labels to certify even the most lenient setting, the thresholds that
keep the target share of *all* labelled good pairs are written anyway, marked as not
guaranteed, with the number of labels the claim would need.

The report beside the claim is cross-validated: each fold's thresholds are fitted without
it, then it is scored, so the numbers are what new pairs would see.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ggtqc.decide import Rule, Rules, rescaled_margin

LENIENT_ROOM = 0.5
"""How far beyond the worst fitted good pair the path starts, in that field's interquartile
ranges of good pairs: one sample's maximum is a poor guess of the next pair's."""
MAX_STEPS = 400
MIN_GAIN, MIN_GAIN_SHARE = 2, 0.01
"""A step of the path must reject at least this many further faults (or this share of
them): a limit moved for one fault is fitted to that fault."""


class CalibrateError(Exception):
    """Labels and a run that cannot be calibrated; the message says why."""


# --- statistics -------------------------------------------------------------------------


def _log_binom_pmf(k: int, n: int, p: float) -> float:
    if p <= 0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1:
        return 0.0 if k == n else -math.inf
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)


def _tail_at_least(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    return min(1.0, sum(math.exp(_log_binom_pmf(j, n, p)) for j in range(k, n + 1)))


def lower_bound(kept: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson lower bound on a share from ``kept`` of ``n``."""
    if n == 0 or kept == 0:
        return 0.0
    low, high = 0.0, kept / n
    for _ in range(60):  # P(X >= kept | p) grows with p: find where it reaches 1 - confidence
        middle = (low + high) / 2
        if _tail_at_least(kept, n, middle) < 1 - confidence:
            low = middle
        else:
            high = middle
    return low


def labels_needed(target: float, confidence: float) -> int:
    """Good-pair labels the claim needs when every one of them is kept."""
    return math.ceil(math.log(1 - confidence) / math.log(target))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson interval of a share ``k`` of ``n``."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


# --- labelled scores ----------------------------------------------------------------------


@dataclass
class Labelled:
    """Labelled pairs as a score matrix: one column per calibrated field, oriented so that
    larger is worse (``badness``); NaN where the pair has no score for the field, and
    ``absent`` where that is because its filter never ran on the pair (it was rejected
    before), not because the field does not apply."""

    ids: list[str]
    good: np.ndarray
    audit: np.ndarray
    badness: np.ndarray
    absent: np.ndarray
    rules: list[Rule]

    def subset(self, mask: np.ndarray) -> Labelled:
        ids = [i for i, m in zip(self.ids, mask) if m]
        return Labelled(ids, self.good[mask], self.audit[mask], self.badness[mask], self.absent[mask], self.rules)


def orient(rule: Rule, value: float) -> float:
    return value if rule.better == "lower" else -value


def calibrated_rules(rules: Rules) -> list[Rule]:
    """The fields a calibration moves: those that decide, except hard limits (margin 0,
    such as image sizes), which state a requirement rather than a judgement."""
    return [r for rs in rules.by_filter.values() for r in rs if r.threshold is not None and r.margin > 0]


def labelled_scores(rows: Mapping[str, Mapping[str, Any]], consensus: Mapping[str, Mapping[str, Any]], rules: Rules) -> Labelled:
    deciding = calibrated_rules(rules)
    ids = [i for i in consensus if i in rows and rows[i].get("verdict") != "error" and rows[i].get("scores")]
    badness = np.full((len(ids), len(deciding)), np.nan)
    absent = np.zeros((len(ids), len(deciding)), bool)
    for a, pair_id in enumerate(ids):
        scores = rows[pair_id]["scores"]
        for b, rule in enumerate(deciding):
            filter_name, name = rule.field.split(".", 1)
            absent[a, b] = filter_name not in scores
            value = scores.get(filter_name, {}).get(name)
            if value is not None:
                badness[a, b] = orient(rule, value)
    good = np.array([consensus[i]["label"] == "accept" for i in ids], bool)
    audit = np.array([bool(consensus[i]["audit"]) for i in ids], bool)
    return Labelled(ids, good, audit, badness, absent, deciding)


def rejected_by(limits: np.ndarray, badness: np.ndarray, absent: np.ndarray | None = None) -> np.ndarray:
    """Per pair and field: does the field reject it under ``limits`` (badness above limit)?
    With ``absent``, a score its filter never computed counts as a rejection."""
    with np.errstate(invalid="ignore"):
        over = badness > limits[None, :]
    if absent is not None:
        over |= absent
    return over


# --- the path ---------------------------------------------------------------------------


def fit_path(data: Labelled, defaults: np.ndarray) -> list[np.ndarray]:
    """Settings (limits in badness units per field) from lenient to strict, fitted on ``data``."""
    good, bad = data.badness[data.good], data.badness[~data.good]
    min_gain = max(MIN_GAIN, math.ceil(MIN_GAIN_SHARE * len(bad)))
    start = defaults.copy()
    for b in range(len(start)):
        column = good[:, b][~np.isnan(good[:, b])]
        if column.size:
            q1, q3 = np.percentile(column, [25, 75])
            room = LENIENT_ROOM * max(q3 - q1, 1e-6 * max(1.0, abs(column.max())))
            start[b] = max(start[b], column.max() + room) if np.isfinite(start[b]) else column.max() + room
    path = [start]
    limits = start.copy()
    good_out = rejected_by(limits, good).any(axis=1)
    bad_out = rejected_by(limits, bad).any(axis=1)
    for _ in range(MAX_STEPS):
        best = None
        for b in range(len(limits)):
            bad_column, good_column = bad[~bad_out, b], good[~good_out, b]
            bad_values = np.sort(bad_column[~np.isnan(bad_column)])
            if not bad_values.size:
                continue
            good_values = np.sort(good_column[~np.isnan(good_column)])
            xs = np.unique(bad_values[bad_values <= limits[b]])
            if not xs.size:
                continue
            # Each candidate limit sits just below a fault's score, as far from the good
            # pairs below it as it can be: the next good pair is likeliest to be spared.
            candidates = np.nextafter(xs, -np.inf)
            gain = bad_values.size - np.searchsorted(bad_values, candidates, side="right")
            cost = good_values.size - np.searchsorted(good_values, candidates, side="right")
            ratio = np.where(gain >= min_gain, gain / (cost + 0.5), 0.0)
            k = int(np.lexsort((gain, ratio))[-1])  # the best ratio; among equals, the larger gain
            if best is None or (ratio[k], gain[k]) > (best[0], best[1]):
                best = (float(ratio[k]), int(gain[k]), b, float(candidates[k]))
        if best is None or best[0] == 0:
            break
        _, _, b, limit = best
        limits = limits.copy()
        limits[b] = limit
        path.append(limits)
        good_out |= rejected_by(limits, good)[:, b]
        bad_out |= rejected_by(limits, bad)[:, b]
        if good_out.all() or bad_out.all():
            break
    return path


def kept_share(limits: np.ndarray, badness: np.ndarray, absent: np.ndarray | None = None) -> tuple[int, int]:
    kept = ~rejected_by(limits, badness, absent).any(axis=1)
    return int(kept.sum()), int(kept.size)


def choose_empirical(path: Sequence[np.ndarray], good_badness: np.ndarray, target: float) -> int:
    """The strictest setting of the path that keeps ``target`` of these good pairs."""
    chosen = 0
    for i, limits in enumerate(path):
        kept, n = kept_share(limits, good_badness)
        if n and kept / n >= target:
            chosen = i
        else:
            break
    return chosen


# --- the calibration -----------------------------------------------------------------------


@dataclass
class Result:
    """What a calibration found: the thresholds, the claim, and the cross-validated report."""

    thresholds: dict[str, float]
    """The thresholds that changed: "filter.field" -> threshold, in the field's own direction."""
    guaranteed: bool
    claim: str
    lines: list[str] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)


def fold_of(pair_id: str, folds: int, salt: str = "") -> int:
    return int(hashlib.sha1((salt + pair_id).encode()).hexdigest()[:8], 16) % folds


def calibrate(
    rows: Mapping[str, Mapping[str, Any]],
    consensus: Mapping[str, Mapping[str, Any]],
    rules: Rules,
    target: float = 0.98,
    confidence: float = 0.9,
    folds: int = 5,
) -> Result:
    data = labelled_scores(rows, consensus, rules)
    if not data.good.any() or data.good.all():
        raise CalibrateError(
            f"calibration needs labelled good pairs and labelled faults; the labels give {int(data.good.sum())} accept "
            f"and {int((~data.good).sum())} reject on scored pairs of this run"
        )
    defaults = np.array([orient(r, r.threshold) for r in data.rules])
    lines: list[str] = []
    counts: dict[str, Any] = {
        "good": int(data.good.sum()), "faults": int((~data.good).sum()),
        "audit_good": int((data.good & data.audit).sum()), "audit_faults": int((~data.good & data.audit).sum()),
    }  # fmt: skip

    # Certification set: audit good pairs the fit never sees. Without enough good pairs from
    # other queues to fit on, a third of the audit good pairs is lent to the fit.
    other_good = data.good & ~data.audit
    lent = np.array([fold_of(i, 3, "fit") == 0 for i in data.ids]) & data.good & data.audit
    if other_good.sum() >= 30:
        lent[:] = False
    certify = data.good & data.audit & ~lent
    fit = ~certify
    path = fit_path(data.subset(fit), defaults)
    n_cert = int(certify.sum())
    chosen = None
    for i, limits in enumerate(path):
        kept, n = kept_share(limits, data.badness[certify], data.absent[certify])
        if n and lower_bound(kept, n, confidence) >= target:
            chosen = i
        else:
            break
    need = labels_needed(target, confidence)
    if chosen is not None:
        limits = path[chosen]
        kept, n = kept_share(limits, data.badness[certify], data.absent[certify])
        claim = (
            f"guaranteed: with {confidence:.0%} confidence these thresholds keep at least {target:.1%} of the pairs a "
            f"person would keep (certified on {n} audit good pairs the fit never saw: {kept} kept, lower bound "
            f"{lower_bound(kept, n, confidence):.3f})"
        )
        guaranteed = True
    else:
        full_path = fit_path(data, defaults)
        limits = full_path[choose_empirical(full_path, data.badness[data.good], target)]
        if not (data.good & data.audit).any():
            why = (
                "no audit labels: labels from the review and rejected queues over-represent borderline pairs and "
                "cannot speak for the whole run"
            )
        elif n_cert < need:
            why = f"{n_cert} audit good pairs were left to certify on; the claim needs at least {need} even if every one is kept"
        else:
            kept, n = kept_share(path[0], data.badness[certify], data.absent[certify])
            why = (
                f"even the most lenient thresholds fitted on the other labels keep only {kept} of the {n} audit good pairs "
                f"left to certify on (lower bound {lower_bound(kept, n, confidence):.3f}): those pairs differ from the ones "
                "fitted on"
            )
        claim = (
            f"NOT guaranteed: {why}. These thresholds keep {target:.1%} of all {int(data.good.sum())} labelled good pairs; "
            f"label more of the audit queue (at least {need} good pairs the fit does not use, for {target:.0%} at "
            f"{confidence:.0%} confidence)"
        )
        guaranteed = False
    thresholds = {
        rule.field: new
        for rule, x in zip(data.rules, limits)
        if not math.isclose(new := float(x) if rule.better == "lower" else float(-x), rule.threshold, rel_tol=1e-9, abs_tol=1e-12)
    }
    missing = int(data.absent.any(axis=1).sum())
    if missing:
        lines.append(
            f"note: {missing} labelled pairs lack some scores (rejected before later filters ran); the certification "
            "counts such good pairs as rejected. Rerun 'ggtqc filter --all-scores' to use them fully."
        )
    lines += cross_validate(data, defaults, target, folds)
    return Result(thresholds, guaranteed, claim, lines, counts)


def cross_validate(data: Labelled, defaults: np.ndarray, target: float, folds: int) -> list[str]:
    """Held-out honest acceptance and fault rejection, default vs calibrated, per field."""
    fold = np.array([fold_of(i, folds) for i in data.ids])
    kept_default = np.zeros(len(data.ids), bool)
    kept_new = np.zeros(len(data.ids), bool)
    first_default: list[str | None] = [None] * len(data.ids)
    first_new: list[str | None] = [None] * len(data.ids)
    for k in range(folds):
        test = fold == k
        if not test.any():
            continue
        train = data.subset(~test)
        if not train.good.any():
            continue
        path = fit_path(train, defaults)
        limits = path[choose_empirical(path, train.badness[train.good], target)]
        for store, firsts, chosen in ((kept_new, first_new, limits), (kept_default, first_default, defaults)):
            over = rejected_by(chosen, data.badness[test])
            store[test] = ~over.any(axis=1)
            for j, row in zip(np.flatnonzero(test), over):
                hits = np.flatnonzero(row)
                firsts[j] = data.rules[hits[0]].field if hits.size else None

    def share(mask: np.ndarray, kept: np.ndarray, keep: bool) -> str:
        n = int(mask.sum())
        k = int((kept[mask] if keep else ~kept[mask]).sum())
        if not n:
            return "-"
        low, high = wilson(k, n)
        return f"{k}/{n} = {k / n:.3f} [{low:.2f}-{high:.2f}]"

    lines = [f"held-out report ({folds}-fold cross-validation; 95% Wilson intervals):"]
    for name, mask in (("all labels", np.ones(len(data.ids), bool)), ("audit sample only", data.audit)):
        if not mask.any():
            continue
        lines.append(f"  {name}:")
        lines.append(f"    good pairs kept      default {share(data.good & mask, kept_default, True):<28} calibrated {share(data.good & mask, kept_new, True)}")
        lines.append(f"    faults rejected      default {share(~data.good & mask, kept_default, False):<28} calibrated {share(~data.good & mask, kept_new, False)}")
    lines.append("  per field (the first field that rejects each held-out pair; good pairs lost / faults caught):")
    fields_seen = Counter(f for f in first_default + first_new if f)
    for name in sorted(fields_seen, key=lambda f: -fields_seen[f]):
        lost = [sum(1 for j, f in enumerate(firsts) if f == name and data.good[j]) for firsts in (first_default, first_new)]
        caught = [sum(1 for j, f in enumerate(firsts) if f == name and not data.good[j]) for firsts in (first_default, first_new)]
        lines.append(f"    {name:<28} default {lost[0]:>4} / {caught[0]:<5} calibrated {lost[1]:>4} / {caught[1]}")
    return lines


def thresholds_toml(result: Result, rules: Rules, header: Sequence[str]) -> str:
    """The thresholds as a qc.toml that ``ggtqc filter --config`` and ``ggtqc decide --config``
    load, with each changed field's review margin at the same share of its threshold."""
    out = [f"# {line}" for line in header] + [""]
    for filter_name, filter_rules in rules.by_filter.items():
        changed = [r for r in filter_rules if r.field in result.thresholds]
        if not changed:
            continue
        out.append(f"[{filter_name}.thresholds]")
        out += [f"{r.field.split('.', 1)[1]} = {_number(result.thresholds[r.field])}" for r in changed]
        out.append(f"\n[{filter_name}.margins]")
        out += [f"{r.field.split('.', 1)[1]} = {_number(rescaled_margin(r, result.thresholds[r.field]))}" for r in changed]
        out.append("")
    return "\n".join(out)


def _number(value: float) -> str:
    return repr(float(f"{value:.6g}"))
