"""The verdict rule: stored scores, thresholds and review margins in, a verdict out.

Both ``ggtqc filter`` (as each filter's scores arrive) and ``ggtqc decide`` (over a finished
run's stored scores) decide through this module, so the two can never disagree.

Each field with a threshold is judged on its own:

- ``fail``: the score is worse than the threshold by more than the field's margin;
- ``review``: the score lies within the margin of the threshold, on either side. A measure
  is not exact near its threshold, and a person (or the VLM judge) should look;
- ``pass``: otherwise, and always for a missing (NaN / null) score.

A pair is ``reject`` if any field fails, else ``error`` if a filter could not score it,
else ``review`` if any field is in its band or a filter said it cannot tell (``unsure``),
else ``accept``.

A margin is given per field in grey levels, degrees or whatever unit the field has; a field
that declares none gets :data:`DEFAULT_MARGIN` times its threshold's size. Hard limits, such
as image sizes, declare a margin of 0.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from ggtqc.filters import Field

DEFAULT_MARGIN = 0.05
"""The review band's half-width as a share of the threshold's size; docs/calibration.md
gives the share of a run it sends to review."""

Outcome = Literal["pass", "review", "fail"]


@dataclass(frozen=True)
class Rule:
    """How one field (``filter.field``) decides."""

    field: str
    better: Literal["higher", "lower"]
    threshold: float | None
    margin: float = 0.0

    def judge(self, value: float | None) -> Outcome:
        if self.threshold is None or value is None or math.isnan(value):
            return "pass"
        # positive when worse than the threshold
        excess = (self.threshold - value) if self.better == "higher" else (value - self.threshold)
        if excess > self.margin:
            return "fail"
        if self.margin > 0 and excess >= -self.margin:
            return "review"
        return "pass"

    def reason(self, value: float, outcome: Outcome) -> str:
        if outcome == "fail":
            sign = "<" if self.better == "higher" else ">"
            return f"{self.field} {value:.4g} {sign} {self.threshold:.4g}"
        return f"{self.field} {value:.4g} within review margin {self.margin:.3g} of {self.threshold:.4g}"


def default_margin(threshold: float | None, declared: float | None) -> float:
    """A field's margin: the one it declares, else :data:`DEFAULT_MARGIN` of its threshold."""
    if declared is not None:
        return float(declared)
    return abs(threshold) * DEFAULT_MARGIN if threshold is not None else 0.0


@dataclass
class Rules:
    """The rules of every filter of a run, in the order the filters run."""

    by_filter: dict[str, list[Rule]]
    settling: frozenset[str] = frozenset()
    """Filters whose passing score settles the review bands of earlier ones (a judge)."""

    def __post_init__(self) -> None:
        # looked up for every row: worked out once
        self._named = {name: [(rule, rule.field.split(".", 1)[1]) for rule in rules] for name, rules in self.by_filter.items()}
        self.fields = {rule.field for rules in self.by_filter.values() for rule in rules}
        # the starts of the reasons that are filters' remarks, not errors
        self.remarks = {f"{name} unsure:" for name in self.by_filter} | {f"{name}:" for name in self.by_filter}
        self.remarks |= {f"{name} settled" for name in self.by_filter}

    @classmethod
    def from_run(cls, filters: Mapping[str, Mapping[str, Any]], order: Sequence[str] | None = None) -> Rules:
        """Rules from ``run.json``'s ``filters`` (each with ``thresholds``, ``better`` and,
        since row schema 2, ``margins``); runs of schema 1 get the default margins."""
        names = [n for n in (order or sorted(filters)) if n in filters]
        settling = frozenset(n for n in names if filters[n].get("settles_review"))
        by_filter = {}
        for name in names:
            spec = filters[name]
            margins = spec.get("margins", {})
            by_filter[name] = [
                Rule(f"{name}.{f}", spec["better"][f], t, default_margin(t, margins.get(f)))
                for f, t in spec["thresholds"].items()
            ]
        return cls(by_filter, settling)

    def judge(self, filter_name: str, scores: Mapping[str, float | None]) -> list[tuple[Rule, Outcome, str]]:
        """Each rule of ``filter_name`` that did not pass, with its outcome and reason."""
        out = []
        for rule, name in self._named.get(filter_name, ()):
            value = scores.get(name)
            outcome = rule.judge(value)
            if outcome != "pass":
                out.append((rule, outcome, rule.reason(value, outcome)))
        return out


@dataclass
class Decision:
    """The verdict of one pair, and what it rests on."""

    verdict: Literal["accept", "review", "reject", "error"]
    reasons: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)


