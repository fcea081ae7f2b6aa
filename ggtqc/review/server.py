"""The review server: the page, the pair images and a small JSON API, on the standard library.

Endpoints (all answer JSON except the page, its files and images; errors are
``{"error": message}`` with a 4xx/5xx status):

- ``GET /``: the page; ``GET /static/<file>``: its script and style.
- ``GET /api/state``: the run, the reviewer, the queues with how many pairs each holds, how
  many this reviewer labelled and where the first unlabelled one is; tags; agreement
  between reviewers; problems found in the results or labels file; the labels version.
- ``GET /api/queue?name=Q&offset=K&limit=L``: a slice of a queue: ids, verdicts, labels.
- ``GET /api/pair?queue=Q&index=K``: one pair: its row (verdict, reasons, scores), image and
  heatmap URLs or why an image cannot be shown, this reviewer's label and the others'.
- ``GET /image/lq/<n>``, ``/image/hq/<n>``: the pair's files as they are when a browser can
  show them (PNG, JPEG, WebP, BMP, GIF), else transcoded to PNG, as are images held in a
  Parquet pairs file; ``GET /heatmap/<filter>/<n>``.
- ``POST /api/label``: ``{id, queue, label, tags, scores_shown, version}``; the label is on
  disk before the answer. ``conflict`` in the answer says someone else (another tab or
  process) added labels since ``version``: both are kept; the last per pair and reviewer wins.

Only requests addressed to 127.0.0.1 or localhost are answered, so another web site open in
the same browser cannot post labels through it.
"""

from __future__ import annotations

import errno
import json
import mimetypes
import socket
import threading
import traceback
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ggtqc.images import DecodeError, decode_image
from ggtqc.labels import AUDIT, LABELS, TAGS, LabelError, make_label
from ggtqc.review.queues import ReviewError, RunIndex
from ggtqc.review.store import LabelStore, agreement

BROWSER_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".bmp": "image/bmp", ".gif": "image/gif"}
STATIC = {"index.html", "app.js", "app.css"}
MAX_BODY = 64 * 1024
AUDIT_NOTE = (
    "Calibration needs the audit queue: a uniformly random sample of the run. Labels from the "
    "review band and the other queues over-represent borderline pairs and cannot estimate how a whole run fares."
)


