"""A run's configuration: `Config()` defaults, then a preset file from `presets/`, then overlays,
then `--set key=value` overrides (dotted keys, list items by index: `search.generations.0=50`).
The resolved config is written into every run directory so the run can be repeated exactly.
"""
from __future__ import annotations

import copy
import tomllib
from pathlib import Path

from repsearch.errors import UserError

from .overrides import apply_dict, apply_key, parse_override
from .schema import Config
from .validation import validate

PRESET_DIR = Path(__file__).parent / "presets"
OVERLAY_DIR = PRESET_DIR / "overlays"  # partial configs any preset can take (`--overlay paper_literal`)


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def list_overlays() -> list[str]:
    return sorted(p.stem for p in OVERLAY_DIR.glob("*.toml"))


def load_preset(name: str, kind: str = "preset") -> dict:
    folder, names = (PRESET_DIR, list_presets) if kind == "preset" else (OVERLAY_DIR, list_overlays)
    path = folder / f"{name}.toml"
    if not path.exists():
        raise UserError(f"unknown {kind} '{name}'; choose one of: {', '.join(names())}")
    with open(path, "rb") as f:
        return tomllib.load(f)


# The paper's settings for each dataset (Appendix A): MNIST's (A.5) also stand for digits and for
# Fashion-MNIST, which the paper does not use; CIFAR-10's for its JPEG copy.
PAPER_PRESET = {"mnist": "paper-mnist", "fashion-mnist": "paper-mnist", "digits": "paper-mnist",
                "cifar10": "paper-cifar10", "cifar10-jpeg": "paper-cifar10", "cifar100": "paper-cifar100"}
# What `--overlay paper_literal` keeps of a preset: the data (which images, how many) and the
# network's width, and the settings that never change a result (the engine, the loggers).
KEPT_BY_PAPER_LITERAL = ("data", "model.widths", "engine", "log")


def paper_protocol(cfg: Config) -> dict:
    """Every setting of the paper's preset for cfg's dataset that cfg's preset changed, but for
    KEPT_BY_PAPER_LITERAL: population, generations, epochs, SGD depths, learning rates, early
    stopping, step caps, the head refit... all reset to Appendix A's (the overlay's TOML then sets
    the places where our defaults read the paper's text otherwise)."""
    paper = Config()
    apply_dict(paper, load_preset(PAPER_PRESET[cfg.data.name]))
    return {section: {k: v for k, v in fields.items() if f"{section}.{k}" not in KEPT_BY_PAPER_LITERAL}
            for section, fields in paper.to_dict().items()
            if isinstance(fields, dict) and section not in KEPT_BY_PAPER_LITERAL}


def resolve(preset: str | None = None, overrides: list[str] = (), overlays: list[str] = (), **direct) -> Config:
    """Defaults <- preset <- overlays (in order) <- `--set` overrides <- direct CLI flags (seed,
    device, data root). `paper_literal` first brings every setting to the paper's for the preset's
    dataset (`paper_protocol`), then reads its text literally (the overlay's TOML)."""
    cfg = Config()
    if preset:
        apply_dict(cfg, load_preset(preset))
    for name in overlays:
        if name == "paper_literal":
            apply_dict(cfg, paper_protocol(cfg))
        apply_dict(cfg, load_preset(name, "overlay"))
    given = []
    for item in overrides:
        key, value = parse_override(item)
        apply_key(cfg, key.split("."), value, key)
        given.append(key)
    for key, value in direct.items():
        if value is not None:
            apply_key(cfg, key.split("."), value, key)
    validate(cfg)
    return _explicit(cfg, given)


def _explicit(cfg: Config, keys) -> Config:
    """Record which settings the user gave (`--set`), beyond the preset's: a per-point list given
    explicitly is used as given, a preset's is fitted to the model (`per_point`). An item of a list
    (`search.generations.0`) makes the list explicit. Not a config field: never in config.json."""
    lists = {k.rsplit(".", 1)[0] if k.rsplit(".", 1)[-1].isdigit() else k for k in keys}
    cfg.explicit = frozenset(getattr(cfg, "explicit", frozenset())) | lists
    return cfg


def with_overrides(cfg: Config, overrides: list[str], sections: tuple[str, ...]) -> Config:
    """A copy of `cfg` with `--set`-style overrides, each confined to `sections` (for settings that
    may differ between stages of one run, e.g. later rounds' search, where the images may not)."""
    out = copy.deepcopy(cfg)
    for item in overrides:
        key, value = parse_override(item)
        if key.split(".")[0] not in sections:
            raise UserError(f"'{item}': only {', '.join(s + '.*' for s in sections)} keys may differ here")
        apply_key(out, key.split("."), value, key)
    validate(out)
    return _explicit(out, [parse_override(item)[0] for item in overrides])


def from_dict(d: dict) -> Config:
    cfg = Config()
    apply_dict(cfg, d)
    validate(cfg)
    return cfg