class RowDecider:
    """Builds one pair's decision filter by filter, as the runner scores it."""

    def __init__(self, rules: Rules, errors: Iterable[str] = ()) -> None:
        self.rules = rules
        self.failed: list[str] = []
        self.review: list[str] = []
        self.unsure: dict[str, str] = {}
        self.notes: dict[str, str] = {}
        self.errors: list[str] = []
        self.entries: list[tuple[str, str]] = []  # (outcome or "error", reason), in the order they came
        for reason in errors:
            self.add_error(reason)

    @property
    def stopped(self) -> bool:
        """A rejected or failed pair: later filters need not score it."""
        return bool(self.failed or self.errors)

    @property
    def so_far(self) -> str:
        """The verdict the filters so far give: reject, review or accept."""
        return "reject" if self.failed else "review" if self.review else "accept"

    def add_scores(
        self, filter_name: str, scores: Mapping[str, float | None], unsure: str | None = None, note: str | None = None
    ) -> None:
        """Judge one filter's scores of the pair, its note that it cannot tell, its sentence."""
        outcomes = []
        for rule, outcome, reason in self.rules.judge(filter_name, scores):
            (self.failed if outcome == "fail" else self.review).append(rule.field)
            self.entries.append((outcome, reason))
            outcomes.append(outcome)
        if unsure:
            self.unsure[filter_name] = unsure
            self.review.append(filter_name)
            self.entries.append(("review", f"{filter_name} unsure: {unsure}"))
            outcomes.append("review")
        if note:
            self.notes[filter_name] = note
            self.entries.append(("note", f"{filter_name}: {note}"))
        if filter_name in self.rules.settling and not outcomes and self.review:
            self.entries = [(kind, reason) for kind, reason in self.entries if kind != "review"]
            self.entries.append(("note", f"{filter_name} settled the review of {', '.join(self.review)}"))
            self.review = []

    def add_error(self, reason: str) -> None:
        self.errors.append(reason)
        self.entries.append(("error", reason))

    def decision(self) -> Decision:
        """The verdict; a rejection's reasons are its failures (and errors) alone."""
        if self.failed:
            verdict = "reject"
        elif self.errors:
            verdict = "error"
        elif self.review:
            verdict = "review"
        else:
            verdict = "accept"
        reasons = [reason for kind, reason in self.entries if kind != "review" or verdict != "reject"]
        return Decision(verdict, reasons, list(self.failed), [] if verdict == "reject" else list(self.review))


def decide_row(row: Mapping[str, Any], rules: Rules) -> Decision:
    """Re-decide a stored row from its scores, its filters' ``unsure`` notes and its errors,
    in the order the runner met them."""
    errors = row_errors(row, rules)
    by_filter = {r.split(" ", 2)[1]: r for r in errors if r.startswith("filter ") and " failed: " in r}
    decider = RowDecider(rules, [r for r in errors if r not in by_filter.values()])
    scores = row.get("scores", {})
    unsure = row.get("unsure", {})
    notes = row.get("notes", {})
    for name in rules.by_filter:
        if name in scores:
            decider.add_scores(name, scores[name], unsure.get(name), notes.get(name))
        elif name in by_filter:
            decider.add_error(by_filter[name])
    return decider.decision()


def row_errors(row: Mapping[str, Any], rules: Rules) -> list[str]:
    """A row's error reasons: those that are neither a field's decision nor a filter's
    ``unsure`` note."""
    return [
        r for r in row.get("reasons", ())
        if r.split(" ", 1)[0] not in rules.fields and r.split(" ", 1)[0] not in rules.remarks
        and " ".join(r.split(" ", 2)[:2]) not in rules.remarks
    ]  # fmt: skip


def unscored(row: Mapping[str, Any], rules: Rules) -> list[str]:
    """The filters that never scored a pair that is not rejected and did not fail to load:
    its verdict under ``rules`` would need them."""
    if row.get("verdict") == "error" and not row.get("scores"):
        return []  # the pair never decoded: nothing was, or could be, scored
    scores = row.get("scores", {})
    failed_filters = {r.split(" ", 2)[1] for r in row_errors(row, rules) if r.startswith("filter ")}
    return [name for name in rules.by_filter if name not in scores and name not in failed_filters]


class DecideError(Exception):
    """A run that cannot be re-decided as asked; the message says why and what to do."""


@dataclass
class Redecided:
    """A run's rows decided anew: the rows, how verdicts moved, and the pairs that cannot be."""

    rows: list[dict[str, Any]]
    moves: Counter[tuple[str, str]]
    unscored: Counter[str]
    blocked: int


def redecide(rows: Iterable[Mapping[str, Any]], rules: Rules) -> Redecided:
    """Each row with its verdict, reasons, ``failed`` and ``review`` recomputed under ``rules``.

    A pair whose new verdict would rest on a filter that never scored it (it was rejected
    before reaching that filter) is counted in ``blocked`` and keeps its old row.
    """
    out, moves, missing, blocked = [], Counter(), Counter(), 0
    for row in rows:
        decision = decide_row(row, rules)
        lacking = unscored(row, rules) if decision.verdict in ("accept", "review") else []
        if lacking:
            blocked += 1
            missing.update(lacking)
            out.append(dict(row))
            continue
        new = dict(row)  # keys keep their places, so an unchanged decision leaves the line as it was
        new["verdict"], new["reasons"] = decision.verdict, decision.reasons
        for key, value in (("failed", decision.failed), ("review", decision.review)):
            if value:
                new[key] = value
            else:
                new.pop(key, None)
        moves[(row["verdict"], decision.verdict)] += 1
        out.append(new)
    return Redecided(out, moves, missing, blocked)


