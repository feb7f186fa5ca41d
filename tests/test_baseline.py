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
    cfg = resolve("cpu-fashion", ["data.subset=10000", "baseline.epochs=3", "model.widths=[32,32,32]"],
                  **{"data.root": data_root})
    summary = run_baseline(prepare(cfg), cfg, progress=False)
    assert summary["test_accuracy"] >= 0.80, summary


@pytest.mark.slow
@need("mnist")
def test_baseline_on_real_mnist_reaches_97_percent(data_root):
    cfg = resolve("cpu-mnist", ["data.subset=20000", "baseline.epochs=4", "model.widths=[32,32,32]"],
                  **{"data.root": data_root})
    summary = run_baseline(prepare(cfg), cfg, progress=False)
    assert summary["test_accuracy"] >= 0.97, summary
