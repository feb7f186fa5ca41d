import pytest

from repsearch.baseline import run_baseline
from repsearch.config import resolve
from repsearch.data import prepare

from .conftest import need


def test_baseline_on_digits_reaches_90_percent():
    cfg = resolve("quickstart", ["baseline.epochs=15"])
    summary = run_baseline(prepare(cfg), cfg, progress=False)
    assert summary["test_accuracy"] >= 0.90, summary


@pytest.mark.slow
@need("fashion-mnist")
def test_baseline_on_real_fashion_mnist(data_root):
    cfg = resolve("cpu-fashion", ["data.subset=6000", "baseline.epochs=3", "model.widths=[32,32,32]"],
                  **{"data.root": data_root})
    summary = run_baseline(prepare(cfg), cfg, progress=False)
    assert summary["test_accuracy"] >= 0.80, summary


@pytest.mark.slow
@need("mnist")
def test_baseline_on_real_mnist_reaches_97_percent(data_root):
    cfg = resolve("cpu-mnist", ["data.subset=10000", "baseline.epochs=3", "model.widths=[32,32,32]"],
                  **{"data.root": data_root})
    summary = run_baseline(prepare(cfg), cfg, progress=False)
    assert summary["test_accuracy"] >= 0.97, summary


def test_early_stopping_and_a_step_budget(tmp_path):
    """patience: training stops `patience` epochs after the best validation accuracy (here the
    first: a learning rate too small to change anything); min_steps raises the epochs of a small
    training set to that many optimizer steps."""
    import json
    from repsearch.runs import RunDir
    from repsearch.config import resolve
    from repsearch.data import prepare
    from repsearch.baseline import train_baseline
    cfg = resolve("quickstart", ["model.name=mlp", "model.widths=[16,16,16]", "data.subset=200", "baseline.epochs=30",
                                 "baseline.patience=2", "baseline.lr=1e-12"])
    _, res = train_baseline(prepare(cfg), cfg, 1, RunDir(tmp_path / "p", {}, "cpu"), progress=False)
    assert res["best_epoch"] == 1 and res["epochs_run"] == 3
    assert len((tmp_path / "p" / "metrics.jsonl").read_text().splitlines()) == 3
    cfg = resolve("quickstart", ["model.name=mlp", "model.widths=[16,16,16]", "data.subset=200", "baseline.epochs=1",
                                 "baseline.min_steps=10", "baseline.batch_size=100"])
    _, res = train_baseline(prepare(cfg), cfg, 1, RunDir(tmp_path / "s", {}, "cpu"), progress=False)
    assert res["epochs_run"] == 5  # 184 training images: 2 steps per epoch
    epochs = [json.loads(x)["epoch"] for x in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4, 5]
