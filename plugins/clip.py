"""``clip``: do LQ and HQ mean the same thing? Cosine of open_clip image embeddings.

Pixel statistics miss semantic errors: a face turned into another face, a sign with other
words, an object swapped for a look-alike. CLIP embeddings carry meaning. Scores:

- ``similarity``: cosine between the whole LQ's and the whole HQ's embeddings;
- ``worst_crop``: the lowest cosine over a ``grid x grid`` set of matching crops (3x3), so a
  small replaced object is not averaged away.

Weights: ``model`` (``ViT-B-32``) with ``pretrained`` (``laion2b_s34b_b79k``), looked for in
``checkpoint`` (a local file), then the Hugging Face cache (open_clip's own download place),
then ``$GGTQC_CACHE/clip/<model>-<pretrained>.bin``; never downloaded here, never random.
``model_config`` registers a custom open_clip model config (JSON) first. Images go through
the model's own preprocessing (resize, crop, normalisation); embeddings are computed in
batches of ``batch_size`` on the run's device (half precision on a GPU) and kept in the
batch cache under ``("clip", model, pair id)`` for other filters.

Cost: ViT-B-32 embeds ~21 images/s on a 2-core CPU (``benchmarks/``), and a pair with the
3x3 grid needs 20 embeddings; on a CPU set ``grid = 0`` (whole images only) or use a GPU.

The thresholds (0.8 and 0.7) are first values from how CLIP image-image similarity behaves
(the same scene degraded vs restored sits well above 0.8; unrelated photos near 0.5); they
are not calibrated here, where no pretrained weights can be fetched.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from ggtqc import Field, Filter, hookimpl
from ggtqc.weights import find_weights

# Hugging Face repositories of common pretrained tags, so locating weights needs no import.
HUB = {("ViT-B-32", "laion2b_s34b_b79k"): "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"}
HUB_FILES = ("open_clip_pytorch_model.bin", "open_clip_model.safetensors")


class Clip(Filter):
    name = "clip"
    version = "1"
    cost = 30.0
    gpu = "optional"
    fields = (
        Field("similarity", "higher", 0.8, "cosine of LQ and HQ CLIP image embeddings"),
        Field("worst_crop", "higher", 0.7, "lowest cosine over matching grid crops"),
    )
    options = {
        "model": "ViT-B-32",
        "pretrained": "laion2b_s34b_b79k",
        "checkpoint": "",
        "model_config": "",
        "grid": 3,
        "batch_size": 64,
    }

    def weights(self):
        s = self.settings
        repo = HUB.get((s["model"], s["pretrained"]))
        if repo is None and s["pretrained"]:
            repo = self._hub_repo()
        hub = (repo, HUB_FILES) if repo else None
        description = f"open_clip {s['model']} {s['pretrained'] or '(custom)'} weights"
        return [find_weights(description, str(s["checkpoint"]), hub, f"clip/{s['model']}-{s['pretrained'] or 'custom'}.bin")]

    def _hub_repo(self) -> str | None:
        import open_clip

        self._register_config()
        config = open_clip.get_pretrained_cfg(self.settings["model"], self.settings["pretrained"]) or {}
        return (config.get("hf_hub") or "").strip("/") or None

    def _register_config(self) -> None:
        if self.settings["model_config"]:
            import open_clip

            open_clip.add_model_config(self.settings["model_config"])

    def setup(self, device: torch.device) -> None:
        import open_clip

        self._register_config()
        (weight,) = self.weights()
        if weight.found is None:  # the host checks first; this guards direct use
            raise FileNotFoundError(f"{weight.description} not found (looked in: {', '.join(map(str, weight.searched))})")
        model, _, preprocess = open_clip.create_model_and_transforms(
            self.settings["model"], pretrained=str(weight.found), device=device
        )
        self.model = model.eval()
        self.preprocess = preprocess
        self.device = device

    def embed(self, images: list[Image.Image], map_: Callable = map) -> torch.Tensor:
        """Unit-length embeddings of PIL images, float32 on the CPU.

        ``map_`` runs the preprocessing (the host's threads, from ``Batch.map``): its PIL
        resizing costs ~1 ms of CPU per view, 20 views a pair, while a GPU embeds a view in
        a fraction of that.
        """
        out = []
        size = int(self.settings["batch_size"])
        for start in range(0, len(images), size):
            pixels = torch.stack(list(map_(self.preprocess, images[start : start + size]))).to(self.device)
            with torch.no_grad(), torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
                features = self.model.encode_image(pixels)
            out.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu())
        return torch.cat(out)

    def score(self, batch):
        grid = int(self.settings["grid"])
        missing = [i for i, pair_id in enumerate(batch.ids) if self._key(pair_id) not in batch.cache]
        views = [view for i in missing for view in (*crops(batch.lq[i], grid), *crops(batch.hq[i], grid))]
        if views:
            embeddings = self.embed(views, batch.map).view(len(missing), 2, 1 + grid * grid, -1)
            for k, i in enumerate(missing):
                batch.cache[self._key(batch.ids[i])] = embeddings[k]
        similarity, worst = [], []
        for pair_id in batch.ids:
            lq, hq = batch.cache[self._key(pair_id)]
            cosines = (lq * hq).sum(dim=-1)
            similarity.append(float(cosines[0]))
            worst.append(float(cosines[1:].min()) if grid > 0 else float(cosines[0]))
        return {"similarity": similarity, "worst_crop": worst}

    def _key(self, pair_id: str) -> tuple:
        return ("clip", self.settings["model"], self.settings["pretrained"], int(self.settings["grid"]), pair_id)


def crops(image: np.ndarray, grid: int) -> list[Image.Image]:
    """The whole image, then ``grid x grid`` crops at the same relative places in any image."""
    whole = Image.fromarray(np.ascontiguousarray(image))
    height, width = image.shape[:2]
    views = [whole]
    for row in range(grid):
        for col in range(grid):
            box = (col * width // grid, row * height // grid, (col + 1) * width // grid, (row + 1) * height // grid)
            views.append(whole.crop(box))
    return views


@hookimpl
def ggtqc_register_filters(register):
    register(Clip)
