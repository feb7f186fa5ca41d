import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from repsearch.config import resolve
from repsearch.data import prepare
from repsearch.errors import UserError
from repsearch.search.engine import search_images as engine_search
from repsearch.search.engine import use_pool_phases
from repsearch.search.hooks import ChunkRecorder
from repsearch.search.pool import images_for, open_search, run_search
from repsearch.search.strategy import Params
from repsearch.store.cache import TargetCache

from .conftest import need

TINY = ["model.widths=[8,8,8]", "search.pop_size=12", "search.top_k=2", "search.n_explore=5", "search.n_refine=5",
        "search.generations=[4,3,3,2]", "data.subset=40"]


def tiny(*extra):
    return resolve("quickstart", [*TINY, *extra])


def search_setup(cfg, n: int | None = None):
    """The search problem (network in search mode) and the first n pool images (all by default)."""
    prep = prepare(cfg)
    problem = open_search(cfg, prep).problem
    rows = prep.split.pool[:n] if n else prep.split.pool
    x, y = images_for(prep, rows)
    return problem, rows, x, y


def search_images(problem, x, y, ids, cfg, seed, **kw):
    """The engine's search of one chunk, with its per-point curves and evaluations recorded."""
    params = Params.from_config(cfg.search, problem.shapes)
    recorder = ChunkRecorder(params.n_children)
    res = engine_search(problem, x, y, ids, params, cfg.engine, seed, hooks=(recorder,), **kw)
    res.curves, res.layer_evaluations = recorder.curves, recorder.evaluations
    return res


def test_per_image_result_does_not_depend_on_batch_company():
    cfg = tiny()
    net, rows, x, y = search_setup(cfg, 6)
    full = search_images(net, x, y, rows.tolist(), cfg, cfg.seed)
    pick = [4, 1]
    part = search_images(net, x[pick], y[pick], rows[pick].tolist(), cfg, cfg.seed)
    for layer in range(4):
        assert torch.allclose(full.reps[layer][pick], part.reps[layer], atol=1e-4)
    assert torch.allclose(full.ce[pick], part.ce, atol=1e-5)


def test_best_fitness_never_worsens_and_every_layer_is_searched(tmp_path):
    cfg = tiny("search.generations=[6,4,4,3]")
    cache, summary = run_search(prepare(cfg), cfg, tmp_path / "c")
    curves = cache.curves()
    for layer in range(4):
        best = curves[layer]["best"]
        assert all(b2 <= b1 + 1e-6 for b1, b2 in zip(best, best[1:])), (layer, best)
        assert len(best) == cfg.search.generations[layer] + 1
    for a, b in zip(summary["points"], summary["points"][1:]):  # layer l+1 starts where l ended
        assert b["ce_start"] == pytest.approx(a["ce_end"], rel=1e-4, abs=1e-5)
    assert summary["evaluations_total"] > 0 and summary["flops_total"] > 0
    ev = cache.arrays()["evals"]
    assert (ev == 12 + sum(cfg.search.generations) * 10 + 3).all()


def _arrays(cache):
    a = cache.arrays()
    return {k: np.array(a[k]) for k in ("block0", "block1", "block2", "logits", "ce", "indices")}


def test_same_seed_same_cache_and_chunking_does_not_matter(tmp_path):
    c1, _ = run_search(prepare(tiny("engine.chunk_images=7")), tiny("engine.chunk_images=7"), tmp_path / "a")
    c2, _ = run_search(prepare(tiny("engine.chunk_images=40")), tiny("engine.chunk_images=40"), tmp_path / "b")
    a, b = _arrays(c1), _arrays(c2)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=2e-3, err_msg=k)


def test_mismatched_cache_is_refused(tmp_path):
    cfg = tiny()
    run_search(prepare(cfg), cfg, tmp_path / "c")
    other = tiny("search.alpha.0=0.5")
    with pytest.raises(UserError, match="was made for another"):
        run_search(prepare(other), other, tmp_path / "c")
    with pytest.raises(UserError, match="no target cache"):
        TargetCache.open(tmp_path / "nothing")


def test_pop_size_must_add_up():
    with pytest.raises(UserError, match="must equal top_k"):
        tiny("search.pop_size=13")


