"""Detection accuracy of ``ggtqc filter`` with every weights-free filter on planted-fault pairs.

    python -m benchmarks.accuracy                      # both splits, writes benchmarks/results/accuracy.md
    python -m benchmarks.accuracy --per-photo 12 --seeds 0,1,2   # docs/accuracy.md's numbers
    python -m benchmarks.accuracy --split heldout --per-photo 1

Builds pairs with ``planted.make_pairs`` in a temporary folder, runs the ``ggtqc`` command
on them exactly as a user would, and reports, per fault type and strength, the share of
faulty pairs rejected (recall) and the share of honest pairs accepted, with which filters
did the rejecting.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import click

from benchmarks import planted
from ggtqc.calibrate import wilson
from ggtqc.results import RESULTS
from ggtqc.rowlog import read_rows

GGTQC = Path(sys.executable).with_name("ggtqc")


WEIGHTS_FREE = "all,-clip"


def evaluate(
    split: str,
    per_photo: int,
    seeds: tuple[int, ...] = (0,),
    plugins: str = WEIGHTS_FREE,
    workdir: Path | None = None,
    scales: tuple[int, ...] = (1, 2),
    degradations: str = "standard",
    twins: bool = False,
) -> dict:
    """Pairs of every seed, each set filtered by the real command, summarized together.

    A recall of 0.92 over one seed's 48 pairs of a fault has a 95% interval of about
    ±0.08; pooling seeds narrows it. Pair ids get their seed as a first folder.
    """
    labels, rows = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            root = (workdir or Path(tmp)) / f"seed{seed}"
            made = planted.make_pairs(root / "pairs", split, per_photo, seed, scales=scales, degradations=degradations, twins=twins)
            command = [str(GGTQC), "filter", str(root / "pairs"), "--plugins", plugins, "--out", str(root / "qc"), "--fresh", "-q"]
            subprocess.run(command, check=True)
            labels += [seeded(label, seed) for label in made]
            rows.update({f"seed{seed}/{row['id']}": row for row in read_rows(root / "qc" / RESULTS)})
    return summarize(labels, rows)


def seeded(label: dict, seed: int) -> dict:
    """The label with its pair id, and its twin's link, under the seed's folder."""
    return {**label, **{key: f"seed{seed}/{label[key]}" for key in ("id", "of") if key in label}}


def summarize(labels: list[dict], rows: dict[str, dict]) -> dict:
    """Honest acceptance and fault recall; with twins, also recall over the faulty pairs whose twin passed.

    A twin is the faulty pair before its fault. Where the twin is rejected too, the LQ alone
    (a tinted or heavily degraded source) may have done the rejecting; recall over the rest
    counts only rejections the fault caused.
    """
    by_case: dict[tuple, list[bool]] = defaultdict(list)
    paired: dict[tuple, list[bool]] = defaultdict(list)
    caught_by: dict[tuple, Counter] = defaultdict(Counter)
    by_scale: dict[tuple, list[bool]] = defaultdict(list)  # honest acceptance and clear recall per HQ/LQ scale
    honest_failures: Counter = Counter()
    twin_failures: Counter = Counter()
    in_review: dict[str, list[bool]] = defaultdict(list)
    # Three verdicts: an honest pair is kept unless rejected (review sends it to a person),
    # and a faulty pair is caught unless accepted outright (review stops it too).
    kept = lambda row: row["verdict"] in ("accept", "review")  # noqa: E731
    twin_accepted = {label["of"]: kept(rows[label["id"]]) for label in labels if label["kind"] == "twin"}
    for label in labels:
        row = rows[label["id"]]
        if label["kind"] == "honest":
            by_case[("honest", label["what"])].append(kept(row))
            by_scale[("honest", label.get("scale", 1))].append(kept(row))
            honest_failures.update(row.get("failed", []) or ["error"] if not kept(row) else [])
            in_review[label["kind"]].append(row["verdict"] == "review")
        elif label["kind"] == "twin":
            by_case[("twin", label["group"])].append(kept(row))
            twin_failures.update(row.get("failed", []) or ["error"] if not kept(row) else [])
        elif label["kind"] == "fault":
            rejected = row["verdict"] != "accept"
            in_review[label["kind"]].append(row["verdict"] == "review")
            key = (label["what"], label["strength"])
            by_case[key].append(rejected)
            caught_by[key].update({name.split(".")[0] for name in row.get("failed", [])})
            if label["strength"] == "clear":
                by_scale[(label["what"], label.get("scale", 1))].append(rejected)
            if twin_accepted.get(label["id"]):
                paired[key].append(rejected)
    return {"cases": by_case, "paired": paired, "twins": twin_accepted, "caught_by": caught_by,
            "honest_failures": honest_failures, "twin_failures": twin_failures, "by_scale": by_scale, "in_review": in_review}


def share(hits: list[bool] | None, interval: bool = False) -> str:
    """``k/n = rate``, with its 95% Wilson interval if asked."""
    if not hits:
        return "-"
    text = f"{sum(hits)}/{len(hits)} = {sum(hits) / len(hits):.2f}"
    return text + " ({:.2f}-{:.2f})".format(*wilson(sum(hits), len(hits))) if interval else text


def table(result: dict, title: str) -> str:
    cases, caught_by = result["cases"], result["caught_by"]
    honest = [ok for key, oks in cases.items() if key[0] == "honest" for ok in oks]
    lines = [f"### {title}", "", f"Honest pairs kept (accepted, or sent to review): **{sum(honest)}/{len(honest)} = {sum(honest) / len(honest):.3f}**"]
    lines += ["(95% interval {:.3f}-{:.3f})".format(*wilson(sum(honest), len(honest)))]
    review = result.get("in_review", {})
    if review.get("honest") or review.get("fault"):
        lines += ["", "In review: " + ", ".join(f"{sum(v)}/{len(v)} {k} pairs" for k, v in sorted(review.items()) if v)
                  + " (a faulty pair in review counts as caught, an honest one as kept)"]
    lines.append("")
    twins = result["twins"]
    if twins:  # a second honest sample, larger, its groups and scales drawn at random
        lines += ["| honest group | accepted | twins accepted |", "| --- | ---: | ---: |"]
    else:
        lines += ["| honest group | accepted |", "| --- | ---: |"]
    for group in planted.GROUPS:
        cells = [cases.get(("honest", group), [])] + ([cases.get(("twin", group), [])] if twins else [])
        lines.append(f"| {group} | " + " | ".join(f"{sum(oks)}/{len(oks)}" for oks in cells) + " |")
    for who, failures in (("Honest pairs", result["honest_failures"]), ("Twins", result["twin_failures"])):
        if failures:
            lines += ["", f"{who} were rejected by: " + ", ".join(f"{k} ({v})" for k, v in failures.most_common())]
    paired = result["paired"]
    strengths = ("clear", "subtle")
    header, rule = "| fault | clear recall (95% interval) | subtle recall |", "| --- | ---: | ---: |"
    if twins:
        lines += ["", f"Twins accepted: {sum(twins.values())}/{len(twins)}. Recall where the twin passed counts only the faulty pairs whose twin was accepted."]
        header, rule = header + " clear, twin passed | subtle, twin passed |", rule + " ---: | ---: |"
    lines += ["", header + " rejected mostly by |", rule + " --- |"]
    for fault in planted.FAULTS:
        cells = [share(cases.get((fault, strength)), interval=strength == "clear") for strength in strengths]
        if twins:
            cells += [share(paired.get((fault, strength))) for strength in strengths]
        by = caught_by.get((fault, "clear"), Counter()) + caught_by.get((fault, "subtle"), Counter())
        lines.append(f"| {fault} | {' | '.join(cells)} | {', '.join(name for name, _ in by.most_common(3))} |")
    lines += scale_table(result["by_scale"])
    return "\n".join(lines) + "\n"


def scale_table(by_scale: dict[tuple, list[bool]]) -> list[str]:
    """Honest acceptance and clear recall for each HQ/LQ scale, where the pairs came at more than one."""
    scales = sorted({scale for _, scale in by_scale})
    if len(scales) < 2:
        return []
    lines = ["", "By HQ/LQ scale: honest pairs accepted, clear faults caught.", ""]
    lines += ["| | " + " | ".join(f"{scale}x" for scale in scales) + " |", "| --- |" + " ---: |" * len(scales)]
    for what in ("honest", *planted.FAULTS):
        cells = [by_scale.get((what, scale)) for scale in scales]
        if any(cells):
            lines.append(f"| {what} | " + " | ".join(f"{sum(c)}/{len(c)}" if c else "-" for c in cells) + " |")
    return lines


def whole_numbers(text: str, option: str, example: str, least: int) -> tuple[int, ...]:
    """Comma-separated whole numbers of at least ``least``, or a one-line usage error."""
    try:
        numbers = tuple(int(part) for part in text.split(","))
    except ValueError:
        numbers = ()
    if not numbers or min(numbers) < least or len(set(numbers)) < len(numbers):
        raise click.BadParameter(f"{text!r}: give distinct whole numbers of {least} or more separated by commas, e.g. {example}", param_hint=option)
    return numbers


@click.command()
@click.option("--split", type=click.Choice(["calibration", "heldout", "both"]), default="both")
@click.option("--per-photo", default=2, show_default=True, help="Repeats per photo of every case.")
@click.option("--seeds", default="0", show_default=True, help="Seeds of the pairs, pooled, e.g. 0,1,2.")
@click.option("--plugins", default=WEIGHTS_FREE, show_default=True)
@click.option("--scales", default="1,2", show_default=True, help="HQ/LQ scale factors the pairs are drawn from.")
@click.option(
    "--degradations",
    type=click.Choice(sorted(planted.DEGRADATIONS)),
    default="standard",
    show_default=True,
    help="LQ degradations: the standard set, or the shifted one no threshold was set on.",
)
@click.option(
    "--twins/--no-twins",
    default=True,
    show_default=True,
    help="Also score each faulty pair's twin (its target before the fault) and report recall where the twin passed.",
)
@click.option("--out", type=click.Path(path_type=Path), default=Path(__file__).parent / "results" / "accuracy.md")
def main(split: str, per_photo: int, seeds: str, plugins: str, scales: str, degradations: str, twins: bool, out: Path) -> None:
    factors = whole_numbers(scales, "--scales", "1,2,4", least=1)
    seed_list = whole_numbers(seeds, "--seeds", "0,1,2", least=0)
    splits = ["calibration", "heldout"] if split == "both" else [split]
    command = f"python -m benchmarks.accuracy --per-photo {per_photo} --seeds {seeds} --scales {scales} --degradations {degradations}"
    command += ("" if twins else " --no-twins") + ("" if split == "both" else f" --split {split}")
    parts = ["# Detection accuracy on planted faults", "", f"`{command}`", ""]
    for name in splits:
        photos = ", ".join(planted.SPLITS[name])
        result = evaluate(name, per_photo, seed_list, plugins, scales=factors, degradations=degradations, twins=twins)
        parts.append(table(result, f"{name} photos ({photos})"))
    text = "\n".join(parts)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    click.echo(text)


if __name__ == "__main__":
    main()
