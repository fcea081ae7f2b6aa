"""Throughput of ``ggtqc filter --engine ray`` on a local Ray against the local engine, on
the same pairs, and whether their results are the same bytes.

    python -m benchmarks.ray_engine [--pairs 256] [--plugins all,-clip,-iqa] [--rounds 2]
        [--shard-sizes 32,128] [--out benchmarks/results/cpu-2core-ray.md]

Writes N pairs (HQ 1024 px PNG, LQ 512 px JPEG degraded by ``planted.mixed``, as
``filter_e2e.sh`` does) to a scratch folder and times the CLI with ``--all-scores --fresh``:
``wall`` is the whole command (interpreter, a local Ray's start and shutdown included),
``run`` the scoring loop as ``summary.json`` records it (for Ray: from the first shard
submitted to the merged ``results.jsonl``). A last row times a rerun of a finished Ray run
(every shard skipped). Needs the ``ray`` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.throughput_pairs import write_pairs

GGTQC = Path(sys.executable).with_name("ggtqc")


def timed(args: list[str], out: Path) -> tuple[float, float]:
    """Wall seconds of the command, and the scoring loop's seconds from its summary."""
    start = time.perf_counter()
    subprocess.run([str(GGTQC), *args, "--out", str(out), "-q"], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    return wall, json.loads((out / "summary.json").read_text())["this_run"]["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--plugins", default="all,-clip,-iqa")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--shard-sizes", default="32,128")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu-2core-ray.md"))
    options = parser.parse_args()
    cores = os.cpu_count() or 1
    load = [os.getloadavg()[0]]  # other jobs on a shared machine: stated beside the numbers
    with tempfile.TemporaryDirectory() as scratch:
        pairs = Path(scratch) / "pairs"
        write_pairs(pairs, options.pairs)
        common = ["filter", str(pairs), "--plugins", options.plugins, "--all-scores", "--fresh", "--device", "cpu"]
        cases = [
            (f"local, 1 process x {cores} threads", common, "local"),
            (f"local, {cores} processes x 1 thread", [*common, "--processes", str(cores), "--workers", "1"], "local-p"),
        ]
        for size in options.shard_sizes.split(","):
            cases.append((f"ray, {cores} tasks x 1 CPU, shards of {size}", [*common, "--engine", "ray", "--ray-shard-size", size], f"ray-{size}"))
        results = []
        reference = None
        for name, args, key in cases:
            walls, runs = [], []
            for _ in range(options.rounds):
                wall, run = timed(args, Path(scratch) / key)
                walls.append(wall)
                runs.append(run)
            rows = (Path(scratch) / key / "results.jsonl").read_bytes()
            reference = reference or rows
            results.append({"case": name, "wall": walls, "run": runs, "same_rows": rows == reference})
            load.append(os.getloadavg()[0])
            print(f"{name}: wall {min(walls):.1f} s, run {min(runs):.1f} s, same rows as local: {rows == reference}", flush=True)
        last = cases[-1]
        wall, run = timed([a for a in last[1] if a != "--fresh"], Path(scratch) / last[2])
        same = (Path(scratch) / last[2] / "results.jsonl").read_bytes() == reference
        results.append({"case": "ray rerun, every shard finished", "wall": [wall], "run": [run], "same_rows": same})
    write(options, results, cores, load)


def write(options, results: list[dict], cores: int, load: list[float]) -> None:
    n = options.pairs
    lines = [
        f"# Ray engine against the local engine: {n} pairs, `--plugins {options.plugins} --all-scores`",
        "",
        f"Machine: {platform.machine()} {cores} cores ({platform.processor() or 'CPU'}), no GPU, shared with other jobs; "
        f"Python {platform.python_version()}. Written by `benchmarks/ray_engine.py --pairs {n} --rounds {options.rounds}`.",
        f"Load average (1 min) at the start and after each case: {', '.join(f'{x:.1f}' for x in load)}.",
        f"Best of {options.rounds} rounds. wall: the command, start-up included; run: the scoring loop (summary.json).",
        "",
        "| case | wall s | run s | ms per pair (run) | pairs/s (wall) | rows identical to local |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        wall, run = min(r["wall"]), min(r["run"])
        lines.append(f"| {r['case']} | {wall:.1f} | {run:.1f} | {1000 * run / n:.1f} | {n / wall:.1f} | {'yes' if r['same_rows'] else 'NO'} |")
    lines += ["", "Every round:", "", "```json", json.dumps(results, indent=1), "```", ""]
    options.out.write_text("\n".join(lines))
    print(f"wrote {options.out}")


if __name__ == "__main__":
    main()
