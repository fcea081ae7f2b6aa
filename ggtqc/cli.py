"""Command line: ``ggtqc filter``, ``pairs``, ``decide``, ``calibrate``, ``review``,
``report``, ``compare``, ``generate``, ``plugins`` and ``weights``; ``filter``, ``plugins`` and ``weights`` are thin
shells over the library layer (``ggtqc.api``).

Errors the user can fix (flags, config, input layout, missing weights) end with a short
message and exit code 2; a run that fails while working exits 1; a completed run exits 0,
whatever its verdicts. Set ``GGTQC_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

import click

from ggtqc import __version__, api
from ggtqc.calibrate import CalibrateError, calibrate, thresholds_toml
from ggtqc.compare import CompareError
from ggtqc.config import ConfigError
from ggtqc.decide import DecideError, Rules, decide_run, read_run, redecide, run_filters_with
from ggtqc.engines import ENGINES, EngineError
from ggtqc.export import FORMATS, ExportError, export_run, parse_verdicts
from ggtqc.host import PluginError, load_host, select_filters
from ggtqc.images import DecodeLimits
from ggtqc.pairs import Naming, PairsError, discover
from ggtqc.progress import Progress
from ggtqc.report import ReportError, write_report
from ggtqc.results import RESULTS, VERDICTS, ParquetError, ResumeError, error_kind
from ggtqc.rowlog import LogError, read_rows, write_atomic

USER_ERRORS = (EngineError, ParquetError, CalibrateError, CompareError, DecideError, ConfigError, PairsError, PluginError, ResumeError, ExportError, LogError, ReportError)
INTERRUPTED = "ggtqc: interrupted; rows written so far are kept, run the same command again to resume"


ENVIRONMENT = """\b
Environment variables:
  GGTQC_LOAD_PLUGINS  comma list of the third-party plugins to load (empty:
                      none); the built-in filters always load
  GGTQC_CACHE         folder where weight files are looked for and fetched
                      to [default: ~/.cache/ggtqc]
  GGTQC_SSIM_IMPL     triton|opencv|torch: force one SSIM kernel (fails if it
                      cannot run) [default: chosen by device]
  GGTQC_DEBUG         1: show tracebacks of failed runs
  RAY_ADDRESS         the Ray cluster 'filter --engine ray' joins
  GEMINI_API_KEY      read by the Gemini SDK (generate, the VLM judge); never
                      stored or printed by ggtqc
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=ENVIRONMENT)
@click.version_option(__version__, prog_name="ggtqc")
def cli() -> None:
    """Quality control for generated LQ/HQ image-restoration pairs."""