class ReviewApp:
    """What the handlers share: the run's index, its labels and who is reviewing."""

    def __init__(self, run: Path, reviewer: str, audit_size: int = 1000) -> None:
        self.index = RunIndex(run, audit_size)
        self.audit_size = audit_size
        self.generation = 0  # how often the index was rebuilt: the page starts over when it changes
        self.notices: list[str] = []
        self.reviewer = reviewer
        self.labels = LabelStore(run / LABELS)
        self.lock = threading.Lock()

    def current(self) -> None:
        """Rebuild the index when ``results.jsonl`` was replaced; labels are by id and stay."""
        if not self.index.replaced():
            return
        with self.lock:
            if not self.index.replaced():
                return
            try:
                index = RunIndex(self.index.run, self.audit_size)
            except ReviewError as e:
                self.notices = [f"results.jsonl was replaced and cannot be read yet ({e}); showing the old rows"]
                return
            self.index, self.generation = index, self.generation + 1
            self.notices = ["results.jsonl was rewritten (by 'ggtqc decide' or 'filter --fresh'?): the queues were rebuilt"]

    # -- reading -------------------------------------------------------------------------
    def labelled(self, queue: str, pair_id: str, mine: dict[str, dict[str, Any]]) -> bool:
        """Whether this reviewer labelled a pair for ``queue``. In the audit queue only labels
        given there count, so every audit pair is looked at in the audit's own order."""
        record = mine.get(pair_id)
        return record is not None and (queue != AUDIT or record["queue"] == AUDIT)

    def progress(self, queue: str) -> dict[str, Any]:
        ids = self.index.ids
        mine = self.labels.labels_of(self.reviewer)
        rows = self.index.queues[queue]
        done = [self.labelled(queue, ids[n], mine) for n in rows]
        first = next((k for k, d in enumerate(done) if not d), None)
        return {"size": len(rows), "labelled": sum(done), "first_unlabelled": first}

    def state(self) -> dict[str, Any]:
        self.current()
        with self.lock:
            self.labels.refresh()
            queues = [{"name": q, "title": self.index.title(q), **self.progress(q)} for q in self.index.queues]
            filters = self.index.config.get("filters", {})
            return {
                "run": str(self.index.run),
                "input": str(self.index.config.get("input")),
                "rows": len(self.index.ids),
                "reviewer": self.reviewer,
                "version": self.labels.version,
                "generation": self.generation,
                "queues": queues,
                "tags": list(TAGS),
                "thresholds": {
                    name: {f: {"threshold": t, "better": spec.get("better", {}).get(f)} for f, t in spec.get("thresholds", {}).items()}
                    for name, spec in filters.items()
                    if isinstance(spec, dict)
                },
                "agreement": agreement(self.labels.mine),
                "audit_seed": self.index.seed,
                "audit_note": AUDIT_NOTE,
                "problems": self.notices + self.index.problems[:20] + self.labels.notes()[:20],
            }

    def queue_slice(self, name: str, offset: int, limit: int) -> dict[str, Any]:
        self.current()
        rows = self._queue(name)
        with self.lock:
            self.labels.refresh()
            mine = self.labels.labels_of(self.reviewer)
            items = []
            for k in range(max(0, offset), min(len(rows), max(0, offset) + limit)):
                pair_id = self.index.ids[rows[k]]
                record = mine.get(pair_id)
                items.append({"index": k, "id": pair_id, "verdict": self.index.verdicts[rows[k]], "label": record["label"] if record else None})
        return {"name": name, "size": len(rows), "offset": offset, "items": items}

    def pair(self, queue: str, index: int) -> dict[str, Any]:
        self.current()
        rows = self._queue(queue)
        if not 0 <= index < len(rows):
            raise NotFound(f"queue {queue!r} has {len(rows)} pairs; there is no pair {index}")
        number = rows[index]
        try:
            row = self.index.row(number)
        except (OSError, ValueError) as e:
            raise NotFound(f"row {number} of the results cannot be read ({e})") from None
        images = {}
        for side in ("lq", "hq"):
            path = self.index.image_path(row, side)
            problem = None if path is None or not isinstance(path, Path) or path.is_file() else f"file not found: {row[side]}"
            images[side] = {"url": f"/image/{side}/{number}", "name": row.get(side), "problem": "no file in the row" if path is None else problem}
        heatmaps = {
            name: f"/heatmap/{urllib.parse.quote(name)}/{number}"
            for name, relative in (row.get("heatmaps") or {}).items()
            if isinstance(relative, str) and (self.index.run / relative).is_file()
        }
        with self.lock:
            self.labels.refresh()
            return {
                "queue": queue,
                "index": index,
                "number": number,
                "id": row["id"],
                "verdict": row.get("verdict"),
                "reasons": row.get("reasons", []),
                "failed": row.get("failed", []),
                "review": row.get("review", []),
                "scores": row.get("scores", {}),
                "heatmaps": heatmaps,
                "images": images,
                "mine": self.labels.labels_of(self.reviewer).get(row["id"]),
                "others": self.labels.others(row["id"], self.reviewer),
                "version": self.labels.version,
                "generation": self.generation,
                **self.progress(queue),
            }

    def image(self, side: str, number: int) -> tuple[bytes, str]:
        self.current()
        row = self._row(number)
        path = self.index.image_path(row, side)
        if path is None:
            raise NotFound(f"the row of {row['id']} names no {side.upper()} file")
        kind = BROWSER_TYPES.get(path.suffix.lower()) if isinstance(path, Path) else None  # a Parquet cell: as PNG
        try:
            if kind:
                return path.read_bytes(), kind
            image = decode_image(path)
        except FileNotFoundError:
            raise NotFound(f"{side.upper()} file not found: {path}") from None
        except DecodeError as e:
            raise NotFound(f"{side.upper()} file {path} cannot be shown: {e}") from None
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
        if not ok:
            raise NotFound(f"{side.upper()} file {path} could not be converted to PNG")
        return encoded.tobytes(), "image/png"

    def heatmap(self, name: str, number: int) -> tuple[bytes, str]:
        self.current()
        row = self._row(number)
        relative = (row.get("heatmaps") or {}).get(name)
        path = (self.index.run / relative).resolve() if isinstance(relative, str) else None
        if path is None or not path.is_relative_to(self.index.run.resolve()) or not path.is_file():
            raise NotFound(f"no {name} heatmap for {row['id']}")
        return path.read_bytes(), "image/png"

    # -- writing -------------------------------------------------------------------------
    def label(self, body: dict[str, Any]) -> dict[str, Any]:
        self.current()
        pair_id, queue = body.get("id"), body.get("queue")
        if pair_id not in self.index.number:
            raise BadRequest(f"no pair {pair_id!r} in this run")
        if queue not in self.index.queues:
            raise BadRequest(f"no queue {queue!r} in this run")
        tags = body.get("tags") or []
        if not isinstance(tags, list):
            raise BadRequest("'tags' must be a list of strings")
        with self.lock:
            self.labels.refresh()
            before = self.labels.labels_of(self.reviewer).get(pair_id)
            if before is not None and before["queue"] == AUDIT:
                queue_written = AUDIT  # a pair labelled in the audit sample stays in it
            else:
                queue_written = queue
            try:
                record = make_label(
                    pair_id, body.get("label"), self.reviewer, queue_written, tags, bool(body.get("scores_shown", True))
                )
            except LabelError as e:
                raise BadRequest(str(e)) from None
            conflict = body.get("version") is not None and body.get("version") != self.labels.version
            self.labels.append(record)
            return {"record": record, "version": self.labels.version, "generation": self.generation, "conflict": conflict, **self.progress(queue)}

    # -- helpers -------------------------------------------------------------------------
    def _queue(self, name: str) -> list[int]:
        if name not in self.index.queues:
            raise NotFound(f"no queue {name!r} (queues: {', '.join(self.index.queues)})")
        return self.index.queues[name]

    def _row(self, number: int) -> dict[str, Any]:
        if not 0 <= number < len(self.index.ids):
            raise NotFound(f"no row {number}")
        return self.index.row(number)


