import pytest

from repsearch.config import resolve
from repsearch.data import prepare
from repsearch.learn.baseline import run_baseline

from .conftest import need


@pytest.mark.parametrize("preset, dataset, subset, at_least", [
    ("quickstart", None, None, 0.90),
    pytest.param("cpu-fashion", "fashion-mnist", 6000, 0.80, marks=[pytest.mark.slow, need("fashion-mnist")]),
    # lr 4.0 once died here at 20,000 images (one seed in four; docs/method.md, "Optimization")
    pytest.param("cpu-mnist", "mnist", 10000, 0.97, marks=[pytest.mark.slow, need("mnist")]),
])
def test_the_sgd_baseline_reaches_its_accuracy(data_root, preset, dataset, subset, at_least):
    sets = ["baseline.epochs=15"] if dataset is None else [f"data.subset={subset}", "baseline.epochs=3", "baseline.depths=[1]",
                                                            "model.widths=[32,32,32]"]
    cfg = resolve(preset, sets, **{"data.root": data_root})
    summary = run_baseline(prepare(cfg), cfg)
    assert summary["test_accuracy"] >= at_least, summary


def test_early_stopping_and_a_step_budget(tmp_path):
    """patience: training stops `patience` epochs after the best validation accuracy (here the
    first: a learning rate too small to change anything), only with patience_min_val validation
    images or more; with fewer than select_min_val, `select = "auto"` keeps the last epoch, "best" the
    best; min_steps raises the epochs of a small training set to that many optimizer steps."""
    import json

    from repsearch.config import resolve
    from repsearch.data import prepare
    from repsearch.learn.baseline import train_baseline
    from repsearch.store.rundir import RunDir
    stalled = ["model.name=mlp", "model.widths=[16,16,16]", "data.subset=200", "baseline.epochs=30",
               "baseline.patience=2", "baseline.lr=1e-12"]
    cfg = resolve("quickstart", [*stalled, "baseline.patience_min_val=16", "baseline.select_min_val=16"])  # 16 val images
    _, res = train_baseline(prepare(cfg), cfg, 1, RunDir(tmp_path / "p", {}, "cpu"))
    assert res["best_epoch"] == 1 and res["epochs_run"] == 3
    assert len((tmp_path / "p" / "metrics.jsonl").read_text().splitlines()) == 3
    # the two thresholds apart: early stopping on (16 >= 16), the kept epoch by select_min_val: the last
    cfg = resolve("quickstart", [*stalled, "baseline.patience_min_val=16", "baseline.select_min_val=17"])
    _, res = train_baseline(prepare(cfg), cfg, 1, None)
    assert res["epochs_run"] == 3 and res["best_epoch"] == 3
    cfg = resolve("quickstart", [*stalled, "baseline.patience_min_val=17"])  # too few to stop or select on
    _, res = train_baseline(prepare(cfg), cfg, 1, None)
    assert res["epochs_run"] == 30 and res["best_epoch"] == 30  # select = "auto": the last epoch's weights
    cfg = resolve("quickstart", [*stalled, "baseline.patience_min_val=17", "baseline.select=best"])
    _, res = train_baseline(prepare(cfg), cfg, 1, None)
    assert res["epochs_run"] == 30 and res["best_epoch"] == 1
    cfg = resolve("quickstart", ["model.name=mlp", "model.widths=[16,16,16]", "data.subset=200", "baseline.epochs=1",
                                 "baseline.min_steps=10", "baseline.batch_size=100"])
    _, res = train_baseline(prepare(cfg), cfg, 1, RunDir(tmp_path / "s", {}, "cpu"))
    assert res["epochs_run"] == 5  # 184 training images: 2 steps per epoch
    epochs = [json.loads(x)["epoch"] for x in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4, 5]


def test_a_step_cap_scales_epochs_down_with_the_training_set():
    """max_steps lowers `epochs` to the whole epochs its steps cover (rounded up); min_steps wins
    over it; both off leaves `epochs` alone."""
    from types import SimpleNamespace

    from repsearch.learn.optim import planned_epochs

    def tc(**k):
        return SimpleNamespace(**{"epochs": 20, "min_steps": 0, "max_steps": 0, **k})
    assert planned_epochs(tc(), 221) == 20
    assert planned_epochs(tc(max_steps=2200), 221) == 10  # 55,200 images at batch 250: 2,210 steps
    assert planned_epochs(tc(max_steps=2200), 111) == 20  # 27,600 images: 2,220 steps, the tuned budget
    assert planned_epochs(tc(max_steps=2200), 37) == 20  # a smaller set keeps `epochs`
    assert planned_epochs(tc(max_steps=10, min_steps=50), 5) == 10


def test_speed_options_change_the_speed_not_the_training():
    """baseline/learn.memory_format and .compile are speed only: channels_last weights (checked on
    the conv weights' strides) and a torch.compile'd step train to the same weights as the
    contiguous eager step, within float rounding; a bad memory format is a user error."""
    import torch

    from repsearch.errors import UserError
    from repsearch.learn.baseline import train_baseline
    from repsearch.learn.runtime import prepare_model_for_device
    small = ["model.widths=[8,8,8]", "data.subset=300", "baseline.epochs=2", "baseline.batch_size=64"]

    def trained(*extra):
        cfg = resolve("quickstart", [*small, *extra])
        model, res = train_baseline(prepare(cfg), cfg, 1, None)
        return model, res

    eager, _ = trained()
    cl, _ = trained("baseline.memory_format=channels_last")
    convs = [m.weight for m in cl.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1 and m.weight.shape[-1] > 1]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in convs)
    compiled, res = trained("baseline.compile=true")
    assert res["steady_images_per_s"] > 0
    ref = eager.state_dict()
    for other in (cl, compiled):
        for k, v in other.state_dict().items():
            assert torch.allclose(v.float(), ref[k].float(), rtol=1e-3, atol=1e-4), k
    with pytest.raises(UserError, match="memory_format"):
        prepare_model_for_device(torch.nn.Linear(2, 2), "cpu", "nhwc")


def test_training_is_fp32_on_every_device_unless_bf16_is_asked_for():
    """bf16 autocast killed cpu-mnist's SGD on 3 of 4 seeds on an H200 (benchmarks/RESULTS.md):
    it must never be switched on by the device alone."""
    import torch

    from repsearch.config import resolve
    from repsearch.learn.runtime import autocast_for
    cfg = resolve("cpu-mnist", [])
    assert cfg.baseline.precision == cfg.learn.precision == "fp32"
    assert autocast_for("cuda:0", cfg.baseline.precision) is None and autocast_for("cpu") is None
    with autocast_for("cpu", "bf16")():
        assert torch.is_autocast_enabled("cpu")
