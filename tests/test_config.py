import json

import pytest

from repsearch import config as C
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
