"""search.precision = "bf16": candidates scored under bfloat16 autocast (runs on CPU too), within a
stated tolerance of fp32: per candidate |CE_bf16 - CE_fp32| <= 0.05 + 5% of CE_fp32, and a whole
search's mean searched CE within 30% of the fp32 search's."""
import torch

from repsearch.data import prepare
from repsearch.search.engine import initial_population
from repsearch.search.noise import PerImageRNG
from repsearch.search.pool import open_search, run_search

from .test_search import search_setup, tiny


def test_bf16_scores_are_fp32_scores_within_tolerance():
    cfg = tiny("data.subset=40")
    problem, rows, x, y = search_setup(cfg)
    pop = initial_population(problem, x[:8], 6, 0.1, PerImageRNG(0, range(8)), normalize=True)
    fp32 = problem.score(0, pop, y[:8])
    problem.precision = "bf16"
    bf16 = problem.score(0, pop, y[:8])
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)  # it did run in bf16
    assert ((bf16 - fp32).abs() <= 0.05 + 0.05 * fp32).all()


def test_a_bf16_search_runs_compiled_and_lands_near_the_fp32_search(tmp_path):
    ce = {}
    for precision in ("fp32", "bf16"):
        cfg = tiny("data.subset=40", f"search.precision={precision}", "engine.compile=[0]")
        _, summary = run_search(prepare(cfg), cfg, tmp_path / precision)
        ce[precision] = summary["searched_ce_mean"]
    assert abs(ce["bf16"] - ce["fp32"]) <= 0.3 * ce["fp32"], ce
    assert open_search(cfg, prepare(cfg)).problem.precision == "bf16"
