"""The Ray engine (``ggtqc filter --engine ray``) on a local Ray of 2 CPUs: the same rows as
the local engine, resuming after ``kill -9``, faults that stay with their pair, and the
message without Ray installed."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet
import pytest

import ggtqc
from ggtqc.engines import EngineError
from ggtqc.engines.ray import RaySettings, Shard, ShardStore, config_hash, plan
from ggtqc.host import load_host
from ggtqc.pairs import Pair
from tests.helpers import GGTQC, REPO, make_pair_folder, run_cli
from tests.ray_faults import FaultPlugin

EXAMPLES = REPO / "examples" / "pairs"


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module: starting one takes seconds."""
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="ERROR",
        object_store_memory=256 * 2**20,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},  # workers import tests.ray_faults
    )
    yield ray
    ray.shutdown()


def fault_host():
    host = load_host()
    host.register(FaultPlugin(), "faults")
    return host


def results(out: Path) -> bytes:
    return (out / "results.jsonl").read_bytes()


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in results(out).decode().splitlines()]


def test_example_pairs_give_the_local_engines_rows_byte_for_byte(tmp_path, local_ray):
    local = ggtqc.filter_pairs(EXAMPLES, tmp_path / "local", "all,-clip", device="cpu")
    on_ray = ggtqc.filter_pairs(EXAMPLES, tmp_path / "ray", "all,-clip", device="cpu", engine="ray", ray=RaySettings(shard_size=3), parquet=True)
    assert results(tmp_path / "ray") == results(tmp_path / "local")
    table = pyarrow.parquet.read_table(tmp_path / "ray" / "results.parquet").to_pylist()
    assert [(r["id"], r["verdict"], r["reasons"]) for r in table] == [(r["id"], r["verdict"], r["reasons"]) for r in rows(tmp_path / "ray")]
    k, scored = next((k, r) for k, r in enumerate(rows(tmp_path / "ray")) if "ssim" in r["scores"])
    assert table[k]["scores"]["ssim"] == scored["scores"]["ssim"]
    assert on_ray["verdicts"] == local["verdicts"] and set(on_ray["verdicts"].values()) != {0}
    assert on_ray["engine"] == "ray"
    heatmaps = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local" / "heatmaps").rglob("*.png"))
    assert heatmaps and heatmaps == sorted(p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray" / "heatmaps").rglob("*.png"))
    assert len(list((tmp_path / "ray" / "shards").glob("*.done"))) == 5  # 14 pairs in shards of 3
    assert on_ray["filters"]["ssim"]["pairs_scored"] == local["filters"]["ssim"]["pairs_scored"] > 0  # timings came back


def test_hundreds_of_generated_pairs_with_broken_files_match_the_local_engine(tmp_path, local_ray):
    pairs = tmp_path / "pairs"
    make_pair_folder(pairs, 300, seed=3)
    (pairs / "lq" / "group0" / "0000.png").write_bytes(b"")  # an empty file
    (pairs / "hq" / "group1" / "0001.bmp").unlink()  # an LQ without its target
    kwargs = dict(plugins="resolution,ssim,color,geometry", config={"color": {"thresholds": {"cast": 2}}}, device="cpu", batch_size=8)
    ggtqc.filter_pairs(pairs, tmp_path / "local", **kwargs)
    seen = []
    ggtqc.filter_pairs(
        pairs, tmp_path / "ray", **kwargs, engine="ray", ray=RaySettings(shard_size=64),
        progress=lambda batch, done, total: seen.append((len(batch), done, total)),
    )  # fmt: skip
    assert results(tmp_path / "ray") == results(tmp_path / "local")
    written = rows(tmp_path / "ray")
    assert len(written) == len({row["id"] for row in written}) == 300
    assert {row["verdict"] for row in written} >= {"accept", "reject", "error"}
    assert seen[0] == (0, 0, 300) and seen[-1][1:] == (300, 300) and len(seen) == 1 + 5  # once before, then per shard


def plant_bad_pair(pairs: Path) -> None:
    """Twelve pairs, one of them renamed ``group2/bad``: the pair the fault filters fail on."""
    ids = make_pair_folder(pairs, 12, seed=4)
    for side in ("lq", "hq"):
        (source,) = (pairs / side).glob(ids[5] + ".*")
        source.rename(pairs / side / "group2" / ("bad" + source.suffix))


def test_a_pair_that_raises_is_an_error_row_as_in_the_local_engine(tmp_path, local_ray):
    pairs = tmp_path / "pairs"
    plant_bad_pair(pairs)
    kwargs = dict(plugins="raises", device="cpu", batch_size=4, host=fault_host())
    ggtqc.filter_pairs(pairs, tmp_path / "local", **kwargs)
    ggtqc.filter_pairs(pairs, tmp_path / "ray", **kwargs, engine="ray", ray=RaySettings(shard_size=5))
    assert results(tmp_path / "ray") == results(tmp_path / "local")
    errors = [row for row in rows(tmp_path / "ray") if row["verdict"] == "error"]
    assert [(row["id"], row["reasons"]) for row in errors] == [("group2/bad", ["filter raises failed: ValueError: planted failure"])]




def test_a_worker_that_dies_on_a_pair_is_retried_and_only_that_pair_gets_an_error_row(tmp_path, local_ray):
    pairs = tmp_path / "pairs"
    plant_bad_pair(pairs)
    kwargs = dict(plugins="dies", device="cpu", batch_size=4, host=fault_host())
    summary = ggtqc.filter_pairs(pairs, tmp_path / "ray", **kwargs, engine="ray", ray=RaySettings(shard_size=6))
    written = rows(tmp_path / "ray")
    assert len(written) == len({row["id"] for row in written}) == 12
    errors = [row for row in written if row["verdict"] == "error"]
    assert [(row["id"], row["reasons"]) for row in errors] == [("group2/bad", ["worker died scoring this pair (2 times alone)"])]
    assert summary["verdicts"]["error"] == 1
    # the others are scored as the local engine scores them (the filter only dies on 'bad')
    reference = ggtqc.filter_pairs(pairs, tmp_path / "local", plugins="raises", device="cpu", batch_size=4, host=fault_host())
    assert reference["verdicts"]["error"] == 1
    local = {row["id"]: row for row in rows(tmp_path / "local")}
    for row in written:
        if row["id"] != "group2/bad":
            assert row["scores"]["dies"] == local[row["id"]]["scores"]["raises"]
            assert row["verdict"] == local[row["id"]]["verdict"]


def test_an_existing_cluster_is_joined_by_address_or_by_RAY_ADDRESS(tmp_path, local_ray):
    address = local_ray.get_runtime_context().gcs_address
    ggtqc.filter_pairs(EXAMPLES, tmp_path / "local", "resolution,ssim", device="cpu")
    for name, extra, env in (("flag", ["--ray-address", address], {}), ("env", [], {"RAY_ADDRESS": address})):
        result = run_cli("filter", str(EXAMPLES), "-q", "-p", "resolution,ssim", "--engine", "ray", "--out", str(tmp_path / name), *extra, env=env)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # Ray's own notices kept off the terminal
        assert results(tmp_path / name) == results(tmp_path / "local")
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["ray"]["address"] == address  # this module's cluster: a new local Ray would listen elsewhere


class FakeCluster:
    """Ray's cluster queries answered with given resources; Ray Data's real strategy classes."""

    def __init__(self, ray, resources):
        self.data = ray.data
        self.resources = resources

    def cluster_resources(self):
        return self.resources


@pytest.mark.parametrize(
    "resources,plugins,device,want",
    [
        ({"CPU": 8}, "resolution,ssim", "auto", ("cpu", "TaskPoolStrategy", None, None)),
        ({"CPU": 8}, "resolution,clip", "auto", ("cpu", "ActorPoolStrategy", 4, None)),  # models load once per actor
        ({"CPU": 8, "GPU": 2}, "resolution", "auto", ("cpu", "TaskPoolStrategy", None, None)),  # no filter uses a GPU
        ({"CPU": 8, "GPU": 2}, "resolution,geometry", "auto", ("cuda", "ActorPoolStrategy", 4, 0.5)),  # geometry's torch path
        ({"CPU": 8, "GPU": 2}, "resolution,ssim,iqa", "auto", ("cuda", "ActorPoolStrategy", 4, 0.5)),
        ({"CPU": 8, "GPU": 2}, "resolution,ssim", "cpu", ("cpu", "TaskPoolStrategy", None, None)),
    ],
)
def test_placement_tasks_for_weights_free_filters_actor_pools_for_models_and_gpus(tmp_path, resources, plugins, device, want):
    ray = pytest.importorskip("ray")
    from ggtqc.api import build_stages
    from ggtqc.engines.ray import RayEngine
    from ggtqc.runner import RunOptions

    available = load_host().filters()
    stages = build_stages(plugins.split(","), available)
    engine = RayEngine.__new__(RayEngine)  # no connection: the cluster is faked
    engine.ray = FakeCluster(ray, resources)
    engine.settings = RaySettings(gpus_per_actor=0.5)
    engine.store = ShardStore(tmp_path, "c0ffee")
    chosen = engine.device(device, stages)
    args = engine._map_args(stages, RunOptions(workers=2), chosen)
    strategy = args["compute"]
    assert (chosen.type, type(strategy).__name__, getattr(strategy, "max_size", None), args.get("num_gpus")) == want
    assert args["num_cpus"] == 2


def test_cuda_on_a_cluster_without_gpus_is_refused_before_any_work():
    ray = pytest.importorskip("ray")
    from ggtqc.api import build_stages
    from ggtqc.engines.ray import RayEngine
    from ggtqc.host import PluginError

    engine = RayEngine.__new__(RayEngine)
    engine.ray = FakeCluster(ray, {"CPU": 8})
    with pytest.raises(PluginError, match="the Ray cluster has no GPUs; use --device cpu"):
        engine.device("cuda", build_stages(["ssim"], load_host().filters()))


def test_a_shard_counts_as_finished_only_with_its_configuration_pairs_and_every_row(tmp_path):
    pairs = [Pair(f"p{k}", tmp_path / f"l{k}.png", tmp_path / f"h{k}.png", tmp_path) for k in range(5)]
    shards = plan(pairs, 2)
    assert [len(s.pairs) for s in shards] == [2, 2, 1]
    config = config_hash({"order": ["resolution"]}, 2)
    assert config != config_hash({"order": ["resolution"]}, 3) != config_hash({"order": ["ssim"]}, 2)
    store = ShardStore(tmp_path / "qc", config)
    shard = shards[1]
    assert not store.finished(shard)
    store.write(shard, [{"id": p.id, "verdict": "accept"} for p in shard.pairs])
    assert store.finished(shard)
    assert not ShardStore(tmp_path / "qc", config_hash({"order": ["ssim"]}, 2)).finished(shard)
    assert not store.finished(Shard(1, [pairs[2], pairs[4]]))  # the same index over other pairs
    rows_file = store.rows_path(shard)
    rows_file.write_bytes(rows_file.read_bytes().split(b"\n", 1)[1])  # a row lost
    assert not store.finished(shard)
    with pytest.raises(RuntimeError, match="rows do not match"):
        store.write(shard, [{"id": "p2", "verdict": "accept"}])


def test_killed_driver_resumes_to_the_same_rows_and_skips_finished_shards(tmp_path, plugin_env):
    pytest.importorskip("ray")
    pairs = tmp_path / "pairs"
    make_pair_folder(pairs, 60, seed=5)
    (tmp_path / "qc.toml").write_text("[meangap]\ndelay = 0.2\n")
    common = ["filter", str(pairs), "-q", "--plugins", "resolution,meangap", "--config", str(tmp_path / "qc.toml"), "--batch-size", "4"]
    reference = run_cli(*common, "--out", str(tmp_path / "ref"), env=plugin_env)
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "killed"
    ray_args = [*common, "--engine", "ray", "--ray-shard-size", "8", "--out", str(out)]
    process = subprocess.Popen([str(GGTQC), *ray_args], env={**os.environ, **plugin_env}, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None and len(list(out.glob("shards/*.done"))) < 2:
            time.sleep(0.05)
        finished = {p.name: p.stat().st_mtime_ns for p in out.glob("shards/*.done")}
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        _end_session(process.pid)  # Ray's agents of a killed driver can outlive it
    assert 2 <= len(finished) < 8, "the run was not killed mid-way"
    assert not (out / "results.jsonl").exists()  # written only once every shard is done

    resumed = run_cli(*ray_args, env=plugin_env)
    assert resumed.returncode == 0, resumed.stderr
    assert results(out) == results(tmp_path / "ref")
    for name, mtime in finished.items():
        assert (out / "shards" / name).stat().st_mtime_ns == mtime, f"finished shard {name} was redone"
    # the merged results are an ordinary results folder
    assert run_cli("decide", str(out), "--dry-run").returncode == 0
    report = run_cli("report", str(out))
    assert report.returncode == 0, report.stderr


def _end_session(session: int) -> None:
    """SIGKILL what is left of the process session a test started (and only that)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # the session id, after state, ppid and pgrp
            try:
                os.kill(int(stat.parent.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_without_ray_the_engine_stops_with_what_to_install(tmp_path, monkeypatch):
    stub = tmp_path / "noray"
    stub.mkdir()
    (stub / "ray.py").write_text("raise ImportError(\"No module named 'ray'\")\n")  # as if Ray were not installed
    result = run_cli("filter", str(EXAMPLES), "--plugins", "resolution", "--engine", "ray", "--out", str(tmp_path / "qc"), env={"PYTHONPATH": str(stub)})
    assert result.returncode == 2
    assert result.stderr.strip() == "ggtqc: --engine ray needs Ray: pip install 'ggtqc[ray]' (or: pip install 'ray[data]>=2.40')"
    monkeypatch.setitem(sys.modules, "ray", None)  # in this process too: 'import ray' raises ImportError
    with pytest.raises(EngineError, match="pip install 'ggtqc\\[ray\\]'"):
        ggtqc.filter_pairs(EXAMPLES, tmp_path / "qc2", "resolution", engine="ray")


def test_an_address_where_no_cluster_listens_stops_at_once_with_what_to_do(tmp_path):
    pytest.importorskip("ray")
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    result = run_cli("filter", str(EXAMPLES), "--plugins", "resolution", "--engine", "ray",
                     "--ray-address", f"127.0.0.1:{port}", "--out", str(tmp_path / "qc"))  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith(f"ggtqc: no Ray cluster at 127.0.0.1:{port}: nothing answers there")
    assert "ray start --head" in result.stderr
    assert time.monotonic() - started < 60  # Ray alone retries for minutes
    assert not (tmp_path / "qc" / "results.jsonl").exists()
