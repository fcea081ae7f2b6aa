"""A third-party plugin as a user would write one; the tests install it with pip."""

import os
import time
from pathlib import Path

import numpy as np

from ggtqc import Field, Filter, WeightFile, hookimpl


class MeanGap(Filter):
    """Absolute difference of mean brightness between LQ and HQ, slowed on purpose."""

    name = "meangap"
    version = "2"
    cost = 5.0
    fields = (Field("gap", "lower", 40.0, "|mean(HQ) - mean(LQ)|"),)
    options = {"delay": 0.0}

    def score(self, batch):
        time.sleep(float(self.settings["delay"]))
        return {"gap": [abs(float(np.mean(h)) - float(np.mean(l))) for l, h in zip(batch.lq, batch.hq)]}


class Learned(Filter):
    """Needs a model file it cannot find unless GGTQC_TESTPLUGIN_MODEL points at one."""

    name = "learned"
    version = "1"
    cost = 10.0
    fields = (Field("p", "higher", 0.5),)

    def weights(self):
        path = Path(os.environ.get("GGTQC_TESTPLUGIN_MODEL", "/nonexistent/learned.pt"))
        return [WeightFile("learned.pt", (path,), path if path.is_file() else None)]

    def setup(self, device):
        (weight,) = self.weights()
        if weight.found.read_bytes() != b"weights":
            raise ValueError(f"{weight.found} is not a learned.pt checkpoint")

    def score(self, batch):
        return {"p": [1.0] * len(batch)}


@hookimpl
def ggtqc_register_filters(register):
    register(MeanGap)
    register(Learned)