class NotFound(Exception):
    status = HTTPStatus.NOT_FOUND


class BadRequest(Exception):
    status = HTTPStatus.BAD_REQUEST


class Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  quiet: the page reports problems
        pass

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _answer(self, route) -> None:
        if urllib.parse.urlsplit("//" + (self.headers.get("Host") or "")).hostname not in ("127.0.0.1", "localhost"):
            self._send(HTTPStatus.FORBIDDEN, _json({"error": "open the review page at 127.0.0.1"}), "application/json")
            return
        try:
            route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the page went away mid-answer: nothing to tell it
        except (NotFound, BadRequest) as e:
            self._send(e.status, _json({"error": str(e)}), "application/json")
        except Exception as e:  # the page shows the message; the server keeps serving
            traceback.print_exc()
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, _json({"error": f"{type(e).__name__}: {e}"}), "application/json")

    def _get(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        app = self.server.app
        if url.path in ("/", "/index.html"):
            self._static("index.html")
        elif parts[0] == "static" and len(parts) == 2:
            self._static(parts[1])
        elif url.path == "/api/state":
            self._json(app.state())
        elif url.path == "/api/queue":
            self._json(app.queue_slice(query.get("name", ""), _int(query, "offset", 0), min(_int(query, "limit", 100), 1000)))
        elif url.path == "/api/pair":
            self._json(app.pair(query.get("queue", ""), _int(query, "index", 0)))
        elif parts[0] == "image" and len(parts) == 3 and parts[1] in ("lq", "hq"):
            self._send(HTTPStatus.OK, *app.image(parts[1], _number(parts[2])), cache=True)
        elif parts[0] == "heatmap" and len(parts) == 3:
            self._send(HTTPStatus.OK, *app.heatmap(parts[1], _number(parts[2])), cache=True)
        else:
            raise NotFound(f"nothing at {url.path}")

    def _post(self) -> None:
        if self.path != "/api/label":
            raise NotFound(f"nothing to post at {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            raise BadRequest("a label is a small JSON object")
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            raise BadRequest("the body is not JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        self._json(self.server.app.label(body))

    def _static(self, name: str) -> None:
        if name not in STATIC:
            raise NotFound(f"no page file {name!r}")
        data = resources.files("ggtqc.review").joinpath("static", name).read_bytes()
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self._send(HTTPStatus.OK, data, kind + "; charset=utf-8")

    def _json(self, value: Any) -> None:
        self._send(HTTPStatus.OK, _json(value), "application/json")

    def _send(self, status: int, data: bytes, kind: str, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "private, max-age=600" if cache else "no-store")
        self.end_headers()
        self.wfile.write(data)


class ReviewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: ReviewApp) -> None:
        self.app = app
        self.connections: set[socket.socket] = set()
        super().__init__(address, Handler)

    def process_request(self, request, client_address) -> None:
        self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        self.connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """Stop listening and end kept-alive connections too: a stopped server answers nothing."""
        super().server_close()
        for connection in list(self.connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


def make_server(run: Path, reviewer: str, port: int = 8765, audit_size: int = 1000, host: str = "127.0.0.1") -> ReviewServer:
    """A server for ``run`` (not yet serving: call ``serve_forever``); port 0 picks a free one."""
    app = ReviewApp(run, reviewer, audit_size)
    try:
        return ReviewServer((host, port), app)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ReviewError(f"port {port} is in use (another review server?); choose another with --port, or --port 0 for any free one") from None
        raise


def _int(query: dict[str, str], key: str, default: int) -> int:
    try:
        return int(query.get(key, default))
    except ValueError:
        raise BadRequest(f"{key} must be a whole number") from None


def _number(text: str) -> int:
    if not text.isdigit():
        raise NotFound(f"no row {text!r}")
    return int(text)


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
