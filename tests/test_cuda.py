"""The CUDA path against the CPU path. CI has no GPU, so these skip there; they are run on a lent
GPU (benchmarks/cuda_session.sh) and their outcome is recorded in benchmarks/RESULTS.md."""
import json

import pytest
import torch

from repsearch.data import prepare
from repsearch.search.counter_rng import CounterRNG
from repsearch.search.engine import initial_population
from repsearch.search.pool import run_search

from .conftest import cli_in_process
from .test_search import search_setup, tiny

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none)")


def test_counter_streams_are_the_same_numbers_on_cuda_and_cpu():
    """Counter streams are integer hashes: a CUDA search draws what a CPU search draws."""
    ids = [3, 17, 40_001]
    cpu, gpu = CounterRNG(5, ids), CounterRNG(5, ids, "cuda")
    assert torch.equal(cpu.randint(1000, (7,)), gpu.randint(1000, (7,)).cpu())
    assert torch.allclose(cpu.randn((4, 5)), gpu.randn((4, 5)).cpu(), atol=1e-5)


def test_candidates_score_the_same_on_cuda_and_cpu():
    """The same candidates scored on both devices (TF32 convolutions allow ~1e-3 relative)."""
    cfg = tiny("data.subset=40", "search.rng=counter")
    problem, _, x, y = search_setup(cfg)
    pop = initial_population(problem, x[:8], 6, 0.1, CounterRNG(0, range(8)), normalize=True)
    cpu = problem.score(0, pop, y[:8])
    problem.model.to("cuda")
    gpu = problem.score(0, pop.cuda(), y[:8].cuda()).cpu()
    assert ((gpu - cpu).abs() <= 2e-3 + 2e-3 * cpu).all(), (gpu - cpu).abs().max()


@pytest.mark.parametrize("extra", [[], ["engine.compile=[0,1]"], ["search.precision=bf16"]])
def test_a_cuda_search_lands_near_the_cpu_search(tmp_path, extra):
    """Eager, compiled and bf16 searches on CUDA against the eager fp32 CPU search: rounding may
    flip a selection, so the searched CE agrees in the mean, not image by image."""
    ce = {}
    for device in ("cpu", "cuda"):
        cfg = tiny("data.subset=40", "search.rng=counter", *(extra if device == "cuda" else []))
        cfg.device = device
        _, summary = run_search(prepare(cfg), cfg, tmp_path / device)
        ce[device] = summary["searched_ce_mean"]
    assert abs(ce["cuda"] - ce["cpu"]) <= 0.3 * ce["cpu"], ce


def test_the_pipeline_runs_on_cuda_end_to_end(tmp_path):
    out = tmp_path / "run"
    r = cli_in_process("run", "--preset", "quickstart", "--device", "cuda", "--no-progress", "--out", out,
                       "--set", "search.rng=counter", "--set", "search.generations=[6,4,4,3]",
                       "--set", "learn.epochs=8", "--set", "baseline.epochs=8", "--set", "learn.head_refit_l2=0.01")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sgd_test_accuracy"] > 0.8 and summary["search_test_accuracy"] > 0.5, summary
    env = json.loads((out / "environment.json").read_text())
    assert env["cuda_device"] == torch.cuda.get_device_name(), env
