"""Helpers the tests share: real photos, pair folders, the ggtqc command and its results.

Imported as ``tests.helpers``; pytest's ``pythonpath`` puts the repository root on the path."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data

REPO = Path(__file__).resolve().parents[1]
GGTQC = Path(sys.executable).with_name("ggtqc")
WEIGHTS_FREE = "all,-clip"  # no CLIP weights can be fetched here


def photos() -> list[np.ndarray]:
    """Real public-domain photos bundled with scikit-image, RGB uint8."""
    return [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.hubble_deep_field(), data.immunohistochemistry()]


def failing_fields(cls, scores: dict[str, float]) -> list[str]:
    """The fields of filter ``cls`` whose default threshold the scores cross, review margins
    aside: what the filter measures, apart from the band where a person looks."""
    from ggtqc.decide import Rule

    return [f.name for f in cls.fields if Rule(f.name, f.better, f.threshold).judge(scores[f.name]) == "fail"]


def save_rgb(path: Path, image: np.ndarray, **params: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = [v for item in params.items() for v in (getattr(cv2, item[0]), item[1])]
    assert cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1]), flags)
    return path


def make_pair_folder(root: Path, count: int, seed: int = 0) -> list[str]:
    """``count`` faithful pairs cut from real photos, in varied sizes and formats."""
    rng = np.random.default_rng(seed)
    sources = photos()
    extensions = [".png", ".jpg", ".webp", ".bmp", ".tif"]
    ids = []
    for k in range(count):
        photo = sources[k % len(sources)]
        h = int(rng.integers(96, min(photo.shape[0], 320)))
        w = int(rng.integers(96, min(photo.shape[1], 320)))
        y = int(rng.integers(0, photo.shape[0] - h + 1))
        x = int(rng.integers(0, photo.shape[1] - w + 1))
        hq = photo[y : y + h, x : x + w]
        lq = cv2.GaussianBlur(hq, (0, 0), 1.0)
        pair_id = f"group{k % 3}/{k:04d}"
        save_rgb(root / "lq" / (pair_id + extensions[k % 5]), lq)
        save_rgb(root / "hq" / (pair_id + extensions[(k + 2) % 5]), hq)
        ids.append(pair_id)
    return ids


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(GGTQC), *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=300
    )


def kill_after_rows(args: list[str], log: Path, rows: int, env: dict[str, str], timeout: float = 120) -> list[int]:
    """Run the ggtqc command and SIGKILL it once ``log`` holds ``rows`` lines; return its children's pids."""
    process = subprocess.Popen([str(GGTQC), *args], env={**os.environ, **env})
    wait_for_rows(log, rows, timeout, process)
    children = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/stat") if _parent_pid(p) == process.pid]
    process.send_signal(signal.SIGKILL)
    process.wait()
    return children


def wait_for_rows(log: Path, rows: int, timeout: float, process: subprocess.Popen) -> None:
    """Return once ``log`` holds ``rows`` lines, ``process`` has ended, or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and log.read_text().count("\n") >= rows:
            return
        time.sleep(0.02)


def _parent_pid(stat: Path) -> int | None:
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])  # the field after the state
    except (OSError, IndexError, ValueError):
        return None


def read_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]


def fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# --- filters on single pairs -----------------------------------------------------------


def scores(cls, lq, hq) -> dict[str, float]:
    """One pair's scores from a fresh ``cls`` filter, by field name."""
    from ggtqc.batch import Batch
    from ggtqc.filters import Scores

    out = cls().score(Batch(["p"], [np.ascontiguousarray(lq)], [np.ascontiguousarray(hq)]))
    values = out.values if isinstance(out, Scores) else out
    return {k: v[0] for k, v in values.items()}


def retoned(image, gamma=1.05):
    """An honest target's small tone change."""
    return np.clip(255 * (image / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)


BOX = (slice(100, 190), slice(300, 420))  # rows, columns of the planted region


def pasted(scene):
    hq = scene.copy()
    hq[BOX] = cv2.resize(photos()[0][180:330, 160:360], (120, 90))  # a face on the table
    return hq


def jpeg(image, quality):
    """``image`` through JPEG at ``quality``."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
