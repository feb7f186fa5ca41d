import json

import pytest

import repsearch.config as C
from repsearch.errors import UserError


def test_every_preset_resolves_and_round_trips():
    for name in C.list_presets():
        cfg = C.resolve(name)
        again = C.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert again == cfg, name


def test_overrides_dotted_lists_and_indices():
    cfg = C.resolve("quickstart", ["search.generations=[1,2,3,4]", "search.alpha.3=0.5", "data.name=mnist",
                                   "learn.supervise=[1,2]", "baseline.augment=true"])
    assert cfg.search.generations == [1, 2, 3, 4]
    assert cfg.search.alpha[3] == 0.5 and isinstance(cfg.search.alpha[3], float)
    assert cfg.data.name == "mnist" and cfg.learn.supervise == [1, 2] and cfg.baseline.augment is True


def test_preset_overrides_defaults():
    assert C.resolve("paper-cifar10").search.pop_size == 240
    assert C.resolve("paper-mnist").search.alpha == [0.1] * 4
    assert C.resolve("paper-cifar10").learn.groups_per_block == 3


@pytest.mark.parametrize("override, message", [
    ("search.popsize=3", "did you mean 'pop_size'"),
    ("nope", "expected key=value"),
    ("search.top_k=abc", "expected an integer"),
    ("data.name=imagenet", "data.name must be one of"),
    ("learn.select=bestest", "learn.select must be one of auto, best, last"),
    ("baseline.memory_format=nhwc", "baseline.memory_format must be one of"),
    ("search.generations=[]", "needs one value per search point"),
    ("search.fast=false", "has moved: use engine.fast"),
    ("learn.lr=-1", "learn.lr must be > 0"),
    ("search.alpha=[0.1,NaN,0.1,0.1]", "search.alpha must be finite"),
    ("baseline.weight_decay=Infinity", "baseline.weight_decay must be finite"),
    ("engine.memory_gb=0", "engine.memory_gb must be > 0"),
    ("baseline.momentum=1", "baseline.momentum must be <= 0.999"),
    ("search.generations=[10,-1,5,5]", "search.generations must be >= 0"),
    ("model.name=nope", "model.name must be one of airbench, mlp, resnet or MODULE:FACTORY"),
    ("search.alpha.7=1", "out of range"),
])
def test_bad_overrides_say_what_is_wrong(override, message):
    with pytest.raises(UserError, match=message):
        C.resolve("quickstart", [override])


def test_unknown_preset():
    with pytest.raises(UserError, match="unknown preset 'nope'; choose one of"):
        C.resolve("nope")


# What `--overlay paper_literal` may change: the deviations docs/method.md lists, never scale.
LITERAL_KEYS = {"model.bn_running_stats", "search.target_space", "search.smooth", "search.blur_border", "search.bn", "search.noise",
                "search.dtype", "search.target_ce", "search.extra_generations", "learn.init", "learn.reduction",
                "learn.head_lr_scale", "learn.weight_decay", "learn.warmup", "learn.final_lr", "learn.bias_scaler",
                "baseline.weight_decay", "baseline.warmup", "baseline.final_lr", "baseline.bias_scaler",
                "learn.select", "baseline.select", "learn.head_refit_l2", "learn.target_searches"}


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


@pytest.mark.parametrize("preset", C.list_presets())
def test_paper_literal_overlay_changes_the_deviations_and_nothing_else(preset):
    ours, literal = _flat(C.resolve(preset).to_dict()), _flat(C.resolve(preset, overlays=["paper_literal"]).to_dict())
    changed = {k for k in ours if ours[k] != literal[k]}
    assert changed <= LITERAL_KEYS, changed - LITERAL_KEYS
    assert {"search.target_space", "search.smooth", "learn.reduction", "learn.head_lr_scale"} <= changed
    assert literal["search.target_space"] == "raw" and literal["learn.reduction"] == "sum"
    assert literal["model.widths"] == ours["model.widths"] and literal["learn.epochs"] == ours["learn.epochs"]


def test_every_overlay_key_is_in_the_method_docs_deviation_table():
    from pathlib import Path
    doc = (Path(__file__).parents[1] / "docs" / "method.md").read_text()
    table = doc[doc.index("## Deviations from the paper's text"):]
    for key in _flat(C.load_preset("paper_literal", "overlay")):
        assert f"`{key}`" in table, f"{key} is set by paper_literal but not documented"


def test_overlays_apply_after_the_preset_and_before_overrides():
    cfg = C.resolve("cpu-mnist", ["search.smooth=noise"], overlays=["paper_literal"])
    assert cfg.search.smooth == "noise" and cfg.search.target_space == "raw" and cfg.search.pop_size == 12
    with pytest.raises(UserError, match="unknown overlay 'nope'"):
        C.resolve("cpu-mnist", overlays=["nope"])
