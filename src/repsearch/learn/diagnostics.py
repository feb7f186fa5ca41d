"""Per-epoch measurements of a model being trained, on validation images against their searched
targets: cosines (Figure 5), collision entropies (Figures 6-7), linear probes, and the untrained
control. Both the learner and the SGD baseline report them, so their curves compare."""
from __future__ import annotations

import hashlib

import torch

from repsearch.data import Prepared, normalize
from repsearch.store.cache import TargetCache

from . import measures as analysis


class Diagnostics:
    """Per-epoch measurements on validation images against their searched targets."""

    def __init__(self, prep: Prepared, cache: TargetCache, probe_every: int = 0, probe_images: int = 5000,
                 entropy_images: int = 1000, entropy_estimator: str = "paper"):
        self.prep = prep
        self.val_x, self.val_y = prep.images("val")
        self.val_t = cache.load(cache.rows_for(prep.split.val.numpy()), prep.device, torch.float32)
        train_idx = prep.split.train[:probe_images]
        self.probe_x, self.probe_y = (t.to(prep.device) for t in _normalized(prep, train_idx))
        self.probe_every, self.entropy_images = probe_every, entropy_images
        self.entropy_diagonal = entropy_estimator == "paper"
        self._controls: dict[str, dict] = {}
        tr = cache.load(cache.rows_for(train_idx.numpy()), prep.device, torch.float32)
        k, self.stages = prep.dataset.num_classes, range(cache.num_stages)
        self.baselines = {l: analysis.predictability_baselines(tr[f"block{l}"], self.probe_y, self.val_t[f"block{l}"],
                                                               self.val_y, k) for l in self.stages}

    @classmethod
    def for_learner(cls, prep: Prepared, cache: TargetCache, lc) -> "Diagnostics":
        """The diagnostics a learn section asks for (probes, entropy images and estimator)."""
        return cls(prep, cache, lc.probe_every, lc.probe_images, lc.entropy_images, lc.entropy_estimator)

    def cosines(self, model, outs=None) -> dict:
        outs = analysis.block_outputs(model, self.val_x) if outs is None else outs
        return {f"cos_block{l}": analysis.cosine(outs[l], self.val_t[f"block{l}"]).mean().item() for l in self.stages}

    def entropies(self, outs) -> dict:
        """Within/between-class collision entropy per block (Figures 6-7) on the first
        `entropy_images` validation images (the Gram matrix is quadratic in them)."""
        n = self.entropy_images
        rec = {}
        for l in self.stages:
            h = analysis.class_collision_entropy(outs[l][:n], self.val_y[:n], self.entropy_diagonal)
            rec.update({f"hcoll_within_block{l}": h["within"], f"hcoll_between_block{l}": h["between"]})
        return rec

    def probes(self, model, val_outputs=None) -> dict:
        tr = analysis.block_outputs(model, self.probe_x)
        va = analysis.block_outputs(model, self.val_x) if val_outputs is None else val_outputs
        k = self.prep.dataset.num_classes
        return {f"probe_block{l}": analysis.linear_probe(analysis.probe_features(tr[l]), self.probe_y,
                                                         analysis.probe_features(va[l]), self.val_y, k)
                for l in self.stages}

    def final(self, model) -> dict:
        """Cosines and probes of a trained model from one forward over the validation images."""
        va = analysis.block_outputs(model, self.val_x)
        return {**self.cosines(model, va), **self.probes(model, va)}

    def control(self, untrained) -> dict:
        """The untrained model's probes ("untrained_probe_blockL"), computed once per distinct
        initial weights: every learning variant of a seed starts from the same ones."""
        key = _weights_digest(untrained)
        if key not in self._controls:
            self._controls[key] = {f"untrained_{k}": v for k, v in self.probes(untrained).items()}
        return self._controls[key]

    def measure(self, loop, epoch: int, val_outputs=None) -> dict:
        """The training loop's "measure" hook: `hook` on the loop's model."""
        return self.hook(loop.model, epoch, val_outputs=val_outputs)

    def hook(self, model, epoch: int, val_outputs=None) -> dict:
        """Per epoch (epoch 0: before any step): cosines to the searched targets, collision
        entropies, and every `probe_every` epochs the linear probes. `val_outputs` = (images,
        stage outputs) from the training loop's validation pass: reused when those images are
        this object's validation images, recomputed otherwise."""
        seen_x, seen = val_outputs if val_outputs is not None else (None, None)
        same = seen is not None and seen_x.shape == self.val_x.shape and torch.equal(seen_x, self.val_x)
        outs = seen if same else analysis.block_outputs(model, self.val_x)
        rec = {**self.cosines(model, outs), **self.entropies(outs)}
        if self.probe_every and epoch > 0 and epoch % self.probe_every == 0:
            rec.update(self.probes(model))
        return rec


def _weights_digest(model) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _normalized(prep: Prepared, idx):
    return normalize(prep.dataset.train_x[idx], prep.mean, prep.std), prep.dataset.train_y[idx]