@cli.command("filter")
@click.argument("pairs", required=False, type=click.Path(path_type=Path))
@click.option("--pairs-file", type=click.Path(path_type=Path), help="CSV/TSV/JSONL/Parquet listing lq, hq (and id) instead of PAIRS; Parquet may hold the images.")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("qc"), show_default=True, help="Results folder.")
@click.option("--plugins", "-p", default="all", show_default=True, help="'all', a comma list, or exclusions: all,-geometry.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="TOML file of thresholds and options.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]), help="Where filters run: auto picks the GPU when torch sees one.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1), help="Pairs decoded and scored together; larger batches keep a GPU busier and use more memory.")
@click.option("--processes", default=1, show_default=True, type=click.IntRange(min=1), help="Worker processes decoding and scoring side by side; on a many-core CPU try 4 or more.")
@click.option("--workers", type=click.IntRange(min=1), show_default="cores / processes", help="Threads per process decoding and scoring pairs.")
@click.option("--lq-template", default="{}", show_default=True, help="LQ file name from the pair id, as BasicSR's filename_tmpl ('{}x4'); 'ggtqc pairs' shows the pairing.")
@click.option("--hq-template", default="{}", show_default=True, help="HQ file name from the pair id.")
@click.option("--all-scores", is_flag=True, help="Score every pair with every filter, even once rejected.")
@click.option("--fresh", is_flag=True, help="Discard earlier results in --out instead of resuming.")
@click.option("--export", "export_dir", type=click.Path(path_type=Path), help="Link accepted pairs into DIR/lq and DIR/hq.")
@click.option("--max-pixels", default=DecodeLimits.max_pixels, show_default=True, type=click.IntRange(min=1), help="Refuse images with more pixels.")
@click.option("--max-file-mb", default=DecodeLimits.max_bytes // 2**20, show_default=True, type=click.FloatRange(min=0, min_open=True), help="Refuse larger files.")
@click.option("--engine", default="local", show_default=True, type=click.Choice(ENGINES), help="local: this machine's processes; ray: Ray Data, in resumable shards (pip install 'ggtqc[ray]'; docs/ray.md).")
@click.option("--ray-address", help="Ray cluster to join (as RAY_ADDRESS).  [default: RAY_ADDRESS, else a local Ray]")
@click.option("--ray-shard-size", "shard_size", default=256, show_default=True, type=click.IntRange(min=1), help="--engine ray: pairs per shard, the unit a rerun skips or redoes.")
@click.option("--ray-pool", type=click.IntRange(min=1), show_default="the cluster's CPUs / --workers, or its GPUs", help="--engine ray: most tasks or actors at once.")
@click.option("--ray-gpus-per-actor", "gpus_per_actor", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True), help="--engine ray on GPUs: GPUs each actor holds (0.5: two actors share one).")
@click.option("--parquet", is_flag=True, help="Also write the rows as --out/results.parquet (needs pyarrow).")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def filter_command(
    pairs: Path | None,
    pairs_file: Path | None,
    out: Path,
    plugins: str,
    config_path: Path | None,
    device: str,
    batch_size: int,
    processes: int,
    workers: int | None,
    lq_template: str,
    hq_template: str,
    all_scores: bool,
    fresh: bool,
    export_dir: Path | None,
    max_pixels: int,
    max_file_mb: float,
    engine: str,
    ray_address: str | None,
    shard_size: int,
    ray_pool: int | None,
    gpus_per_actor: float,
    parquet: bool,
    quiet: bool,
) -> None:
    """Score LQ/HQ pairs in PAIRS (a folder with lq/ and hq/, a folder of .parquet shards, or a pairs file) and write verdicts to --out."""
    if (pairs is None) == (pairs_file is None):
        raise click.UsageError("give either a PAIRS folder or --pairs-file, not both or neither")
    host = load_host()
    for name, reason in host.failures.items():
        click.echo(f"warning: plugin {name!r} failed to load: {reason}", err=True)
    ray_settings = None
    if engine == "ray":
        from ggtqc.engines.ray import RaySettings

        ray_settings = RaySettings(ray_address, shard_size, ray_pool, gpus_per_actor)
    elif ray_address or ray_pool:
        raise click.UsageError("--ray-address and --ray-pool need --engine ray")
    progress = Progress() if not quiet else None
    try:
        summary = api.filter_pairs(
            pairs or pairs_file, out, plugins, config_path,
            device=device, batch_size=batch_size, processes=processes, workers=workers, all_scores=all_scores,
            fresh=fresh, export=export_dir, limits=DecodeLimits(max_pixels=max_pixels, max_bytes=int(max_file_mb * 2**20)),
            naming=Naming(lq_template, hq_template), progress=progress, host=host, engine=engine, ray=ray_settings, parquet=parquet,
        )  # fmt: skip
    finally:
        if progress:
            progress.close()
    counts = summary["verdicts"]
    click.echo(
        f"{summary['pairs']} pairs: {counts['accept']} accept, {counts['review']} review, {counts['reject']} reject, "
        f"{counts['error']} error -> {out / 'results.jsonl'}"
    )
    if "export" in summary:
        click.echo(f"exported {summary['export']['pairs']} accepted pairs to {export_dir}")


@cli.command("pairs")
@click.argument("pairs", type=click.Path(path_type=Path))
@click.option("--lq-template", default="{}", show_default=True, help="LQ file name from the pair id, as BasicSR's filename_tmpl: '{}x4' reads 0001x4.png as pair 0001.")
@click.option("--hq-template", default="{}", show_default=True, help="HQ file name from the pair id.")
@click.option("--list", "show_all", is_flag=True, help="Print every pair: id, LQ, HQ, how matched or why not.")
def pairs_command(pairs: Path, lq_template: str, hq_template: str, show_all: bool) -> None:
    """Show how the files of PAIRS (a folder, a folder of .parquet shards, or a pairs file) are paired, without scoring."""
    found = discover(pairs.resolve(), Naming(lq_template, hq_template))
    if show_all:
        for pair in found:
            click.echo(f"{pair.id}\t{pair.relative(pair.lq) or '-'}\t{pair.relative(pair.hq) or '-'}\t{pair.error or pair.matched}")
        return
    matched = Counter(pair.matched for pair in found if pair.error is None)
    problems = Counter(error_kind(pair.error) for pair in found if pair.error)
    click.echo(f"{len(found)} ids: {sum(matched.values())} pairs, {sum(problems.values())} problems")
    for how, n in matched.most_common():
        example = next(p for p in found if p.error is None and p.matched == how)
        click.echo(f"  {n:>7}  matched by {how:<24} e.g. {example.relative(example.lq)} + {example.relative(example.hq)}")
    for kind, n in problems.most_common():
        example = next(p for p in found if p.error and error_kind(p.error) == kind)
        click.echo(f"  {n:>7}  {kind:<35} e.g. {example.id}: {example.error}")


