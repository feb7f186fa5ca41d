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
    cfg = C.resolve("quickstart", ["search.generations=[1,2,3,4]", "search.alpha.3=0.5", "data.name=fashion-mnist",
                                   "learn.supervise=[1,2]", "baseline.augment=true"])
    assert cfg.search.generations == [1, 2, 3, 4]
    assert cfg.search.alpha[3] == 0.5 and isinstance(cfg.search.alpha[3], float)
    assert cfg.data.name == "fashion-mnist" and cfg.learn.supervise == [1, 2] and cfg.baseline.augment is True


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
    ("search.patience=[0,0,0,2]", "has moved: use search.extra_generations"),
    ("run.augment_variants=[false,true]", "flipped digit is another digit or none"),  # quickstart: digits
    ("learn.augment=true", "learn.augment asks for augmentation on digits"),
    ("learn.lr=-1", "learn.lr must be > 0"),
    ("search.alpha=[0.1,NaN,0.1,0.1]", "search.alpha must be finite"),
    ("baseline.weight_decay=Infinity", "baseline.weight_decay must be finite"),
    ("engine.memory_gb=0", "engine.memory_gb must be > 0"),
    ("baseline.momentum=1", "baseline.momentum must be <= 0.999"),
    ("search.generations=[10,-1,5,5]", "search.generations must be >= 0"),
    ("model.name=nope", "model.name must be one of airbench, mlp, resnet or MODULE:FACTORY"),
    ("search.alpha.7=1", "out of range"),
    ("engine.fused_tiling=24x4", "engine.fused_tiling is CHANNELSxWARPS with powers of two"),
    ("engine.fused_tiling=32x32", "warps 1-16"),
    ("engine.fused_tiling=fast", "got 'fast'"),
])
def test_bad_overrides_say_what_is_wrong(override, message):
    with pytest.raises(UserError, match=message):
        C.resolve("quickstart", [override])


def test_unknown_preset():
    with pytest.raises(UserError, match="unknown preset 'nope'; choose one of"):
        C.resolve("nope")


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


# What `--overlay paper_literal` may leave as the preset has it: the data the preset is for and
# its network's width (the rule), and how it runs and logs (never part of a result).
MAY_KEEP = ("data", "model.widths", "engine", "log")


def literal_departures(preset: str, kept=MAY_KEEP) -> dict:
    """Derived from the code, not from a list: the settings in which `preset --overlay paper_literal`
    differs from the paper's own preset for its dataset under the same overlay, other than what the
    overlay may keep (MAY_KEEP); {} when the overlay made the preset the paper's."""
    from repsearch.config.assemble import PAPER_PRESET
    keeps = lambda k: any(k == x or k.startswith(x + ".") for x in kept)
    literal = _flat(C.resolve(preset, overlays=["paper_literal"]).to_dict())
    paper = _flat(C.resolve(PAPER_PRESET[literal["data.name"]], overlays=["paper_literal"]).to_dict())
    return {k: (literal[k], paper[k]) for k in literal if not keeps(k) and literal[k] != paper[k]}


@pytest.mark.parametrize("preset", C.list_presets())
def test_paper_literal_makes_any_preset_the_papers_but_for_its_data_and_width(preset):
    assert literal_departures(preset) == {}
    ours, literal = _flat(C.resolve(preset).to_dict()), _flat(C.resolve(preset, overlays=["paper_literal"]).to_dict())
    assert {k: v for k, v in literal.items() if k.startswith("data.")} == {k: v for k, v in ours.items() if k.startswith("data.")}
    assert literal["model.widths"] == ours["model.widths"] and literal["search.target_space"] == "raw"


def test_a_departure_the_overlay_left_alone_would_be_caught(monkeypatch):
    """If the overlay forgot one of a preset's departures (here cpu-mnist's learner step cap: the
    paper trains every epoch), the check above names it with both values."""
    import repsearch.config.assemble as resolve_module
    full = resolve_module.paper_protocol

    def leaky(cfg):
        out = full(cfg)
        del out["learn"]["max_steps"]
        return out

    monkeypatch.setattr(resolve_module, "paper_protocol", leaky)
    assert literal_departures("cpu-mnist") == {"learn.max_steps": (1100, 0)}


def test_every_overlay_key_is_in_the_method_docs_deviation_table():
    from pathlib import Path
    doc = (Path(__file__).parents[1] / "docs" / "method.md").read_text()
    table = doc[doc.index("## Deviations from the paper's text"):]
    for key in _flat(C.load_preset("paper_literal", "overlay")):
        assert f"`{key}`" in table, f"{key} is set by paper_literal but not documented"


def test_overlays_apply_after_the_preset_and_before_overrides():
    cfg = C.resolve("cpu-mnist", ["search.smooth=noise"], overlays=["paper_literal"])
    assert cfg.search.smooth == "noise" and cfg.search.target_space == "raw" and cfg.search.pop_size == 240
    with pytest.raises(UserError, match="unknown overlay 'nope'"):
        C.resolve("cpu-mnist", overlays=["nope"])


def test_digits_flip_only_when_asked_for_explicitly():
    cfg = C.resolve("quickstart", ["learn.augment=true", "data.allow_digit_flips=true"])
    assert cfg.learn.augment and cfg.data.allow_digit_flips
    assert C.resolve("cpu-fashion", ["run.augment_variants=[false,true]"]).run.augment_variants == [False, True]
    with pytest.raises(UserError, match="data.allow_digit_flips=true"):
        C.resolve("cpu-mnist", ["baseline.augment=true"])


@pytest.mark.parametrize("preset", [p for p in C.list_presets() if not p.startswith("paper-")])
def test_a_presets_sgd_is_on_equal_terms_with_its_learner(preset):
    """The paper's rule, in every preset of ours: SGD's depth chosen by validation among 1x, 2x and 3x
    wherever the learner is deeper than 1x, and the learner's epoch budget (the same epochs, and a
    step cap worth the same epochs at SGD's batch)."""
    b, learn = C.resolve(preset).baseline, C.resolve(preset).learn
    assert b.epochs == learn.epochs
    assert b.max_steps * b.batch_size == learn.max_steps * learn.batch_size
    assert b.depths == ([1, 2, 3] if learn.groups_per_block > 1 else [1])


def test_a_fused_tiling_reaches_the_kernels_plan():
    from repsearch.search import fused
    assert C.resolve("quickstart", ["engine.fused_tiling=32x8"]).engine.fused_tiling == "32x8"
    plan = fused.Plan(8, 4, 4, (), None, None)
    assert (fused.tiled(plan, "32x8").channel_tile, fused.tiled(plan, "32x8").num_warps) == (32, 8)
    assert fused.tiled(plan, "") is plan
