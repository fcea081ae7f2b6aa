"""Small hand-written runs for the review tests, and a server running in a thread."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from tests.helpers import photos, save_rgb
from ggtqc.review import make_server


def make_run(root: Path, count: int = 12) -> Path:
    """A pairs folder and a run of ``count`` rows in every verdict, with real image files.

    Rows cycle review, reject (color.cast), reject (ssim.ssim), accept, error; the pair
    ``p0001`` has a heatmap; ``p0002`` has a TIFF target (browsers cannot show TIFF);
    ``p0006`` has lost its HQ file.
    """
    pairs, run = root / "pairs", root / "run"
    run.mkdir(parents=True)
    sources = photos()
    rows = []
    for k in range(count):
        pair_id = f"p{k:04d}"
        photo = sources[k % len(sources)]
        hq = np.ascontiguousarray(photo[32 : 32 + 192, 48 : 48 + 256])
        lq = cv2.resize(cv2.GaussianBlur(hq, (0, 0), 1.5), (128, 96), interpolation=cv2.INTER_AREA)
        hq_name = f"hq/{pair_id}.tif" if k == 2 else f"hq/{pair_id}.png"
        save_rgb(pairs / f"lq/{pair_id}.jpg", lq)
        save_rgb(pairs / hq_name, hq)
        kind = ["review", "reject-color", "reject-ssim", "accept", "error"][k % 5]
        scores = {"color": {"cast": round(2.0 + k * 0.7, 2)}, "ssim": {"ssim": round(0.9 - k * 0.01, 3)}}
        row = {"id": pair_id, "lq": f"lq/{pair_id}.jpg", "hq": hq_name, "verdict": kind.split("-")[0], "reasons": [], "scores": scores}
        if kind == "review":
            row["review"] = ["color.cast"]
            row["reasons"] = [f"color.cast {scores['color']['cast']} within review margin of 6.5"]
        elif kind == "reject-color":
            row["failed"] = ["color.cast"]
            row["reasons"] = [f"color.cast {scores['color']['cast']} > 6.5"]
        elif kind == "reject-ssim":
            row["failed"] = ["ssim.ssim"]
            row["reasons"] = [f"ssim.ssim {scores['ssim']['ssim']} < 0.95"]
        elif kind == "error":
            row["reasons"] = ["lq: truncated file"]
            row["scores"] = {}
        if k == 1:
            heat = cv2.applyColorMap(np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1)), cv2.COLORMAP_INFERNO)
            (run / "heatmaps/color").mkdir(parents=True)
            cv2.imwrite(str(run / f"heatmaps/color/{pair_id}.png"), heat)
            row["heatmaps"] = {"color": f"heatmaps/color/{pair_id}.png"}
        rows.append(row)
    (pairs / "hq/p0006.png").unlink(missing_ok=True)
    write_rows(run, rows)
    config = {
        "input": str(pairs),
        "filters": {"color": {"thresholds": {"cast": 6.5}, "better": {"cast": "lower"}}, "ssim": {"thresholds": {"ssim": 0.95}, "better": {"ssim": "higher"}}},
    }
    (run / "run.json").write_text(json.dumps(config))
    return run


def write_rows(run: Path, rows: list[dict]) -> None:
    (run / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


class Client:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def get(self, path: str, headers: dict | None = None) -> tuple[int, bytes, str]:
        request = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers.get("Content-Type", "")

    def json(self, path: str) -> dict:
        status, body, _ = self.get(path)
        assert status == 200, body
        return json.loads(body)

    def post(self, path: str, value: object) -> tuple[int, dict]:
        data = json.dumps(value).encode()
        request = urllib.request.Request(self.base + path, data=data, headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


@contextmanager
def serving(run: Path, reviewer: str = "ana", audit_size: int = 1000):
    """A review server on a free port, in a thread, for the duration of a ``with``."""
    server = make_server(run, reviewer, port=0, audit_size=audit_size)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, Client(server.url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def make_large_run(root: Path, count: int) -> Path:
    """A run of ``count`` rows in all verdicts whose pairs share five pairs of image files."""
    run = make_run(root, count=5)
    base = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    rows = []
    for k in range(count):
        row = dict(base[k % 5])
        row.pop("heatmaps", None)
        row["id"] = f"many/{k:05d}"
        if row["verdict"] == "error":
            row["verdict"], row["reasons"] = "accept", []
        rows.append(row)
    write_rows(run, rows)
    return run