@cli.command("decide")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="TOML file of thresholds and margins (as for 'ggtqc filter', or from 'ggtqc calibrate').")
@click.option("--dry-run", is_flag=True, help="Count how verdicts would change; write nothing.")
def decide_command(run_dir: Path, config_path: Path | None, dry_run: bool) -> None:
    """Re-decide a finished run from its stored scores: new thresholds, no re-scoring.

    The previous results.jsonl, run.json and summary.json are kept in RUN/history/<time>/.
    """
    result, history = decide_run(run_dir, config_path, dry_run=dry_run)
    counts = Counter(row["verdict"] for row in result.rows)
    moved = sorted(((old, new, n) for (old, new), n in result.moves.items() if old != new), key=lambda m: -m[2])
    click.echo(
        f"{len(result.rows)} pairs: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)
        + f"; {sum(n for *_, n in moved)} changed verdict"
        + "".join(f"\n  {old} -> {new}: {n}" for old, new, n in moved)
    )
    if history is not None:
        click.echo(f"previous verdicts kept in {history}")


@cli.command("calibrate")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--labels", "labels_path", type=click.Path(path_type=Path), help="Labels file (as 'ggtqc review' writes it).  [default: RUN/labels.jsonl]")
@click.option("--target-accept", default=0.98, show_default=True, type=click.FloatRange(0.5, 0.9999), help="Share of the pairs a person keeps that the thresholds must keep.")
@click.option("--confidence", default=0.9, show_default=True, type=click.FloatRange(0.5, 0.999), help="Confidence of that claim.")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(2, 20), help="Folds of the held-out report.")
@click.option("--out", "-o", "out", type=click.Path(path_type=Path), required=True, help="TOML file to write, for 'ggtqc decide --config' and 'ggtqc filter --config'.")
def calibrate_command(run_dir: Path, labels_path: Path | None, target_accept: float, confidence: float, folds: int, out: Path) -> None:
    """Fit a run's thresholds to human labels, with a stated guarantee on the good pairs kept."""
    from ggtqc.labels import LABELS, read_labels

    run = read_run(run_dir)
    labels_path = labels_path or run_dir / LABELS
    if not labels_path.is_file():
        raise DecideError(f"no labels at {labels_path}; label pairs with 'ggtqc review {run_dir}' or give --labels")
    labels = read_labels(labels_path)
    for problem in labels.problems:
        click.echo(f"warning: {problem}", err=True)
    rules = Rules.from_run(run["filters"], run.get("order"))
    rows = {row["id"]: row for row in read_rows(run_dir / RESULTS)}
    consensus = labels.consensus()
    unknown = sum(1 for pair_id in consensus if pair_id not in rows)
    if unknown:
        click.echo(f"warning: {unknown} labelled ids are not in this run; they are left out", err=True)
    result = calibrate(rows, consensus, rules, target_accept, confidence, folds)
    counts = result.counts
    click.echo(
        f"labels: {counts['good']} good pairs and {counts['faults']} faults on scored pairs "
        f"({counts['audit_good']} and {counts['audit_faults']} of them in the audit sample)"
    )
    click.echo(result.claim)
    click.echo(
        "Only the audit sample (a uniformly random draw of the run) estimates the whole run: the review and rejected "
        "queues over-represent borderline and disliked pairs, so their labels shape the thresholds but never certify them."
    )
    for line in result.lines:
        click.echo(line)
    header = [
        f"ggtqc calibrate {run_dir} --target-accept {target_accept} --confidence {confidence}",
        result.claim,
    ]
    write_atomic(out, thresholds_toml(result, rules, header).encode())
    click.echo("thresholds (old -> new):")
    for name, value in result.thresholds.items():
        filter_name, field_name = name.split(".", 1)
        old = run["filters"][filter_name]["thresholds"][field_name]
        click.echo(f"  {name:<28} {old:>10.4g} -> {value:.4g}")
    moved = redecide(read_rows(run_dir / RESULTS), Rules.from_run(run_filters_with(run, out), run.get("order")))
    changed = sum(n for (old, new), n in moved.moves.items() if old != new)
    blocked = f"; {moved.blocked} more need scores never computed (--all-scores)" if moved.blocked else ""
    click.echo(f"{changed} of this run's {len(moved.rows)} pairs change verdict under them{blocked}")
    click.echo(f"wrote {out}; apply with: ggtqc decide {run_dir} --config {out}")


