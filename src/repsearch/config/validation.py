"""What a config must satisfy before anything runs: allowed choices, numeric ranges (finite,
in range), and the checks that need no model. Checks that need the model's number of search points
(per-point list lengths, engine.compile, learn.supervise) run when it is built (search.preflight).
Every failure is one `UserError` naming the key."""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from repsearch.errors import UserError

if TYPE_CHECKING:
    from .schema import Config, ModelConfig, SearchConfig

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "cifar10-jpeg")

CHOICES = {
    "data.name": DATASETS,
    "search.smooth": ("noise", "child"),
    "search.blur_border": ("valid", "zero"),
    "search.target_space": ("normalized", "raw"),
    "search.bn": ("calibrated", "batch"),
    "search.dtype": ("float16", "float32"),
    "search.noise": ("bank", "fresh"),
    "search.rng": ("generator", "counter"),
    "search.precision": ("fp32", "bf16"),
    "baseline.init": ("dirac", "default"),
    "learn.init": ("dirac", "default"),
    "learn.loss": ("mse", "class_weighted"),
    "learn.reduction": ("mean", "sum"),
    "learn.select": ("auto", "best", "last"),
    "learn.entropy_estimator": ("paper", "offdiagonal"),
    "baseline.select": ("auto", "best", "last"),
    "learn.memory_format": ("auto", "channels_last", "contiguous"),
    "baseline.memory_format": ("auto", "channels_last", "contiguous"),
    "learn.precision": ("fp32", "bf16"),
    "baseline.precision": ("fp32", "bf16"),
}
from .per_point import PER_POINT  # noqa: E402  (the per-point settings, one value per search point)


def validate(cfg: Config) -> None:
    """What can be checked before a model exists. Checks that need the model's number of search
    points (per-point list lengths, engine.compile, learn.supervise) run when it is built."""
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in allowed:
            raise UserError(f"{key} must be one of {', '.join(allowed)}; got '{value}'")
    validate_numbers(cfg)
    validate_model(cfg.model)
    validate_search(cfg.search)
    for key in ("compile", "fused"):
        if any(p < 0 for p in getattr(cfg.engine, key)):
            raise UserError(f"engine.{key} lists search points (0 = the first stage's output); got {getattr(cfg.engine, key)}")
    validate_tiling(cfg.engine.fused_tiling)
    if not 0 < cfg.data.val_fraction < 1:
        raise UserError(f"data.val_fraction must be in (0, 1); got {cfg.data.val_fraction}")
    for t, name in ((cfg.baseline, "baseline"), (cfg.learn, "learn")):
        if t.epochs < 1 or t.batch_size < 1:
            raise UserError(f"{name}.epochs and {name}.batch_size must be >= 1")
    if not cfg.baseline.depths or min(cfg.baseline.depths) < 1:
        raise UserError(f"baseline.depths needs positive depths (groups per block); got {cfg.baseline.depths}")
    if min(cfg.learn.supervise, default=0) < 0:
        raise UserError(f"learn.supervise lists stages (0 = the first); got {cfg.learn.supervise}")
    if cfg.learn.groups_per_block < 1:
        raise UserError("learn.groups_per_block must be >= 1")
    bad = set(cfg.run.supervision_variants) - {"all", "skip0"}
    if bad:
        raise UserError(f"run.supervision_variants takes 'all' and 'skip0'; got {sorted(bad)}")
    if cfg.run.seeds < 1:
        raise UserError("run.seeds must be >= 1")
    validate_augmentation(cfg)


DIGIT_DATASETS = ("mnist", "digits")


def validate_augmentation(cfg: Config) -> None:
    """Augmentation flips images: not for digits (a flipped digit is another digit or none)."""
    asked = [k for k, on in (("learn.augment", cfg.learn.augment), ("baseline.augment", cfg.baseline.augment),
                             ("run.augment_variants", True in cfg.run.augment_variants)) if on]
    if asked and cfg.data.name in DIGIT_DATASETS and not cfg.data.allow_digit_flips:
        raise UserError(f"{asked[0]} asks for augmentation on {cfg.data.name}, which flips images left-right: a "
                        "flipped digit is another digit or none, and the paper does not augment MNIST; leave it off "
                        "(or set data.allow_digit_flips=true to flip digits anyway)")


