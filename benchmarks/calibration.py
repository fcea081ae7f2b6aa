"""Default vs calibrated thresholds on labelled pairs the defaults were not set on.

    python -m benchmarks.calibration                          # writes benchmarks/results/calibration.md
    python -m benchmarks.calibration --per-photo 3 --seeds 0,1,2

Pairs come from ``heldout.py`` (degradations, restoration styles and photos that no default
threshold was set on), scored by the real ``ggtqc filter --all-scores``. Every pair is
labelled as a person would (honest target: accept; planted fault: reject), as if all came
from the audit queue. The photos are split in two: thresholds are calibrated
(``ggtqc.calibrate``) on the labels of one half and scored on the other, then the halves
swap, so no pair is ever judged by thresholds fitted to it. A pair is *kept* unless
rejected: a pair in a review band goes to a person.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

import click

from ggtqc.calibrate import calibrate, thresholds_toml
from ggtqc.decide import Rules, read_run, redecide, run_filters_with
from ggtqc.results import RESULTS
from ggtqc.rowlog import read_rows

from benchmarks import heldout
from benchmarks.accuracy import GGTQC, share

PLUGINS = "all,-clip,-iqa"
HALVES = (("motorcycle", "retina"), ("immunohistochemistry", "garden"))


def scored_pairs(per_photo: int, seeds: tuple[int, ...], workdir: Path) -> tuple[dict, dict, dict]:
    """Labels and rows of every seed's pairs (ids under ``seed<N>/``), and one run's run.json."""
    labels, rows, run = {}, {}, None
    for seed in seeds:
        root = workdir / f"seed{seed}"
        made = heldout.make_pairs(root / "pairs", per_photo, seed)
        command = [str(GGTQC), "filter", str(root / "pairs"), "--plugins", PLUGINS, "--out", str(root / "qc"), "--fresh", "-q", "--all-scores"]
        subprocess.run(command, check=True)
        run = run or read_run(root / "qc")
        for row in read_rows(root / "qc" / RESULTS):
            rows[f"seed{seed}/{row['id']}"] = {**row, "id": f"seed{seed}/{row['id']}"}
        labels.update({f"seed{seed}/{label['id']}": label for label in made})
    return labels, rows, run


def evaluate(labels: dict, rows: dict, run: dict, target: float, confidence: float, workdir: Path) -> tuple[list, list[str]]:
    """(label, default row, calibrated row) of every pair, each half judged by thresholds
    calibrated on the other; and the calibrations' claims."""
    rules = Rules.from_run(run["filters"], run.get("order"))
    judged, claims = [], []
    for fit_half, test_half in (HALVES, HALVES[::-1]):
        fit_ids = [i for i, label in labels.items() if label["photo"] in fit_half]
        consensus = {
            i: {"id": i, "label": "accept" if labels[i]["kind"] == "honest" else "reject", "tags": [], "audit": True, "votes": {}}
            for i in fit_ids
        }
        result = calibrate(rows, consensus, rules, target, confidence)
        config = workdir / f"calibrated-on-{'-'.join(fit_half)}.toml"
        config.write_text(thresholds_toml(result, rules, [result.claim]))
        new_rules = Rules.from_run(run_filters_with(run, config), run.get("order"))
        test_ids = [i for i, label in labels.items() if label["photo"] in test_half]
        calibrated = {row["id"]: row for row in redecide((rows[i] for i in test_ids), new_rules).rows}
        judged += [(labels[i], rows[i], calibrated[i]) for i in test_ids]
        claims.append(f"calibrated on {', '.join(fit_half)} ({len(fit_ids)} labels), scored on {', '.join(test_half)}: {result.claim}")
    return judged, claims


def report(judged: list, claims: list[str], command: str) -> str:
    kept = lambda row: row["verdict"] != "reject"  # noqa: E731
    lines = [
        "# Default vs calibrated thresholds on held-out families",
        "",
        f"`{command}`",
        "",
        "Pairs of `heldout.py` (no default threshold was set on them), each half of the photos judged by thresholds",
        "calibrated on the labels of the other half. *Kept*: not rejected (a pair in review goes to a person).",
        "",
    ]
    lines += [f"- {claim}" for claim in claims]
    honest = [j for j in judged if j[0]["kind"] == "honest"]
    faults = [j for j in judged if j[0]["kind"] == "fault"]
    lines += ["", "| | default | calibrated |", "| --- | ---: | ---: |"]
    lines.append(f"| honest pairs kept | {share([kept(d) for _, d, _ in honest], True)} | {share([kept(c) for *_, c in honest], True)} |")
    lines.append(f"| honest pairs accepted without review | {share([d['verdict'] == 'accept' for _, d, _ in honest])} | {share([c['verdict'] == 'accept' for *_, c in honest])} |")
    lines.append(f"| faults rejected | {share([not kept(d) for _, d, _ in faults], True)} | {share([not kept(c) for *_, c in faults], True)} |")
    lines.append(f"| faults rejected for an expected reason | {share([right(l, d) for l, d, _ in faults])} | {share([right(l, c) for l, _, c in faults])} |")
    lines += ["", "| honest family | kept, default | kept, calibrated | in review, calibrated |", "| --- | ---: | ---: | ---: |"]
    for family, group in grouped(honest, "what").items():
        lines.append(
            f"| {family} | {share([kept(d) for _, d, _ in group])} | {share([kept(c) for *_, c in group])} "
            f"| {share([c['verdict'] == 'review' for *_, c in group])} |"
        )
    lines += ["", "| fault | rejected, default | rejected, calibrated | for an expected reason, calibrated |", "| --- | ---: | ---: | ---: |"]
    for what, group in grouped(faults, "what").items():
        lines.append(
            f"| {what} | {share([not kept(d) for _, d, _ in group])} | {share([not kept(c) for *_, c in group])} "
            f"| {share([right(l, c) for l, _, c in group])} |"
        )
    return "\n".join(lines) + "\n"


def right(label: dict, row: dict) -> bool:
    return row["verdict"] == "reject" and bool(set(row.get("failed", ())) & set(label["expect_fields"]))


def grouped(judged: list, key: str) -> dict[str, list]:
    groups = defaultdict(list)
    for item in judged:
        groups[item[0][key]].append(item)
    return dict(sorted(groups.items()))


@click.command()
@click.option("--per-photo", default=3, show_default=True, help="Pairs of each family per photo and seed.")
@click.option("--seeds", default="0,1", show_default=True, help="Comma-separated seeds.")
@click.option("--target-accept", default=0.95, show_default=True, help="Share of honest pairs the calibration must keep.")
@click.option("--confidence", default=0.9, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path(__file__).parent / "results" / "calibration.md", show_default=True)
def main(per_photo: int, seeds: str, target_accept: float, confidence: float, out: Path) -> None:
    seed_list = tuple(int(s) for s in seeds.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        labels, rows, run = scored_pairs(per_photo, seed_list, Path(tmp))
        judged, claims = evaluate(labels, rows, run, target_accept, confidence, Path(tmp))
    command = f"python -m benchmarks.calibration --per-photo {per_photo} --seeds {seeds} --target-accept {target_accept}"
    text = report(judged, claims, command)
    out.write_text(text)
    click.echo(text)


if __name__ == "__main__":
    main()