@cli.command("generate")
@click.argument("lq_dir", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Pairs folder to write (lq/, hq/, generation.jsonl).")
@click.option("--generator", "generator_name", default="gemini", show_default=True, help="Generator plugin ('ggtqc plugins' lists them).")
@click.option("--model", help="Image model [gemini: gemini-3.1-flash-image].")
@click.option("--vlm-model", help="Model that writes adaptive prompts [gemini: gemini-3-flash].")
@click.option("--prompt-mode", type=click.Choice(["adaptive", "fixed"]), help="Per-photo VLM prompt, or the fixed fidelity-first prompt [adaptive].")
@click.option("--image-size", type=click.Choice(["1K", "2K", "4K"]), help="Output size class [1K].")
@click.option("--base-url", envvar="GOOGLE_GEMINI_BASE_URL", help="API endpoint: a gateway, proxy or compatible server.")
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(min=1), help="Photos in flight at once.")
@click.option("--rpm", default=60.0, show_default=True, type=click.FloatRange(min=0), help="Requests per minute at most (0: no limit).")
@click.option("--limit", type=click.IntRange(min=0), help="Send at most this many photos in this run.")
@click.option("--overwrite", is_flag=True, help="Redo photos that already have a target.")
@click.option("--dry-run", is_flag=True, help="Print the plan and its cost estimate; send nothing.")
@click.option("--batch", is_flag=True, help="Use the asynchronous Batch API (half price): collect finished jobs, submit the rest.")
@click.option("--batch-job-size", default=50, show_default=True, type=click.IntRange(min=1), help="Photos per batch job (keep jobs small).")
@click.option("--set", "extra", multiple=True, metavar="KEY=VALUE", help="Any generator option, e.g. --set usd_per_image=0.1.")
@click.option("--quiet", "-q", is_flag=True, help="No per-photo lines on stderr.")
def generate_command(
    lq_dir: Path,
    out: Path,
    generator_name: str,
    model: str | None,
    vlm_model: str | None,
    prompt_mode: str | None,
    image_size: str | None,
    base_url: str | None,
    concurrency: int,
    rpm: float,
    limit: int | None,
    overwrite: bool,
    dry_run: bool,
    batch: bool,
    batch_job_size: int,
    extra: tuple[str, ...],
    quiet: bool,
) -> int:
    """Restore the photos in LQ_DIR with an image model and write an LQ/HQ pairs folder.

    Exit codes: 0 every photo sent got a target; 3 some did not (their rows say why);
    1 the run stopped on a service problem (unreachable server, no Batch API); 2 a usage
    error; 130 Ctrl-C (photos in flight finish first; a second Ctrl-C quits at once).
    """
    from ggtqc import generate
    from ggtqc.generators import GeneratorError

    host = load_host()
    available = host.generators()
    if generator_name not in available:
        raise PluginError(f"unknown generator {generator_name!r} (available: {', '.join(sorted(available)) or 'none'})")
    cls = available[generator_name].cls
    flags = {"model": model, "vlm_model": vlm_model, "prompt_mode": prompt_mode, "image_size": image_size, "base_url": base_url}
    settings = {key: value for key, value in flags.items() if value is not None}
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.UsageError(f"--set {item!r}: expected KEY=VALUE")
        settings[key.strip()] = value.strip()
    for key, value in list(settings.items()):
        if key not in cls.options:
            raise click.UsageError(f"generator {generator_name!r} has no option {key!r} (options: {', '.join(cls.options)})")
        settings[key] = _coerce(key, value, cls.options[key])
    generator = cls(**settings)
    options = generate.GenerateOptions(concurrency=concurrency, rpm=rpm, limit=limit, overwrite=overwrite)
    the_plan = generate.plan(lq_dir, out, options)
    missing = [r for r in generator.requirements() if not r.met]
    if dry_run:
        click.echo(json.dumps({
            "photos": len(the_plan.photos), "done_before": len(the_plan.skipped), "recovered": len(the_plan.recovered),
            "unsupported": len(the_plan.unsupported), "to_send": len(the_plan.todo), "generator": f"{cls.name} {cls.version}",
            "settings": generate.shown_settings(generator.settings), "estimate": generator.estimate(len(the_plan.todo), batch=batch),
            "missing": [f"{r.description}: {r.hint}" for r in missing],
        }, indent=2))  # fmt: skip
        for r in missing:
            click.echo(f"warning: a real run would stop before sending anything: it needs {r.description} ({r.hint})", err=True)
        return 0
    if missing:
        lines = "\n".join(f"  - {r.description}: {r.hint}" for r in missing)
        raise PluginError(f"generator {generator_name!r} cannot run:\n{lines}")
    generator.setup()
    show = generate.RowLines(len(the_plan.todo), lambda line: None if quiet else click.echo(line, err=True))
    if not quiet:
        generator.notice = lambda text: click.echo(f"  {text}", err=True)
    try:
        if batch:
            report = generate.run_batch(the_plan, out, generator, batch_job_size, options, on_row=show)
            final = Counter(row["status"] for row in generate.last_rows(out).values())
            click.echo(
                f"collected {report['collected']} photos; {len(report['running'])} jobs still running; "
                f"submitted {len(report['submitted'])} jobs; all photos: {final.get('ok', 0)} ok of {len(the_plan.photos)} "
                f"-> {out / generate.LOG} (run again with --batch to collect)"
            )
            failed = sum(row["status"] != "ok" for row in report["rows"])
            return generate.EXIT_SOME_FAILED if failed else 0
        result = generate.run(the_plan, out, generator, options, on_row=show, on_stop=lambda text: click.echo(f"ggtqc: {text}", err=True))
    except GeneratorError as error:
        _fail(f"ggtqc: {error}", 1)
    final = Counter(row["status"] for row in generate.last_rows(out).values())
    click.echo(
        f"{result.rows - len(the_plan.unsupported)} sent, {len(the_plan.skipped)} done before"
        + (f", {len(the_plan.recovered)} recovered from disk" if the_plan.recovered else "")
        + (f", {result.not_sent} not sent" if result.not_sent else "") + "; this run: "
        + (", ".join(f"{n} {status}" for status, n in sorted(result.statuses.items())) or "nothing")
        + (f" ({result.fallbacks} with the fixed prompt: VLM answer unusable)" if result.fallbacks else "")
        + f", ${result.cost_usd:.2f}; all photos: {final.get('ok', 0)} ok of {len(the_plan.photos)} -> {out / generate.LOG}"
    )  # fmt: skip
    if result.interrupted:
        _fail(INTERRUPTED, 130)
    if result.halted:
        _fail(f"ggtqc: {result.halted}", 1)
    return generate.EXIT_SOME_FAILED if result.failed else 0


