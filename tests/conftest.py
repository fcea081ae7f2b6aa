"""Fixtures shared by every test; the helpers they use live in tests/helpers.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# Triton kernels run in its interpreter on machines without a GPU. The variable must be set
# before any kernel is defined, so before ggtqc.kernels is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from tests.helpers import REPO  # noqa: E402  after the variable above


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory) -> Path:
    """The test plugin package, installed for real with pip into its own folder."""
    target = tmp_path_factory.mktemp("site")
    source = shutil.copytree(REPO / "tests" / "plugin_package", tmp_path_factory.mktemp("src") / "pkg")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return target


@pytest.fixture()
def plugin_env(plugin_site: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(plugin_site), os.environ.get("PYTHONPATH")]))}


@pytest.fixture(autouse=True)
def same_degradation_noise_in_every_test():
    """The sample pairs' degradations share one random generator: restart it for each test,
    so what a test sees does not depend on which tests ran before it."""
    module = sys.modules.get("examples.make_pairs")
    if module is not None:
        module.rng = np.random.default_rng(0)
