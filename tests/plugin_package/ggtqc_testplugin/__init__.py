"""A third-party plugin as a user would write one; the tests install it with pip."""

import time

import numpy as np

from ggtqc import Field, Filter, hookimpl


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


@hookimpl
def ggtqc_register_filters(register):
    register(MeanGap)
