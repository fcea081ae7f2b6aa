"""Filters that fail on purpose, for the Ray engine's fault tests.

A module of its own (not the test file) so that Ray workers can import the classes the
driver pickled: the tests give the workers this folder on their ``PYTHONPATH``.
"""

import os

import numpy as np

from ggtqc import Field, Filter, hookimpl


class RaisesOnBad(Filter):
    """Raises on any batch holding a pair whose id contains ``bad``."""

    name = "raises"
    version = "1"
    fields = (Field("gap", "lower", 40.0, "|mean(HQ) - mean(LQ)|"),)

    def score(self, batch):
        if any("bad" in pair_id for pair_id in batch.ids):
            raise ValueError("planted failure")
        return {"gap": [abs(float(np.mean(h)) - float(np.mean(l))) for l, h in zip(batch.lq, batch.hq)]}


class DiesOnBad(RaisesOnBad):
    """Ends its worker process on a pair whose id contains ``bad``, as a crash in native code
    or an out-of-memory kill would: nothing Python can catch."""

    name = "dies"

    def score(self, batch):
        if any("bad" in pair_id for pair_id in batch.ids):
            os._exit(1)
        return super().score(batch)


class FaultPlugin:
    @hookimpl
    def ggtqc_register_filters(self, register):
        register(RaisesOnBad)
        register(DiesOnBad)