# Ranges of numeric settings: (low, high, low inclusive); every float must also be finite.
RANGES = {
    "search.alpha": (0, None, True), "search.boost": (0, None, False), "search.blur": (0, None, True),
    "search.generations": (0, None, True), "search.target_ce": (0, None, True), "search.extra_generations": (0, None, True),
    "search.init_noise": (0, None, True), "search.calib_images": (1, None, True),
    "engine.memory_gb": (0, None, False), "engine.chunk_images": (0, None, True), "data.subset": (0, None, True),
    "model.whiten_eps": (0, None, False), "model.bn_eps": (0, None, False), "model.bn_momentum": (0, 1, True),
    **{f"{t}.{k}": r for t in ("learn", "baseline") for k, r in {
        "lr": (0, None, False), "momentum": (0, 0.999, True), "weight_decay": (0, None, True),
        "bias_scaler": (0, None, False), "warmup": (0, 1, True), "final_lr": (0, None, True),
        "label_smoothing": (0, 1, True)}.items()},
    **{f"{t}.{k}": (0, None, True) for t in ("learn", "baseline") for k in ("patience", "patience_min_val", "select_min_val", "min_steps", "max_steps")},
    "learn.kl_weight": (0, None, True), "learn.entropy_images": (2, None, True), "learn.head_lr_scale": (0, None, False),
    "learn.head_refit_l2": (0, None, True), "learn.target_searches": (1, None, True), "search.stream": (0, None, True),
}


def validate_numbers(cfg: Config) -> None:
    """NaN, infinities and out-of-range values are refused with the key that holds them."""
    for section in dataclasses.fields(cfg):
        part = getattr(cfg, section.name)
        if not dataclasses.is_dataclass(part):
            continue
        for f in dataclasses.fields(part):
            key, value = f"{section.name}.{f.name}", getattr(part, f.name)
            values = value if isinstance(value, list) else [value]
            nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if any(isinstance(v, float) and not math.isfinite(v) for v in nums):
                raise UserError(f"{key} must be finite; got {value}")
            low, high, inclusive = RANGES.get(key, (None, None, True))
            for v in nums:
                if low is not None and (v < low or (v == low and not inclusive)):
                    raise UserError(f"{key} must be {'>=' if inclusive else '>'} {low}; got {value}")
                if high is not None and v > high:
                    raise UserError(f"{key} must be <= {high}; got {value}")


def validate_model(m: ModelConfig) -> None:
    from repsearch.models import BUILTIN, is_user_model
    if m.name not in BUILTIN and not is_user_model(m.name):
        raise UserError(f"model.name must be one of {', '.join(BUILTIN)} or MODULE:FACTORY (your own staged "
                        f"model); got '{m.name}'")
    if not m.widths or min(m.widths) < 1:
        raise UserError(f"model.widths needs one positive width per stage; got {m.widths}")


def validate_search(s: SearchConfig) -> None:
    for name in PER_POINT:
        if not getattr(s, name):
            raise UserError(f"search.{name} needs one value per search point (or one for all); got []")
    if not 0 < s.top_k <= s.pop_size:
        raise UserError(f"search.top_k must be in 1..pop_size ({s.pop_size}); got {s.top_k}")
    if s.n_explore < 0 or s.n_refine < 1:
        raise UserError("search.n_explore must be >= 0 and search.n_refine >= 1")
    if s.top_k + s.n_explore + s.n_refine != s.pop_size:  # checked before a run directory is made
        raise UserError(f"search.pop_size ({s.pop_size}) must equal top_k + n_explore + n_refine "
                        f"({s.top_k + s.n_explore + s.n_refine}), as the paper's 240 = 20 + 100 + 120")


def check_supervise(supervise, num_stages: int) -> list[int]:
    """`learn.supervise` against the model's number of stages ([] = every stage)."""
    supervise = list(supervise)
    if any(not 0 <= s < num_stages for s in supervise):
        raise UserError(f"learn.supervise lists stages 0-{num_stages - 1} of this model; got {supervise}")
    return supervise


def validate_tiling(tiling: str) -> None:
    """engine.fused_tiling is "" or CHANNELSxWARPS: powers of two (0 channels: the default tile)."""
    parts = tiling.split("x") if tiling else []
    ok = not tiling or (len(parts) == 2 and all(p.isdigit() for p in parts)
                        and all(int(p) & (int(p) - 1) == 0 for p in parts) and 1 <= int(parts[1]) <= 16)
    if not ok:
        raise UserError(f"engine.fused_tiling is CHANNELSxWARPS with powers of two, warps 1-16 (e.g. 32x8), "
                        f"or empty for the default; got '{tiling}'")
