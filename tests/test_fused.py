"""The fused generation (search/fused.py) against the eager path, on the CPU under Triton's
interpreter: the same children from the same draws, the same CE within a stated tolerance, and
the same selection over whole searches."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before Triton sees the kernel (read at decoration)

import pytest  # noqa: E402
import torch  # noqa: E402

from repsearch.config import resolve  # noqa: E402
from repsearch.data import prepare  # noqa: E402
from repsearch.models.staged import sample_normalize  # noqa: E402
from repsearch.search import strategy  # noqa: E402
from repsearch.search.engine import search_images  # noqa: E402
from repsearch.search.noise import NoiseBank, per_image_rng  # noqa: E402
from repsearch.search.pool import images_for, open_search  # noqa: E402
from repsearch.search.strategy import State  # noqa: E402

pytest.importorskip("triton")
from repsearch.search import fused  # noqa: E402

CE_TOLERANCE = 2e-4  # absolute, nats: fp32 summation order differs between the kernel and torch
SETS = ["model.widths=[8,8,8]", "search.pop_size=12", "search.top_k=3", "search.n_explore=4", "search.n_refine=5",
        "search.generations=[3,2,2,2]", "search.blur=[2,1,1,0]", "search.alpha=[0.3,0.2,0.1,0.1]", "data.subset=40",
        "search.rng=counter"]


@pytest.fixture(scope="module")
def setup():
    cfg = resolve("quickstart", SETS)
    prep = prepare(cfg)
    searcher = open_search(cfg, prep)
    rows = prep.split.pool[:5]
    x, y = images_for(prep, rows)
    return cfg, prep, searcher, rows, x, y


def _population(problem, point, b, p, seed=0):
    g = torch.Generator().manual_seed(seed)
    return sample_normalize(torch.randn(b * p, *problem.shapes[point], generator=g)).reshape(b, p, *problem.shapes[point])


@pytest.mark.slow  # the Triton interpreter: ~17 s here, in `make test` (CI), not the edit-test loop
@pytest.mark.parametrize("point", [0, 1, 2])
def test_the_kernel_builds_the_children_ask_builds_and_scores_them_as_the_network_does(setup, point):
    """Same draws -> the same children as strategy.ask (fp32 rounding), their channel std as
    operators.member_std, and their CE as StagedProblem.score (points 0-1: through one or two
    pooling stages; point 2: 1x1 maps straight into the head)."""
    cfg, _, searcher, rows, _, y = setup
    problem, params = searcher.problem, searcher.params
    plan = fused.plan_for(problem.model, point, problem.shapes)
    assert plan is not None and len(plan.stages) == 2 - point
    pp = params.points[point]
    pop = _population(problem, point, len(y), params.pop_size)
    ce = problem.score(point, pop, y)
    bank = NoiseBank.shared(cfg.seed)
    state = State(pop, ce, per_image_rng("counter", cfg.seed, rows.tolist()))
    draws = strategy.draw(params, pp, state, bank)
    settings = strategy.operator_settings(params, pp, bank, True)
    source = strategy.noise_source(params, pp, pop.shape, bank, False)
    parents, parent_ce, children = strategy.ask(pop, ce, source, draws, **settings)
    new_pop, new_ce = fused.generation(plan, pop, ce, y, source, draws, **settings)
    k, ne = params.top_k, params.n_explore
    assert torch.equal(new_pop[:, :k], parents) and torch.equal(new_ce[:, :k], parent_ce)
    assert (new_ce[:, k:] - problem.score(point, children, y)).abs().max() < CE_TOLERANCE
    # written: every explorer (refiners breed from them) and the refiners the search reads next
    assert torch.allclose(new_pop[:, k:k + ne], children[:, :ne], atol=1e-5)
    kept = torch.cat([strategy.parent_order(new_ce, k), new_ce.argmin(1, keepdim=True)], 1)
    rows = torch.arange(len(y))[:, None]
    assert (kept >= k + ne).any(), "the fixture keeps no refiner: the check below would be empty for them"
    everyone = torch.cat([parents, children], 1)
    assert torch.allclose(new_pop[rows, kept], everyone[rows, kept], atol=1e-5), (new_pop[rows, kept] -
                                                                                 everyone[rows, kept]).abs().max()
    # the explorers' channel std the refiners were bred with
    chstd = fused.build_and_score(plan, parents, strategy.select_parents(pop, ce, k, "map")[2],
                                     draws.picks_explore[:, 0], draws.picks_explore[:, 1], source,
                                     draws.noise[:, :ne], settings["alpha"] * settings["boost"], y).std
    from repsearch.search import operators as ops
    assert torch.allclose(chstd, ops.member_std(children[:, :ne], "map"), atol=1e-5)


@pytest.mark.slow
def test_a_fused_search_selects_what_the_eager_search_selects(setup):
    """Whole searches of 5 images through every point, fused at the three map points or not:
    the same evaluations, the same CE per image within the tolerance, the same representations."""
    cfg, _, searcher, rows, x, y = setup
    eager = search_images(searcher.problem, x, y, rows.tolist(), searcher.params, cfg.engine, cfg.seed)
    cfg.engine.fused = [0, 1, 2]
    try:
        fast = search_images(searcher.problem, x, y, rows.tolist(), searcher.params, cfg.engine, cfg.seed)
    finally:
        cfg.engine.fused = []
    assert torch.equal(fast.evaluations, eager.evaluations)
    assert (fast.ce - eager.ce).abs().max() < CE_TOLERANCE
    for a, b in zip(fast.reps, eager.reps):
        assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()


def test_points_the_kernel_cannot_score_fall_back(setup):
    """A user's network, batch-statistics BatchNorm or the logits: no plan, the compiled/eager step runs."""
    cfg, prep, searcher, _, _, _ = setup
    problem = searcher.problem
    assert fused.plan_for(problem.model, 3, problem.shapes) is None  # the logits are no map
    batch = open_search(resolve("quickstart", [*SETS, "search.bn=batch"]), prep).problem
    assert fused.plan_for(batch.model, 0, batch.shapes) is None
    resnet = open_search(resolve("quickstart", [*SETS, "model.name=resnet"]), prep).problem
    assert all(fused.plan_for(resnet.model, p, resnet.shapes) is None for p in range(3))


