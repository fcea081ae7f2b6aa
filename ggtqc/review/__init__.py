"""``ggtqc review RUN``: a local web page for people to verify pairs and label them.

- :mod:`ggtqc.review.queues`: the run's rows indexed once (byte offsets and verdicts, not
  whole rows) and the queues a reviewer walks: the review band, rejections by field,
  accepted pairs, and a seeded, uniformly random audit sample.
- :mod:`ggtqc.review.store`: the labels file kept current in memory (tail-read, so labels
  from another tab or process show up) and agreement between reviewers.
- :mod:`ggtqc.review.server`: the HTTP server (standard library) and its small JSON API;
  ``static/`` holds the page, plain HTML, CSS and JavaScript.
"""

from ggtqc.review.queues import ReviewError, RunIndex
from ggtqc.review.server import make_server

__all__ = ["ReviewError", "RunIndex", "make_server"]
