"""repsearch as a library: search targets for any staged model and learn from them, no CLI needed.

    import torch
    from repsearch import api

    targets = api.search_targets(my_model, images, labels, search={"pop_size": 12, "top_k": 2,
                                 "n_explore": 5, "n_refine": 5, "generations": [40, 20, 20, 5]})
    learner, stats = api.learn_from_targets(my_learner, images, labels, targets, learn={"epochs": 20})

`my_model` is any staged model (docs/method.md, "The model contract"); it is copied, never
changed. `images` are the normalized inputs (N, *input_shape), `labels` (N,) int64. Settings are
the `search`, `engine` and `learn` config sections as dicts (defaults in `repsearch.config`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from repsearch.config import EngineConfig, LearnConfig, SearchConfig
from repsearch.config.overrides import apply_dict
from repsearch.config.validation import validate_search
from repsearch.learn.hooks import ProgressBar
from repsearch.learn.regression import fit_to_targets
from repsearch.models import init_from_data
from repsearch.models.staged import check_staged, normalize_stages
from repsearch.search.driver import Searcher
from repsearch.search.hooks import Progress
from repsearch.search.network import prepare_network
from repsearch.search.problem import StagedProblem
from repsearch.search.strategy import Params


@dataclass
class Targets:
    """The searched representation of every image at every search point (logits last)."""
    reps: list[torch.Tensor]  # (N, *S) per search point
    ce: torch.Tensor  # (N,) final best cross-entropy
    evaluations: torch.Tensor  # (N,) candidate evaluations spent per image
    target_space: str = "normalized"
    curves: dict = field(default_factory=dict)  # per point: mean best CE per generation

    def as_dict(self) -> dict[str, torch.Tensor]:
        """By name, as the target cache stores them: block0..block{S-1}, logits."""
        return {**{f"block{i}": r for i, r in enumerate(self.reps[:-1])}, "logits": self.reps[-1]}


def _section(cls, overrides):
    if isinstance(overrides, cls):
        return copy.deepcopy(overrides)
    section = cls()
    apply_dict(section, dict(overrides or {}))
    return section


@torch.no_grad()
def search_targets(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *, search=None, engine=None,
                   seed: int = 0, image_ids=None, calibration_images: torch.Tensor | None = None,
                   start: torch.Tensor | None = None, progress: bool = False) -> Targets:
    """Search representations for every image (paper Section 3.1) with a copy of `model` as the
    search network: its data-dependent init (if any) and BatchNorm calibration are done on
    `calibration_images` (default: `images`). `image_ids` seed each image's random stream
    (default 0..N-1): the same id and seed always give the same search. `start`: the population
    each image begins the first search point from, (N, P, *S0) or (N, *S0), instead of noisy
    copies of its input (for instance a learned network's own representations); it should live
    in the search's space (per-sample normalized when `search.target_space` is "normalized")."""
    s, e = _section(SearchConfig, search), _section(EngineConfig, engine)
    validate_search(s)
    calib = images if calibration_images is None else calibration_images
    net, shapes = prepare_network(model, calib, s, e, images.device, data_init=True)
    searcher = Searcher(StagedProblem(net, shapes, precision=s.precision), Params.from_config(s, shapes), e, seed,
                        images.device.type)
    ids = list(range(len(images))) if image_ids is None else [int(i) for i in image_ids]
    bar = Progress(searcher.params.max_evaluations_per_image * len(images), enabled=progress)

    def load(a, b):
        return images[a:b], labels[a:b], ids[a:b], None if start is None else start[a:b]

    found = searcher.search_all(len(images), load, hooks=(bar,))
    bar.close()
    return Targets(found.reps, found.ce, found.evaluations, s.target_space, found.curves)


def learn_from_targets(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, targets: Targets, *,
                       learn=None, val: tuple | None = None, supervise=None, augment: bool = False, seed: int = 0,
                       progress: bool = False) -> tuple[torch.nn.Module, dict]:
    """Train `model` (a staged model of the same stage shapes; fresh or warm-started, trained in
    place) to regress its stage outputs to `targets` and its head to the searched logits (paper
    Section 4.2). With `val` = (images, labels) the best epoch by validation accuracy is kept."""
    lc = _section(LearnConfig, learn)
    check_staged(model, tuple(images.shape[1:]), targets.reps[-1].shape[1], name="learner")
    if targets.target_space == "normalized":
        normalize_stages(model)
    init_from_data(model, images.cpu())
    device = images.device
    tg = {k: v.to(device, torch.float32) for k, v in targets.as_dict().items()}
    return fit_to_targets(model, images, labels, tg, lc, val=val, supervise=supervise, augment=augment, seed=seed,
                          hooks=(ProgressBar(),) if progress else ())