def _coerce(key: str, value: object, default: object) -> object:
    if not isinstance(value, str) or isinstance(default, str):
        return value
    try:
        if isinstance(default, bool):
            return {"true": True, "false": False, "1": True, "0": False}[value.lower()]
        return type(default)(value)
    except (KeyError, ValueError):
        raise click.UsageError(f"--set {key}={value}: expected {type(default).__name__} like {default!r}") from None


@cli.command("report")
@click.argument("qc", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Folder for index.html and thumbnails.  [default: QC/report]")
@click.option("--per-reason", default=12, show_default=True, type=click.IntRange(min=1), help="Pairs shown for each rejecting field and each kind of error.")
@click.option("--accepted", default=12, show_default=True, type=click.IntRange(min=0), help="Accepted pairs shown, spread over the run.")
def report_command(qc: Path, out: Path | None, per_reason: int, accepted: int) -> None:
    """Write an HTML page of a results folder: examples of each rejection, errors, accepted pairs."""
    index = write_report(qc, out or qc / "report", per_reason, accepted, workers=os.cpu_count() or 1)
    click.echo(f"report: {index}")


@cli.command("compare")
@click.argument("runs", nargs=-1, required=True, metavar="RUN_A RUN_B [RUN...]", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("compare"), show_default=True, help="Folder for index.html, table.csv and thumbnails.")
@click.option("--name", "names", multiple=True, help="A name for each RUN, in order (repeat the option).  [default: the folder names]")
@click.option("--show", default=24, show_default=True, type=click.IntRange(min=0), help="LQ photos with disagreeing verdicts shown side by side, spread over them.")
def compare_command(runs: tuple[Path, ...], out: Path, names: tuple[str, ...], show: int) -> None:
    """Compare runs over the same LQ photos (from different generators or prompts): pass rates
    with 95 % intervals, rejection reasons, and the targets side by side where verdicts differ.

    Pairs are matched by the LQ's path relative to each run's input folder, else by the LQ
    file's content. Rates are over the LQ photos found in every run.
    """
    from ggtqc.compare import compare, text_table, write_comparison

    if len(runs) < 2:
        raise click.UsageError("give two or more RUN folders to compare")
    result = compare(list(runs), names)
    click.echo(text_table(result))
    matched = f"; {result.matched_by_content} rows matched by LQ content" if result.matched_by_content else ""
    click.echo(f"{len(result.shared)} LQ photos in every run, {len(result.disagree)} with verdicts that differ{matched}")
    index = write_comparison(result, out, show, workers=os.cpu_count() or 1)
    click.echo(f"compare: {index}")


@cli.command("weights")
@click.option("--plugins", "-p", default="all", show_default=True, help="Which filters to look at, as for 'ggtqc filter'.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="TOML file of options (checkpoint paths, models).")
@click.option("--fetch", is_flag=True, help="Download missing files that have a source (needs a network).")
def weights_command(plugins: str, config_path: Path | None, fetch: bool) -> None:
    """Show each filter's weight files, where they are looked for, and whether they are there."""
    from ggtqc.weights import fetch as fetch_file

    available = load_host().filters()
    missing = 0
    for stage in api.build_stages(select_filters(plugins, available), available, config_path):
        name = stage.name
        for weight in stage.filter.weights():
            if weight.found is None and fetch:
                try:
                    weight = type(weight)(weight.description, weight.searched, fetch_file(weight), weight.source)
                except Exception as error:  # offline, refused, unknown file: say so and go on
                    click.echo(f"{name}: could not fetch {weight.description}: {type(error).__name__}: {str(error)[:200]}", err=True)
            state = f"found: {weight.found}" if weight.found else "MISSING"
            missing += weight.found is None
            click.echo(f"{name}: {weight.description}: {state}")
            if weight.found is None:
                for place in weight.searched:
                    click.echo(f"    looked in {place}")
    if missing:
        raise click.exceptions.Exit(1)


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins_command(as_json: bool) -> None:
    """List plugins, the filters they provide, their fields and needs."""
    host = load_host()
    listing = api.list_filters(host)
    generators = [
        {"name": name, "version": entry.cls.version, "plugin": entry.plugin, "package": entry.package, "options": dict(entry.cls.options)}
        for name, entry in sorted(host.generators().items())
    ]
    if as_json:
        click.echo(json.dumps({"filters": listing, "generators": generators, "failed": host.failures}, indent=2))
        return
    for item in listing:
        weights = ", ".join(item["weights"]) or "none"
        click.echo(f"{item['name']} {item['version']}  ({item['package']}; gpu: {item['gpu']}; weights: {weights})")
        for f in item["fields"]:
            rule = "record only" if f["threshold"] is None else f"{'>=' if f['better'] == 'higher' else '<='} {f['threshold']:g}"
            click.echo(f"    {f['name']:<18} {rule:<14} {f['help']}")
        for option, default in item["options"].items():
            click.echo(f"    option {option} = {default!r}")
    for item in generators:
        click.echo(f"generator {item['name']} {item['version']}  ({item['package']})")
        for option, default in item["options"].items():
            click.echo(f"    option {option} = {default!r}")
    for name, reason in host.failures.items():
        click.echo(f"failed to load {name}: {reason}")


@cli.command("review")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port on 127.0.0.1 (0: any free one).")
@click.option("--reviewer", help="Your name in the labels.  [default: your login name]")
@click.option("--audit", "audit_size", default=1000, show_default=True, type=click.IntRange(min=1), help="Pairs in the random audit sample.")
@click.option("--no-open", is_flag=True, help="Do not open a browser; just print the address.")
def review_command(run_dir: Path, port: int, reviewer: str | None, audit_size: int, no_open: bool) -> None:
    """Look at the pairs of a results folder in the browser and label them (RUN/labels.jsonl)."""
    import getpass
    import webbrowser

    from ggtqc.review import ReviewError, make_server

    try:
        name = reviewer or getpass.getuser()
    except (KeyError, OSError):
        name = "reviewer"
    try:
        server = make_server(run_dir.resolve(), name.strip() or "reviewer", port, audit_size)
    except ReviewError as e:
        click.echo(f"ggtqc: {e}", err=True)
        raise click.exceptions.Exit(2) from None
    click.echo(f"reviewing {run_dir} as {server.app.reviewer}: {server.url}  (Ctrl-C to stop; every label is saved at once)")
    for problem in server.app.index.problems + server.app.labels.notes():
        click.echo(f"warning: {problem}", err=True)
    if not no_open:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped; labels are in " + str(run_dir / "labels.jsonl"))
    finally:
        server.server_close()


@cli.command("export")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--format", "fmt", default="folders", show_default=True, type=click.Choice(FORMATS), help="folders: linked lq/ hq/; basicsr: flat folders and meta_info.txt; hf: Parquet shards and a dataset card; webdataset: tar shards.")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Folder to write (new, or an earlier export of the same format).")
@click.option("--verdicts", default="accept", show_default=True, help="Pairs of these verdicts, a comma list: accept,review.")
@click.option("--shard-size", default=1000, show_default=True, type=click.IntRange(min=1), help="Pairs per shard (hf, webdataset).")
@click.option("--rename", is_flag=True, help="folders: flat names from the pair id (haze/coffee -> haze__coffee), as BasicSR's folder mode pairs them.")
def export_command(run_dir: Path, fmt: str, out: Path, verdicts: str, shard_size: int, rename: bool) -> None:
    """Write a run's accepted pairs (or --verdicts) as a dataset; a rerun redoes only what changed."""
    if rename and fmt != "folders":
        raise click.UsageError("--rename applies to --format folders (basicsr names files by key anyway)")
    summary = export_run(run_dir, out, fmt, parse_verdicts(verdicts), shard_size, rename)
    by_verdict = ", ".join(f"{n} {v}" for v, n in summary["by_verdict"].items()) or "none"
    if "shards" in summary:
        shards = summary["shards"]
        done = f"{shards['total']} shards ({shards['written']} written, {shards['kept']} kept, {shards['removed']} removed), {summary['bytes'] / 2**20:.1f} MiB"
    else:
        files = summary["files"]
        done = ", ".join(f"{n} {how}" for how, n in files.items() if n) + " files" if any(files.values()) else "no files"
    click.echo(f"exported {summary['pairs']} pairs ({by_verdict}) as {fmt}: {done} -> {out}")
    if summary["missing_files"]:
        click.echo(f"warning: {summary['missing_files']} pairs left out, their files are gone (e.g. {', '.join(summary['missing_examples'])})", err=True)


@cli.command("judge-estimate")
@click.argument("qc", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="TOML file with the [judge] options (pairs, model, prices).")
def judge_estimate_command(qc: Path, config_path: Path | None) -> None:
    """Estimate what the judge would cost on a finished run's pairs; send nothing."""
    from ggtqc.plugins.judge import estimate_run

    available = load_host().filters()
    click.echo(estimate_run(qc, api.build_stages(["judge"], available, config_path)[0].filter))


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
    except click.Abort as e:  # click turns Ctrl-C into Abort
        if isinstance(e.__cause__, KeyboardInterrupt):
            _fail(INTERRUPTED, 130)
        _fail("ggtqc: aborted", 1)
    except KeyboardInterrupt:
        _fail(INTERRUPTED, 130)
    except Exception as e:
        if debug:
            raise
        _fail(f"ggtqc: run failed: {type(e).__name__}: {e} (set GGTQC_DEBUG=1 for the traceback)", 1)
    sys.exit(code or 0)


def _fail(message: str, code: int) -> None:
    click.echo(message, err=True)
    sys.exit(code)