@pytest.mark.subprocess
def test_killed_search_resumes_to_the_same_cache(tmp_path):
    args = [sys.executable, "-m", "repsearch", "search", "--preset", "quickstart", "--no-progress",
            *sum((["--set", t] for t in TINY), []), "--set", "engine.chunk_images=4", "--set", "data.subset=60",
            "--set", "search.generations=[8,6,6,3]"]
    ref = subprocess.run([*args, "--out", str(tmp_path / "ref")], capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen([*args, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunks = out / "cache" / "chunks"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(chunks.glob("*.json")) if chunks.exists() else []) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(chunks.glob("*.json")))
    assert 3 <= done < 15, done  # killed mid-way
    resumed = subprocess.run([*args, "--out", str(out)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    a = _arrays(TargetCache.open(tmp_path / "ref" / "cache"))
    b = _arrays(TargetCache.open(out / "cache"))
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-3, err_msg=k)
    assert json.loads((out / "cache" / "manifest.json").read_text())["complete"]


def test_cache_reader_serves_rows_by_dataset_index(tmp_path):
    cfg = tiny()
    prep = prepare(cfg)
    cache, _ = run_search(prep, cfg, tmp_path / "c")
    idx = torch.cat([prep.split.val[:3], prep.split.train[:2]]).sort().values.numpy()
    rows = cache.rows_for(idx)
    t = cache.load(rows)
    assert t["block0"].shape == (5, 8, 7, 7) and t["logits"].shape == (5, 10)
    assert (cache.arrays()["labels"][rows] == prep.dataset.train_y[idx].numpy()).all()
    with pytest.raises(UserError, match="no targets for images"):
        cache.rows_for([10 ** 6])


@pytest.mark.slow
@need("fashion-mnist")
def test_search_on_real_fashion_mnist_makes_progress_at_every_layer(tmp_path, data_root):
    cfg = resolve("cpu-fashion", ["model.widths=[32,32,32]", "search.generations=[15,8,8,3]", "engine.compile=[]"],
                  **{"data.root": data_root})
    net, rows, x, y = search_setup(cfg, 48)
    untrained = torch.nn.functional.cross_entropy(net.model(x), y).item()
    _, summary = run_search(prepare(cfg), cfg, tmp_path / "c", limit=48)
    for point in summary["points"]:
        assert point["ce_end"] < point["ce_start"], point
    assert summary["searched_ce_mean"] < 0.4 * untrained, (summary["searched_ce_mean"], untrained)
    assert summary["points"][0]["ce_end"] < 0.85 * summary["points"][0]["ce_start"]


def test_fast_path_agrees_with_plain_path():
    """Identity-conv skipping, matrix smoothing and the noise bank change speed, not the search:
    on the same images, both paths' mean best-CE curves agree within a stated tolerance (15%
    relative at the end of each layer; the noise differs, so the paths are equal in law only)."""
    curves = {}
    for fast in (True, False):
        cfg = tiny("search.generations=[10,6,6,3]", "data.subset=120", f"engine.fast={str(fast).lower()}",
                   f"search.noise={'bank' if fast else 'fresh'}", "search.alpha=[0.3,0.2,0.1,0.1]")
        net, rows, x, y = search_setup(cfg)
        res = search_images(net, x, y, rows.tolist(), cfg, cfg.seed)
        curves[fast] = [[v / res.curves[l]["count"] for v in res.curves[l]["best_sum"]] for l in range(4)]
    for layer in range(4):
        a, b = curves[True][layer][-1], curves[False][layer][-1]
        assert abs(a - b) <= 0.15 * max(a, b), (layer, a, b)
    assert curves[True][0][0] == pytest.approx(curves[False][0][0], rel=1e-4)  # same initial population


def test_adaptive_stopping_never_stops_an_image_above_its_threshold():
    cfg = tiny("search.target_ce=[0.6,0.6,0.6,0.6]", "search.extra_generations=[4,4,4,4]", "search.generations=[6,4,4,3]",
               "search.alpha=[0.3,0.2,0.1,0.1]", "data.subset=60")
    net, rows, x, y = search_setup(cfg)
    res = search_images(net, x, y, rows.tolist(), cfg, cfg.seed)
    s = cfg.search
    full = s.pop_size + 3 + sum(g + p for g, p in zip(s.generations, s.extra_generations)) * (s.n_explore + s.n_refine)
    stopped_early = res.evaluations < full
    assert stopped_early.any() and (~stopped_early).any()  # the threshold splits this batch
    assert (res.ce[stopped_early] <= s.target_ce[3] + 1e-6).all()
    above = res.ce > s.target_ce[3]
    assert (res.evaluations[above] == full).all()  # images above target spent their whole budget


def test_compiled_generation_matches_eager_search_with_adaptive_padding():
    """The compiled fast path (one graph per generation, active subsets padded to buckets) finds
    what the eager fast path finds: same random draws, so per-image CE agrees to rounding."""
    results = {}
    for compiled in ("[]", "[0,3]"):
        cfg = tiny("search.generations=[5,3,3,3]", "search.target_ce=[0.8,0.8,0.8,0.8]", "search.extra_generations=[2,2,2,2]",
                   f"engine.compile={compiled}", "data.subset=40")
        net, rows, x, y = search_setup(cfg)
        results[compiled] = search_images(net, x, y, rows.tolist(), cfg, cfg.seed)
    eager, comp = results["[]"], results["[0,3]"]
    assert (eager.evaluations < eager.evaluations.max()).any()  # adaptive subsets (and so padding) happened
    assert torch.allclose(eager.ce, comp.ce, rtol=1e-3, atol=1e-4)
    assert torch.equal(eager.evaluations, comp.evaluations)
    for a, b in zip(eager.reps, comp.reps):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-3)


def test_compile_list_is_validated():
    cfg = tiny("engine.compile=[4]")  # the model decides how many points there are
    with pytest.raises(UserError, match="engine.compile lists search points 0-3"):
        open_search(cfg, prepare(cfg))
    with pytest.raises(UserError, match="has moved: use engine.compile"):
        tiny("search.compile=[0]")


def test_fingerprint_covers_every_search_and_model_field_and_no_engine_field():
    """The cache fingerprint is the whole search and model sections (no hand-kept exclusions):
    changing any of their fields changes it; changing any engine field does not."""
    import dataclasses

    from repsearch.store.cache import search_fingerprint
    base = tiny()
    ref = search_fingerprint(base, "data")

    def changed(value):
        if isinstance(value, bool):
            return not value
        if isinstance(value, (int, float)):
            return value + 1
        if isinstance(value, list):
            return value + value[:1] if value else [0]
        return value + "x"

    for section in ("search", "model", "engine"):
        for f in dataclasses.fields(getattr(base, section)):
            cfg = tiny()
            setattr(getattr(cfg, section), f.name, changed(getattr(getattr(cfg, section), f.name)))
            moved = search_fingerprint(cfg, "data") != ref
            assert moved == (section != "engine"), (section, f.name)
    assert search_fingerprint(tiny("seed=1"), "data") != ref and search_fingerprint(base, "other") != ref


def test_a_field_added_later_keeps_older_caches_valid_at_its_old_behaviour():
    """search.blur_border came after format 2: at "valid" (what every older cache did) the
    fingerprint is the one a config without the field had; "zero" changes it."""
    from repsearch.store.cache import search_fingerprint
    before = tiny()
    del before.search.blur_border  # the config as it was before the field existed
    assert "blur_border" not in vars(before.search)
    assert search_fingerprint(tiny(), "data") == search_fingerprint(before, "data")
    assert search_fingerprint(tiny("search.blur_border=zero"), "data") != search_fingerprint(before, "data")


def test_cache_resumed_under_other_engine_settings_is_reused_not_mixed(tmp_path):
    """Engine settings change speed only: a cache started with one chunking and compile setting
    resumes under another and ends as the uninterrupted search's; a search setting is refused."""
    cfg = tiny("data.subset=12", "engine.chunk_images=4")
    prep = prepare(cfg)
    ref, _ = run_search(prep, cfg, tmp_path / "ref")
    run_search(prep, cfg, tmp_path / "c", limit=0)
    chunk = tmp_path / "c" / "chunks" / "00002.json"
    chunk.unlink()  # as if killed before the last chunk
    other = tiny("data.subset=12", "engine.chunk_images=7", "engine.compile=[3]", "engine.fast=false")
    cache, _ = run_search(prep, other, tmp_path / "c")
    for k, v in _arrays(ref).items():
        np.testing.assert_allclose(v, _arrays(cache)[k], atol=1e-3, err_msg=k)
    with pytest.raises(UserError, match="another dataset/network/search config"):
        run_search(prep, tiny("data.subset=12", "search.noise=fresh"), tmp_path / "c")


@pytest.mark.parametrize("compiled", ["[]", "[0,1]"])
def test_pool_phase_layout_changes_speed_not_the_search(compiled):
    """Blocks 0-1 searched in pooling-phase pixel order find the same representations (in the true
    order) as the search in the true order: same draws, equal up to float summation order."""
    results = {}
    for phases in ("true", "false"):
        cfg = tiny("search.generations=[5,3,3,2]", f"engine.pool_phases={phases}", f"engine.compile={compiled}",
                   "data.subset=20")
        net, rows, x, y = search_setup(cfg)
        params = Params.from_config(cfg.search, net.shapes)
        used = [use_pool_phases(net.model, l, params, params.points[l], cfg.engine, bank=True) for l in range(4)]
        assert used == ([True, True, False, False] if phases == "true" else [False] * 4)  # 7x7 and 3x3 maps
        results[phases] = search_images(net, x, y, rows.tolist(), cfg, cfg.seed)
    on, off = results["true"], results["false"]
    assert torch.allclose(on.ce, off.ce, rtol=1e-4, atol=1e-5)
    for a, b in zip(on.reps, off.reps):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_short_chunk_padded_to_the_compiled_size_keeps_each_images_result():
    """A short last chunk runs padded to the compiled chunk size (no recompile); the padding rows
    never leak into the images' results, evaluations or curves."""
    cfg = tiny("data.subset=20", "search.target_ce=[0,0,0,0.5]", "search.extra_generations=[0,0,0,2]")
    net, rows, x, y = search_setup(cfg, 5)
    eager = search_images(net, x, y, rows.tolist(), cfg, cfg.seed)
    cfg.engine.compile = [3]
    padded = search_images(net, x, y, rows.tolist(), cfg, cfg.seed, pad_to=8)
    assert padded.ce.shape == (5,) and all(len(r) == 5 for r in padded.reps)
    assert torch.allclose(eager.ce, padded.ce, rtol=1e-3, atol=1e-4)
    assert torch.equal(eager.evaluations, padded.evaluations)
    assert eager.layer_evaluations == padded.layer_evaluations
    for layer in range(4):
        assert padded.curves[layer]["count"] == 5
        assert np.allclose(eager.curves[layer]["best_sum"], padded.curves[layer]["best_sum"], rtol=1e-3)


def test_batchnorm_without_running_statistics_searches_and_learns(tmp_path):
    """model.bn_running_stats=false (the paper's BN "without running statistics") has no running
    buffers: the search network's calibration gives it some, and the learner trains on batch stats."""
    from repsearch.learn.regression import train_from_cache
    cfg = tiny("model.bn_running_stats=false", "data.subset=60", "learn.epochs=2", "learn.batch_size=20",
               "learn.probe_images=40")
    prep = prepare(cfg)
    cache, summary = run_search(prep, cfg, tmp_path / "c")
    assert summary["points"][-1]["ce_end"] < summary["points"][0]["ce_start"]
    model, learned = train_from_cache(prep, cfg, cache)
    assert not any("running_mean" in k for k in model.state_dict())  # batch statistics only, as asked
    assert learned["epochs_run"] == 2 and learned["best_epoch"] == 2  # trained to the end, kept the last (80 val images)


def test_compiled_and_eager_agree_at_a_vector_point():
    """The compiled engine compiles the function the eager engine runs, for vector points too (mlp)."""
    results = {}
    for compiled in ("[]", "[1]"):
        cfg = tiny("model.name=mlp", "model.widths=[16,16,16]", "search.generations=[2,4,2,2]", "data.subset=12",
                   f"engine.compile={compiled}")
        problem, rows, x, y = search_setup(cfg)
        results[compiled] = search_images(problem, x, y, rows.tolist(), cfg, cfg.seed)
    for a, b in zip(results["[]"].reps, results["[1]"].reps):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-3)
    assert torch.allclose(results["[]"].ce, results["[1]"].ce, rtol=1e-3, atol=1e-4)


def test_chunks_stay_in_a_cpus_caches_but_fill_a_gpus_memory():
    """The fast path's ~16 MiB working-set cap is a CPU cache heuristic: on CPU it shrinks the
    chunk, on a GPU only `engine.memory_gb` bounds it (a GPU starved of images runs near idle)."""
    from repsearch.search.engine import bytes_per_image, chunk_size
    cfg = resolve("cpu-mnist", ["model.widths=[256,256,256]", "engine.memory_gb=8"])
    shapes = [(256, 14, 14), (256, 7, 7), (256, 3, 3), (10,)]
    params = Params.from_config(cfg.search, shapes)
    by_memory = min(1024, int(8 * 2 ** 30 // bytes_per_image(shapes, params)))
    assert chunk_size(shapes, params, cfg.engine, "cuda:0") == by_memory
    assert chunk_size(shapes, params, cfg.engine, "cpu") < by_memory // 4
    cfg.engine.fast = False
    assert chunk_size(shapes, params, cfg.engine, "cpu") == by_memory
