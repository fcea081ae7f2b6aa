"""Where model weights are looked for, and fetching them where a network exists.

Filters never download inside constructors. A filter's ``weights()`` names each file it
needs and the places it looks, in this order: an explicit path from its options, the
Hugging Face cache (where open_clip and ``ggtqc weights --fetch`` put hub files), and the
ggtqc cache folder (``$GGTQC_CACHE``, default ``~/.cache/ggtqc``). A file in none of them
stops the run before any work, with every place listed.
"""

from __future__ import annotations

import os
from pathlib import Path

from ggtqc.filters import WeightFile

CACHE_VARIABLE = "GGTQC_CACHE"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "ggtqc").expanduser()


def hub_cache_path(repo: str, filename: str) -> tuple[Path, bool]:
    """Where the Hugging Face cache holds ``repo/filename``, and whether it is there."""
    from huggingface_hub import constants, try_to_load_from_cache

    cached = try_to_load_from_cache(repo, filename)
    if isinstance(cached, str):
        return Path(cached), True
    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots" / "*"
    return folder / filename, False


def find_weights(description: str, explicit: str, hub: tuple[str, tuple[str, ...]] | None, cache_name: str) -> WeightFile:
    """Look for one weights file in the documented places, first found wins."""
    searched: list[Path] = []
    found: Path | None = None
    if explicit:
        path = Path(explicit).expanduser()
        searched.append(path)
        found = path if path.is_file() else None
    if hub is not None and found is None:
        repo, filenames = hub
        for filename in filenames:
            path, present = hub_cache_path(repo, filename)
            searched.append(path)
            if present:
                found = path
                break
    if found is None:
        path = cache_dir() / cache_name
        searched.append(path)
        found = path if path.is_file() else None
    source = f"hf://{hub[0]}/{hub[1][-1]}" if hub is not None else ""
    return WeightFile(description, tuple(searched), found, source)


def fetch(weight: WeightFile) -> Path:
    """Download a hub-hosted file into the Hugging Face cache; raises with a reason if it cannot."""
    if not weight.source.startswith("hf://"):
        raise RuntimeError(f"{weight.description}: no download source; place the file at {weight.searched[-1]}")
    from huggingface_hub import hf_hub_download

    repo, _, filename = weight.source[len("hf://") :].rpartition("/")
    return Path(hf_hub_download(repo, filename))
