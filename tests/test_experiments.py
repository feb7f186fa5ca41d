import json
import math

import pytest
import torch

from repsearch.config import resolve
from repsearch.data import prepare
from repsearch.learn.measures import n_eff, n_eff_batched
from repsearch.studies.diversity import diversity
from repsearch.studies.scaling import fitness_scaling, sample_images, scaled_population

# Tiny search; the logits get enough search (large alpha) that p(correct) > 0.5 for most images.
TINY = ["model.widths=[8,8,8]", "search.pop_size=12", "search.top_k=2", "search.n_explore=5", "search.n_refine=5",
        "search.generations=[2,2,2,8]", "search.alpha.3=1.0", "data.subset=40"]


# Diversity keeps a block's solutions only where that block solves the image on its own: blocks
# need enough width and search for some of them to (measured: at width 8 none does).
DIVERSE = ["model.widths=[32,32,32]", "search.generations=[40,20,20,8]", "search.alpha=[0.3,0.2,0.1,1.0]"]


def tiny(*extra):
    return resolve("quickstart", [*TINY, *extra])


@pytest.fixture(scope="module")
def prep():
    return prepare(tiny())


def test_n_eff_is_one_for_identical_and_n_for_orthogonal():
    v = torch.randn(1, 3, 4, 4)
    assert n_eff(v.expand(5, -1, -1, -1)) == pytest.approx(1.0)
    assert n_eff(torch.eye(6).reshape(6, 2, 3)) == pytest.approx(6.0)
    # e1, e2, e3 and a scaled e1 again: (tr K)^2 / sum K^2 = 16 / 6
    assert n_eff(torch.cat([2 * torch.eye(3), torch.eye(3)[:1]])) == pytest.approx(8 / 3)


def test_batched_n_eff_matches_analysis_and_masks_solutions():
    g = torch.Generator().manual_seed(0)
    sols = torch.randn(4, 5, 2, 3, 3, generator=g)
    sols[1, 2] = 3 * sols[1, 0]  # a scaled copy is the same direction
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 1, 1, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    out = n_eff_batched(sols, mask)
    for i in range(3):
        assert out[i].item() == pytest.approx(n_eff(sols[i][mask[i]]), rel=1e-9)
    assert out[2].item() == pytest.approx(1.0)  # one kept solution
    assert math.isnan(out[3].item())  # none kept
    eye = torch.eye(4).expand(2, 4, 4)
    assert n_eff_batched(eye).tolist() == pytest.approx([4.0, 4.0])
    assert n_eff_batched(torch.ones(2, 4, 7)).tolist() == pytest.approx([1.0, 1.0])


def test_scaled_population_keeps_the_ratio_and_minimums_and_passes_through_the_configs_point():
    assert scaled_population(240) == (20, 100, 120)
    assert scaled_population(480) == (40, 200, 240)
    # the preset's own population is its own split (the paper's ratio would give (2, 10, 12) at 24)
    assert scaled_population(24, (4, 10, 10)) == (4, 10, 10) and scaled_population(12, (4, 10, 10)) == (2, 5, 5)
    for p in range(2, 300):
        k, e, r = scaled_population(p)
        assert k + e + r == p and k >= 1 and r >= 1 and e >= 0
    with pytest.raises(Exception):
        scaled_population(1)