def run_filters_with(run: Mapping[str, Any], config_path: Path | None) -> dict[str, dict[str, Any]]:
    """``run.json``'s filters with a config's thresholds and margins applied.

    The config is checked against the fields the run scored; an option that changes how
    pairs are scored cannot be applied to stored scores and is refused.
    """
    from ggtqc.config import ConfigError, load_config

    filters = {name: dict(spec) for name, spec in run["filters"].items()}
    specs = {
        name: type(name, (), {
            "fields": tuple(Field(f, spec["better"][f], t) for f, t in spec["thresholds"].items()),
            "options": spec.get("settings", {}),
        })
        for name, spec in filters.items()
    }  # fmt: skip
    configs = load_config(config_path, specs)
    for name, config in configs.items():
        spec = filters[name]
        for option, value in config.settings.items():
            if value != spec.get("settings", {}).get(option):
                raise ConfigError(
                    f"{config_path}: {name}.{option} changes how pairs are scored, which stored scores cannot "
                    f"show; rerun 'ggtqc filter' with this config (and --fresh) instead"
                )
        old = {r.field.split(".", 1)[1]: r for r in Rules.from_run({name: spec}).by_filter[name]}
        spec["thresholds"] = {**spec["thresholds"], **config.thresholds}
        spec["margins"] = {f: rescaled_margin(old[f], spec["thresholds"][f]) for f in spec["thresholds"]}
        spec["margins"].update(config.margins)
    return filters


def rescaled_margin(old: Rule, threshold: float | None) -> float:
    """The margin of a moved threshold: the same share of it as before (a hard limit stays
    hard), or the default share for a field that had no threshold."""
    if threshold is None:
        return 0.0
    if old.threshold is None or old.threshold == 0:
        return default_margin(threshold, None)
    return old.margin * abs(threshold / old.threshold)


def read_run(run_dir: Path) -> dict[str, Any]:
    """A results folder's ``run.json``, or a :class:`DecideError` saying what the folder lacks."""
    from ggtqc.results import RESULTS, RUN

    if not (run_dir / RUN).is_file() or not (run_dir / RESULTS).is_file():
        raise DecideError(f"{run_dir} holds no ggtqc results ({RUN} and {RESULTS}); give the --out folder of a 'ggtqc filter' run")
    try:
        run = json.loads((run_dir / RUN).read_text(encoding="utf-8"))
        run["filters"]
    except (ValueError, KeyError, TypeError):
        raise DecideError(f"{run_dir / RUN} is damaged (not the JSON that 'ggtqc filter' writes)") from None
    return run


def decide_run(run_dir: Path, config_path: Path | None, dry_run: bool = False) -> tuple[Redecided, Path | None]:
    """Re-decide a finished run from its stored scores under a config's thresholds and margins.

    The previous ``results.jsonl``, ``run.json`` and ``summary.json`` are first copied to
    ``RUN/history/<UTC time>/``; then all three are rewritten (each atomically), so that
    ``report``, ``review``, ``export`` and a resumed ``filter --config`` with the same
    config see the new decisions. Returns the result and the history folder.
    """
    from ggtqc.results import RESULTS, RUN, SUMMARY, count_rows
    from ggtqc.rowlog import read_rows, write_atomic

    run = read_run(run_dir)
    filters = run_filters_with(run, config_path)
    rules = Rules.from_run(filters, run.get("order"))
    result = redecide(read_rows(run_dir / RESULTS), rules)
    if result.blocked:
        names = ", ".join(f"{name} ({n})" for name, n in result.unscored.most_common())
        raise DecideError(
            f"{result.blocked} pairs would turn on scores never computed: {names} did not score them, since a pair "
            "rejected by one filter skips the later ones; rerun 'ggtqc filter' with --all-scores to re-decide freely"
        )
    if dry_run:
        return result, None
    history = run_dir / "history" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    history.mkdir(parents=True)
    for name in (RESULTS, RUN, SUMMARY):
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, history / name)
    tmp = run_dir / f".{RESULTS}.part"
    with tmp.open("w", encoding="utf-8") as f:
        for row in result.rows:
            f.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, run_dir / RESULTS)
    run = {**run, "filters": filters, "row_schema": max(run.get("row_schema", 1), 2)}
    write_atomic(run_dir / RUN, (json.dumps(run, indent=2) + "\n").encode())
    summary = {}
    if (history / SUMMARY).exists():
        summary = json.loads((history / SUMMARY).read_text(encoding="utf-8"))
    for name, spec in filters.items():
        if name in summary.get("filters", {}):
            summary["filters"][name].update(thresholds=spec["thresholds"], margins=spec["margins"])
    summary.update(count_rows(result.rows))
    summary["decided"] = {"config": str(config_path) if config_path else None, "previous": str(history.relative_to(run_dir))}
    write_atomic(run_dir / SUMMARY, (json.dumps(summary, indent=2) + "\n").encode())
    return result, history
