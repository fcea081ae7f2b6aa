"""Command line: ``ggtqc filter`` and ``ggtqc plugins``.

Errors the user can fix (flags, config, input layout, missing weights) end with a short
message and exit code 2; a run that fails while working exits 1; a completed run exits 0,
whatever its verdicts. Set ``GGTQC_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from ggtqc import __version__
from ggtqc.config import ConfigError, load_config
from ggtqc.export import ExportError, export_accepted
from ggtqc.host import PluginError, load_host, select_filters
from ggtqc.images import DecodeLimits
from ggtqc.pairs import PairsError, discover
from ggtqc.progress import Progress
from ggtqc.results import ResultsLog, ResumeError
from ggtqc.runner import RunOptions, Stage, check_ready, resolve_device, run

USER_ERRORS = (ConfigError, PairsError, PluginError, ResumeError, ExportError)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ggtqc")
def cli() -> None:
    """Quality control for generated LQ/HQ image-restoration pairs."""


@cli.command("filter")
@click.argument("pairs", required=False, type=click.Path(path_type=Path))
@click.option("--pairs-file", type=click.Path(path_type=Path), help="CSV/TSV/JSONL listing lq, hq (and id) instead of PAIRS.")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("qc"), show_default=True, help="Results folder.")
@click.option("--plugins", "-p", default="all", show_default=True, help="'all', a comma list, or exclusions: all,-clip,-iqa.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="TOML file of thresholds and options.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--workers", default=min(4, os.cpu_count() or 1), show_default=True, type=click.IntRange(min=1), help="Decoding threads.")
@click.option("--all-scores", is_flag=True, help="Score every pair with every filter, even once rejected.")
@click.option("--fresh", is_flag=True, help="Discard earlier results in --out instead of resuming.")
@click.option("--export", "export_dir", type=click.Path(path_type=Path), help="Link accepted pairs into DIR/lq and DIR/hq.")
@click.option("--max-pixels", default=DecodeLimits.max_pixels, show_default=True, type=click.IntRange(min=1), help="Refuse images with more pixels.")
@click.option("--max-file-mb", default=DecodeLimits.max_bytes // 2**20, show_default=True, type=click.FloatRange(min=0, min_open=True), help="Refuse larger files.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def filter_command(
    pairs: Path | None,
    pairs_file: Path | None,
    out: Path,
    plugins: str,
    config_path: Path | None,
    device: str,
    batch_size: int,
    workers: int,
    all_scores: bool,
    fresh: bool,
    export_dir: Path | None,
    max_pixels: int,
    max_file_mb: float,
    quiet: bool,
) -> None:
    """Score LQ/HQ pairs in PAIRS (a folder with lq/ and hq/) and write verdicts to --out."""
    if (pairs is None) == (pairs_file is None):
        raise click.UsageError("give either a PAIRS folder or --pairs-file, not both or neither")
    source = (pairs or pairs_file).resolve()
    found = discover(source)
    root = source if source.is_dir() else source.parent

    host = load_host()
    for name, reason in host.failures.items():
        click.echo(f"warning: plugin {name!r} failed to load: {reason}", err=True)
    available = host.filters()
    names = select_filters(plugins, available)
    configs = load_config(config_path, {name: entry.cls for name, entry in available.items()})
    stages = []
    for name in names:
        entry, config = available[name], configs[name]
        instance = entry.cls(**config.settings)
        thresholds = {f.name: config.thresholds.get(f.name, f.threshold) for f in entry.cls.fields}
        stages.append(Stage(instance, entry, thresholds))
    torch_device = resolve_device(device)
    check_ready(stages, torch_device)

    limits = DecodeLimits(max_pixels=max_pixels, max_bytes=int(max_file_mb * 2**20))
    run_config = {
        "input": str(source),
        "filters": {s.name: {k: v for k, v in s.describe().items() if k not in ("plugin", "package")} for s in stages},
        "all_scores": all_scores,
        "limits": {"max_pixels": limits.max_pixels, "max_bytes": limits.max_bytes},
    }
    log = ResultsLog(out, run_config, fresh=fresh)
    done_before = sum(1 for p in found if p.id in log.done)
    progress = Progress(len(found), done_before) if not quiet else None
    started = time.perf_counter()
    options = RunOptions(batch_size=batch_size, workers=workers, all_scores=all_scores, limits=limits)
    try:
        run(found, stages, log, options, torch_device, on_batch=progress.update if progress else lambda rows: None)
    finally:
        if progress:
            progress.close()
    summary = log.write_summary(
        {
            "ggtqc_version": __version__,
            "input": str(source),
            "device": str(torch_device),
            "filters": {s.name: {**s.describe(), "seconds": round(s.seconds, 3), "pairs_scored": s.pairs} for s in stages},
            "this_run": {"pairs": len(found) - done_before, "seconds": round(time.perf_counter() - started, 3)},
        }
    )
    counts = summary["verdicts"]
    click.echo(
        f"{summary['pairs']} pairs: {counts['accept']} accept, {counts['reject']} reject, "
        f"{counts['error']} error -> {out / 'results.jsonl'}"
    )
    if export_dir is not None:
        exported = export_accepted(log.rows(), root, export_dir)
        click.echo(f"exported {exported} accepted pairs to {export_dir}")


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins_command(as_json: bool) -> None:
    """List plugins, the filters they provide, their fields and needs."""
    host = load_host()
    listing = []
    for name, entry in sorted(host.filters().items()):
        cls = entry.cls
        listing.append(
            {
                "name": name,
                "version": cls.version,
                "plugin": entry.plugin,
                "package": entry.package,
                "gpu": cls.gpu,
                "weights": [w.description for w in cls().weights()],
                "options": dict(cls.options),
                "fields": [{"name": f.name, "better": f.better, "threshold": f.threshold, "help": f.help} for f in cls.fields],
            }
        )
    if as_json:
        click.echo(json.dumps({"filters": listing, "failed": host.failures}, indent=2))
        return
    for item in listing:
        weights = ", ".join(item["weights"]) or "none"
        click.echo(f"{item['name']} {item['version']}  ({item['package']}; gpu: {item['gpu']}; weights: {weights})")
        for f in item["fields"]:
            rule = "record only" if f["threshold"] is None else f"{'>=' if f['better'] == 'higher' else '<='} {f['threshold']:g}"
            click.echo(f"    {f['name']:<18} {rule:<14} {f['help']}")
        for option, default in item["options"].items():
            click.echo(f"    option {option} = {default!r}")
    for name, reason in host.failures.items():
        click.echo(f"failed to load {name}: {reason}")


def main(argv: list[str] | None = None) -> None:
    debug = os.environ.get("GGTQC_DEBUG") == "1"
    try:
        code = cli.main(args=argv, prog_name="ggtqc", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help() if e.ctx else str(e))
        code = 0
    except click.UsageError as e:
        where = e.ctx.command_path if e.ctx else "ggtqc"
        _fail(f"{where}: {e.format_message()} (see '{where} --help')", 2)
    except USER_ERRORS as e:
        _fail(f"ggtqc: {e}", 2)
    except click.Abort:
        _fail("ggtqc: aborted", 1)
    except KeyboardInterrupt:
        _fail("ggtqc: interrupted; rows written so far are kept, run the same command again to resume", 130)
    except Exception as e:
        if debug:
            raise
        _fail(f"ggtqc: run failed: {type(e).__name__}: {e} (set GGTQC_DEBUG=1 for the traceback)", 1)
    sys.exit(code or 0)


def _fail(message: str, code: int) -> None:
    click.echo(message, err=True)
    sys.exit(code)