def test_fitness_scaling_sweeps_one_block_and_writes_files(prep, tmp_path):
    cfg = tiny()
    seen = []
    res = fitness_scaling(prep, cfg, n_images=5, pop_sizes=(4, 12), generations=(0, 3), out_dir=tmp_path,
                          on_point=seen.append)
    assert res["images"] == 5 and set(res["blocks"]) == {0, 1, 2}
    assert len(seen) == 3 * 4
    zero = []
    for block, v in res["blocks"].items():
        assert [r["pop_size"] for r in v["population"]] == [4, 12]
        assert [r["generations"] for r in v["generations"]] == [0, 3]
        for r in v["population"] + v["generations"]:
            assert math.isfinite(r["mean_best_ce"]) and r["mean_best_ce"] >= 0
        # Only block `block` evolves: the initial population (of the swept size at block 0, of the
        # config's 12 before later blocks) + g x (P - top_k) children + 3 carried forwards.
        for r in v["population"]:
            k, _, _ = scaled_population(r["pop_size"], res["split"])
            initial = r["pop_size"] if block == 0 else 12
            assert r["evaluations_per_image"] == initial + 2 * (r["pop_size"] - k) + 3
        assert [r["evaluations_per_image"] for r in v["generations"]] == [12 + 3, 12 + 3 * 10 + 3]
        g0, g3 = (r["mean_best_ce"] for r in v["generations"])
        assert g3 <= g0 + 1e-5, (block, g0, g3)  # elitist: more generations never lose the best
        zero.append(g0)
    assert zero[0] == pytest.approx(zero[1], abs=1e-5) == pytest.approx(zero[2], abs=1e-5)  # nothing evolved
    assert any(r["generations"][1]["mean_best_ce"] < r["generations"][0]["mean_best_ce"] - 1e-3
               for r in res["blocks"].values())  # and search does improve somewhere
    saved = json.loads((tmp_path / "scaling.json").read_text())
    assert saved["blocks"]["2"]["generations"][1]["mean_best_ce"] == pytest.approx(
        res["blocks"][2]["generations"][1]["mean_best_ce"])
    for name in ("scaling_population.png", "scaling_generations.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_diversity_grows_with_runs_within_bounds_and_writes_files(prep, tmp_path):
    res = diversity(prep, tiny(*DIVERSE), n_images=5, runs=3, out_dir=tmp_path)
    assert res["seeds"] == [0, 1000, 2000]
    assert all(f > 0.5 for f in res["p_correct_fraction"])
    for block, curve in res["blocks"].items():
        assert [c["runs"] for c in curve] == [1, 2, 3]
        vals = [c["n_eff"] for c in curve]
        assert vals[0] == pytest.approx(1.0)  # one solution per image
        for k, v in enumerate(vals, start=1):
            assert 1 - 1e-9 <= v <= k + 1e-9
        for a, b in zip(vals, vals[1:]):
            assert b >= a - 0.1, (block, vals)
        assert vals[-1] > 1.01, (block, vals)  # different seeds find different solutions
    saved = json.loads((tmp_path / "diversity.json").read_text())
    assert saved["blocks"]["1"][2]["n_eff"] == pytest.approx(res["blocks"][1][2]["n_eff"])
    assert (tmp_path / "diversity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_identical_runs_give_n_eff_one(prep):
    res = diversity(prep, tiny(*DIVERSE), n_images=4, runs=3, seed_stride=0)
    assert any(curve[0]["images"] > 0 for curve in res["blocks"].values())
    for curve in res["blocks"].values():
        assert [c["images"] for c in curve] == [curve[0]["images"]] * 3  # the same runs, the same kept images
        if curve[0]["images"]:
            assert [c["n_eff"] for c in curve] == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)


def test_unsolved_images_are_left_out(prep):
    # No logit search: p(correct) stays near chance, so no run's solutions count.
    res = diversity(prep, tiny("search.generations=[1,0,0,0]"), n_images=4, runs=2)
    assert res["p_correct_fraction"] == [0.0, 0.0]
    for curve in res["blocks"].values():
        assert all(c["n_eff"] is None and c["images"] == 0 for c in curve)


def test_image_choice_is_seeded_and_from_the_pool(prep):
    a, b = sample_images(prep, 7, 0), sample_images(prep, 7, 0)
    assert torch.equal(a, b) and len(set(a.tolist())) == 7
    assert set(a.tolist()) <= set(prep.split.pool.tolist())
    assert len(sample_images(prep, 10_000, 0)) == len(prep.split.pool)


@pytest.mark.subprocess
def test_population_shape_study_spends_equal_evaluations(tmp_path):
    """experiments/population_shape.py compares shapes at (nearly) equal evaluations per image,
    the property the study rests on; runs on digits with a tiny network."""
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).parent.parent / "experiments" / "population_shape.py"
    proc = subprocess.run([sys.executable, str(script), "--preset", "quickstart", "--out", str(tmp_path), "--images", "8",
                           "--set", "model.widths=[8,8,8]", "--set", "search.alpha.3=1.0"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((tmp_path / "population_shape.json").read_text())
    evals = [r["evaluations_per_image"] for r in rows]
    assert len(rows) == 4 and max(evals) <= 1.06 * min(evals)
    assert [r["top_k"] for r in rows] == [2, 4, 8, 16]
    assert all(0 <= r["searched_ce_mean"] < 10 for r in rows)


def test_population_sweep_at_later_blocks_does_not_change_their_input(prep):
    """Figure 2's population axis at blocks 1-2: the swept population must not also size block
    0's initial population (a larger one would hand the block a better input). With no generations
    at the swept block, every population size then measures the same CE."""
    res = fitness_scaling(prep, tiny("search.generations=[2,0,0,8]"), n_images=6, pop_sizes=(4, 24),
                          generations=(0,))
    for block in (1, 2):
        small, large = (r["mean_best_ce"] for r in res["blocks"][block]["population"])
        assert small == pytest.approx(large, abs=1e-6), (block, small, large)


def test_diversity_keeps_a_runs_solutions_by_its_final_p_correct_or_each_blocks_by_its_own(prep):
    """The paper's filter (the default): a run's solutions count, at every block, when its searched
    logits give p(correct) > 0.5. keep="block": a block's solution counts when IT solves the image
    through the rest of the search network. Both checked against an independent forward."""
    from repsearch.models.staged import forward_from
    from repsearch.search.pool import open_search
    from repsearch.studies.diversity import p_correct
    from repsearch.studies.scaling import search_rows
    cfg = tiny(*DIVERSE)
    res = diversity(prep, cfg, n_images=8, runs=1, keep="block")
    paper = diversity(prep, cfg, n_images=8, runs=1)
    searcher = open_search(cfg, prep)
    problem = searcher.problem
    rows = sample_images(prep, 8, cfg.seed)
    reps = search_rows(searcher, prep, rows).reps
    labels = prep.dataset.train_y[rows]
    fractions = []
    for block in range(3):
        with torch.no_grad():
            ok = p_correct(forward_from(problem.model, block, reps[block]), labels) > 0.5
        assert res["blocks"][block][0]["images"] == int(ok.sum())
        fractions.append(ok.float().mean().item())
    logits_ok = (p_correct(reps[3], labels) > 0.5).float().mean().item()
    assert res["p_correct_fraction"] == [pytest.approx(logits_ok)]
    assert any(f != pytest.approx(logits_ok) for f in fractions)  # the two filters differ on these images
    assert paper["keep"] == "final" and res["keep"] == "block"
    final_ok = int((p_correct(reps[3], labels) > 0.5).sum())
    assert all(paper["blocks"][block][0]["images"] == final_ok for block in range(3))


@pytest.mark.subprocess
def test_sweep_records_accuracy_against_compute_and_resumes_point_by_point(tmp_path):
    """Figure 4: each point searches and learns; evaluations grow along both axes; a second call
    with more points keeps the finished ones (same records) and runs only the new one."""
    import json
    import subprocess
    import sys
    out = tmp_path / "sweep"
    sets = [x for s in [*TINY, "data.subset=120", "learn.epochs=2", "learn.batch_size=50", "learn.probe_images=60",
                        "search.top_k=1", "search.n_explore=5", "search.n_refine=6"]  # the paper's split of 12
            for x in ("--set", s)]

    def sweep(pops, scales):
        r = subprocess.run([sys.executable, "-m", "repsearch", "sweep", "--preset", "quickstart", *sets, "--no-progress",
                            "--pop-sizes", pops, "--generation-scales", scales, "--out", str(out)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines()]

    first = sweep("4,12", "0.5")
    assert [r["name"] for r in first] == ["pop-4", "pop-12", "gen-x0.5"]
    assert first[0]["evaluations_per_image"] < first[1]["evaluations_per_image"]
    assert first[2]["generations"] == [1, 1, 1, 4]  # [2,2,2,8] halved
    assert all(round(10 * r["val_accuracy"]) == pytest.approx(10 * r["val_accuracy"]) for r in first)  # of 10 images
    for r in first:  # each point's learner leaves its summary, as any learning stage (the report reads it)
        assert json.loads((out / r["name"] / "learn" / "summary.json").read_text())["test_accuracy"] == r["test_accuracy"]
    again = sweep("4,12", "0.5,1")
    assert again[:3] == first and [r["name"] for r in again[3:]] == ["gen-x1"]
    assert again[3]["evaluations_per_image"] > first[2]["evaluations_per_image"]
    # gen-x1 at the config's population (12) is pop-12's point: reused, not searched again
    assert again[3]["val_accuracy"] == first[1]["val_accuracy"] and again[3]["seconds"] == 0.0
    assert not (out / "gen-x1").exists()
    assert (out / "sweep.png").exists() and len(json.loads((out / "sweep.json").read_text())["points"]) == 4
