"""Do `ggtqc filter --device cuda` and `--device cpu` decide alike? Planted-fault pairs, every weights-free filter.

    python -m benchmarks.device_parity --per-photo 2 --out parity/

Writes the pairs once, runs the command on each device with ``--all-scores``, and prints
how many verdicts differ and the largest score difference per field.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import click

from ggtqc.results import RESULTS
from ggtqc.rowlog import read_rows

from benchmarks import planted

GGTQC = Path(sys.executable).with_name("ggtqc")


@click.command()
@click.option("--per-photo", default=2, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--plugins", default="all,-clip", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
def main(per_photo: int, seed: int, plugins: str, out: Path) -> None:
    planted.make_pairs(out / "pairs", "calibration", per_photo, seed, scales=(1, 2))
    results = {}
    for device in ("cpu", "cuda"):
        command = [str(GGTQC), "filter", str(out / "pairs"), "--plugins", plugins, "--device", device,
                   "--all-scores", "--out", str(out / device), "--fresh", "-q"]  # fmt: skip
        subprocess.run(command, check=True)
        results[device] = {row["id"]: row for row in read_rows(out / device / RESULTS)}
    cpu, cuda = results["cpu"], results["cuda"]
    differ = [key for key in cpu if cpu[key]["verdict"] != cuda[key]["verdict"]]
    largest: dict[str, float] = defaultdict(float)
    for key in cpu:
        for name, fields in cpu[key].get("scores", {}).items():
            for field, value in fields.items():
                other = cuda[key].get("scores", {}).get(name, {}).get(field)
                if isinstance(value, float) and isinstance(other, float):  # a NaN score is written as null
                    largest[f"{name}.{field}"] = max(largest[f"{name}.{field}"], abs(value - other))
    click.echo(f"{len(cpu)} pairs, {len(differ)} verdicts differ: {differ[:10]}")
    for field, diff in sorted(largest.items(), key=lambda item: -item[1]):
        click.echo(f"  {field}: largest |cpu - cuda| {diff:.3g}")


if __name__ == "__main__":
    main()
