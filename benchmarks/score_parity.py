"""Do two versions of the code score alike? Scores and verdicts of one run against another's.

    python -m benchmarks.score_parity make PAIRS           # the pair sets, once
    python -m benchmarks.score_parity score PAIRS OLD      # before a change
    python -m benchmarks.score_parity score PAIRS NEW      # after it
    python -m benchmarks.score_parity compare OLD NEW

``make`` writes three sets: ``examples/pairs`` (linked), planted-fault pairs of both splits
at scales 1, 2 and 4 (``planted.make_pairs``) and the held-out families
(``heldout.make_pairs``). ``score`` runs ``ggtqc filter --all-scores`` on each set (one
worker, so the machine stays usable; ``--plugins`` picks the filters). ``compare`` prints,
per set, how many verdicts differ and the largest score difference per field.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import click

from ggtqc.results import RESULTS
from ggtqc.rowlog import read_rows

from benchmarks import heldout, planted

GGTQC = Path(sys.executable).with_name("ggtqc")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "pairs"
SETS = ("examples", "planted-calibration", "planted-heldout", "heldout")


@click.group()
def main() -> None:
    pass


@main.command()
@click.argument("pairs", type=click.Path(path_type=Path))
@click.option("--per-photo", default=2, show_default=True)
@click.option("--seed", default=0, show_default=True)
def make(pairs: Path, per_photo: int, seed: int) -> None:
    """Write the pair sets under PAIRS."""
    pairs.mkdir(parents=True, exist_ok=True)
    shutil.copytree(EXAMPLES, pairs / "examples", dirs_exist_ok=True)
    for split in ("calibration", "heldout"):
        planted.make_pairs(pairs / f"planted-{split}", split, per_photo, seed, scales=(1, 2, 4))
    heldout.make_pairs(pairs / "heldout", per_photo, seed)


@main.command()
@click.argument("pairs", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--plugins", default="artifacts,geometry", show_default=True)
def score(pairs: Path, out: Path, plugins: str) -> None:
    """Score every set under PAIRS into OUT/<set>."""
    for name in SETS:
        command = [str(GGTQC), "filter", str(pairs / name), "--plugins", plugins, "--all-scores",
                   "--workers", "1", "--out", str(out / name), "--fresh", "-q"]  # fmt: skip
        subprocess.run(command, check=True)


@main.command()
@click.argument("old", type=click.Path(exists=True, path_type=Path))
@click.argument("new", type=click.Path(exists=True, path_type=Path))
def compare(old: Path, new: Path) -> None:
    """Verdicts that differ and the largest score difference per field, set by set and over all."""
    overall: dict[str, float] = defaultdict(float)
    total = changed = 0
    for name in SETS:
        before = {row["id"]: row for row in read_rows(old / name / RESULTS)}
        after = {row["id"]: row for row in read_rows(new / name / RESULTS)}
        differ = [key for key in before if before[key]["verdict"] != after[key]["verdict"]]
        largest: dict[str, float] = defaultdict(float)
        for key, row in before.items():
            for plugin, fields in row.get("scores", {}).items():
                for field, value in fields.items():
                    other = after[key].get("scores", {}).get(plugin, {}).get(field)
                    field_name = f"{plugin}.{field}"
                    if value is None or other is None:  # a NaN score is written as null
                        if (value is None) != (other is None):
                            largest[field_name] = math.inf
                        continue
                    largest[field_name] = max(largest[field_name], abs(value - other))
        click.echo(f"{name}: {len(before)} pairs, {len(differ)} verdicts differ {differ[:10]}")
        for field, diff in sorted(largest.items()):
            click.echo(f"  {field}: largest |old - new| {diff:.3g}")
            overall[field] = max(overall[field], diff)
        total += len(before)
        changed += len(differ)
    click.echo(f"all: {total} pairs, {changed} verdicts differ")
    for field, diff in sorted(overall.items()):
        click.echo(f"  {field}: largest |old - new| {diff:.3g}")


if __name__ == "__main__":
    main()