def _kernel_gelu(x: torch.Tensor) -> torch.Tensor:
    """`fused_kernel._gelu` on its own, as benchmarks/gelu_accuracy.py runs it."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).parent.parent / "benchmarks" / "gelu_accuracy.py"
    spec = importlib.util.spec_from_file_location("gelu_accuracy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return torch.from_numpy(module.kernel_gelu(x))


def test_the_kernels_gelu_is_within_fp32s_error_of_the_exact_one():
    """The kernel evaluates GELU's erf by a rational-exponential formula (fused_kernel._gelu), not
    libdevice's: over [-12, 12] it must stay within 5e-7 of the exact GELU, and within 2e-4
    relatively in the negative tail (down to |GELU| = 1e-3), where 1 + erf would cancel. Fixed
    bounds, not torch's fp32 GELU: its CPU error depends on the vector unit (3.8e-7 and 2.2e-4 with
    AVX2, 1.2e-6 and 1.0e-3 with AVX-512; benchmarks/gelu_accuracy.py). The tanh form, 4.7e-4 and
    0.22 away, fails both."""
    x = torch.linspace(-12, 12, 200_001)
    y = _kernel_gelu(x)
    exact = 0.5 * x.double() * torch.special.erfc(-x.double() / 2 ** 0.5)  # erfc: exact in the tail too
    error = (y.double() - exact).abs()
    assert error.max() < 5e-7
    tail = (x < 0) & (exact.abs() > 1e-3)
    assert (error[tail] / exact[tail].abs()).max() < 2e-4
