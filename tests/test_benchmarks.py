"""The paper-scale estimate's arithmetic, on a synthetic benchmark record (the script turns
measured rates into the hours and minutes quoted in benchmarks/RESULTS.md)."""
import importlib.util
from pathlib import Path

import pytest


def _paper_scale():
    path = Path(__file__).parent.parent / "benchmarks" / "paper_scale.py"
    spec = importlib.util.spec_from_file_location("paper_scale", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_paper_scale_estimate_counts_the_papers_evaluations_and_divides_by_rates():
    ps = _paper_scale()
    copy_bw = 1e10
    layers = [{"layer": l, "evaluations_per_s": rate, "mutation_bytes_per_s": rate * nbytes}
              for l, (rate, nbytes) in enumerate([(1000.0, 1e6), (2000.0, 2e5), (4000.0, 4e4), (8000.0, 320.0)])]
    bench = {"dataset": "synthetic", "references": {"copy_bandwidth_bytes_per_s": copy_bw, "torch_threads": 2},
             "results": [{"path": "compiled", "width": 256, "layers": layers}]}
    est = ps.estimate(bench, "compiled", "paper-cifar10", 50_000, [1, 8], 4)
    assert est["evaluations_per_image"] == [66_000, 22_000, 22_000, 2_200]  # 220 children x 300/100/100/10
    cpu_s = 50_000 * (66_000 / 1000 + 22_000 / 2000 + 22_000 / 4000 + 2_200 / 8000)
    assert est["measured_device_hours"] == pytest.approx(cpu_s / 3600)
    floor_s = 50_000 * (66_000 * 1e6 + 22_000 * 2e5 + 22_000 * 4e4 + 2_200 * 320) / ps.H100_SXM["bandwidth_bytes_per_s"]
    assert est["gpu_minutes_estimated"]["1"]["at_full_bandwidth"] == pytest.approx(floor_s / 60)
    assert est["gpu_minutes_estimated"]["8"]["at_full_bandwidth"] == pytest.approx(floor_s / 60 / 8)
    # at this CPU's share of bandwidth (block 0: 1e9 / 1e10 = 0.1) the GPU takes longer than the floor
    assert est["gpu_minutes_estimated"]["1"]["at_measured_efficiency"] > 5 * floor_s / 60
    half = ps.estimate(bench, "compiled", "paper-cifar10", 50_000, [1], 2)
    assert half["gpu_minutes_estimated"]["1"]["at_full_bandwidth"] == pytest.approx(floor_s / 60 / 2)


@pytest.mark.subprocess
def test_a_benchmark_writes_a_record_beside_its_json(tmp_path):
    """Every benchmark ends in common.emit: its JSON on stdout and a schema-checked record.json."""
    import json
    import os
    import subprocess
    import sys

    from repsearch.store import record
    out = tmp_path / "rng" / "record.json"
    r = subprocess.run([sys.executable, "benchmarks/rng.py", "--images", "8", "--children", "2", "--shape", "4,5,5"],
                       capture_output=True, text=True, cwd=Path(__file__).parents[1], env={**os.environ, "BENCH_RECORD": str(out)})
    assert r.returncode == 0, r.stderr
    printed, rec = json.loads(r.stdout), record.read(out)
    assert rec.kind == "benchmark/rng" and rec.environment["torch"]
    assert rec.headline["rows.0.images"] == printed["rows"][0]["images"] == 8
    assert rec.headline["rows.1.rng"] == printed["rows"][1]["rng"]


def test_the_gpu_run_takes_the_faster_path_per_map_point_and_compiled_without_a_benchmark():
    path = Path(__file__).parent.parent / "benchmarks" / "pick_engine.py"
    spec = importlib.util.spec_from_file_location("pick_engine", path)
    pe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pe)

    def bench(compiled, fused):
        return {"results": [{"path": name, "points": [{"point": p, "evaluations_per_s": r} for p, r in enumerate(rates)]}
                            for name, rates in (("fast", [1, 1, 1, 1]), ("compiled", compiled), ("fused", fused))]}
    assert pe.pick(bench([1.1e6, 3.2e6, 7.2e6, 9.1e6], [0.5e6, 2.1e6, 3.9e6, 7.2e6]))[:2] == ([], [0, 1, 2, 3])
    fused, compiled, rates = pe.pick(bench([1.1e6, 3.2e6, 7.2e6, 9.1e6], [9e6, 2.1e6, 8e6, 1e9]))
    assert (fused, compiled) == ([0, 2], [1, 3])  # the logits: never fused
    assert rates == {0: 9e6, 1: 3.2e6, 2: 8e6, 3: 9.1e6}
    assert pe.pick(None)[:2] == ([], [0, 1, 2, 3])
    # images whose search fits: 120 s / (66,000 / 1.1M + 22,000 / 3.2M + 22,000 / 7.2M + 2,200 / 9.1M) s per image
    per_image = 66_000 / 1.1e6 + 22_000 / 3.2e6 + 22_000 / 7.2e6 + 2_200 / 9.1e6
    rates = {0: 1.1e6, 1: 3.2e6, 2: 7.2e6, 3: 9.1e6}
    assert pe.images_in(120, rates, [66_000, 22_000, 22_000, 2_200], 10_000) == int(120 / per_image // 100 * 100) == 1700
    assert pe.images_in(1e5, rates, [66_000, 22_000, 22_000, 2_200], 10_000) == 10_000
    assert pe.images_in(120, rates, [66_000, 22_000, 22_000, 2_200], 40) == 40  # a dry run's cap wins
    # the tiling: the one fused_tiles.py measured fastest at block 0, or none without its JSON
    tiles = {"points": {"0": {"0x4": {"evals_per_s": 1e6}, "32x8": {"evals_per_s": 3e6}, "fastest": "32x8"}}}
    assert pe.fastest_tiling(tiles) == "32x8"
    assert pe.fastest_tiling(None) == pe.fastest_tiling({"points": {}}) == ""
    # a tiling whose children do not score as the eager ones do is never picked, nor the fused path
    fast_but_wrong = {"evals_per_s": 9e6, "vs_eager": 9.0, "ce_max_abs_diff": 0.3, "same_parents": 0.2}
    assert not ft_agrees(fast_but_wrong) and ft_agrees({**fast_but_wrong, "ce_max_abs_diff": 2e-5, "same_parents": 1.0})
    faster_fused = bench([1.1e6, 3.2e6, 7.2e6, 9.1e6], [9e6, 2.1e6, 8e6, 1e9])
    assert pe.pick(pe.without_fused(faster_fused))[:2] == ([], [0, 1, 2, 3])


def test_the_profiling_stage_names_the_fastest_tiling_measured_or_the_default(tmp_path, capsys):
    path = Path(__file__).parent.parent / "benchmarks" / "pick_engine.py"
    spec = importlib.util.spec_from_file_location("pick_engine", path)
    pe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pe)
    tiles = tmp_path / "fused-tiles.json"
    tiles.write_text('{"points": {"0": {"0x4": {"evals_per_s": 1e6}, "2x1": {"evals_per_s": 2e6}, "fastest": "2x1"}}}')
    pe.main(["--tiles", str(tiles), "--tiling-name", "0x4"])
    pe.main(["--tiles", str(tmp_path / "absent.json"), "--tiling-name", "0x4"])
    assert capsys.readouterr().out.split() == ["2x1", "0x4"]


def ft_agrees(measured):
    import sys
    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    from fused_tiles import agrees
    return agrees(measured)


@pytest.mark.subprocess
def test_a_later_gpu_call_picks_its_engine_from_an_earlier_calls_measurements(tmp_path):
    """A device call starts with an empty OUT: PRIOR (the files an earlier call returned) fills in
    fused-tiles.json and bench-paper.json, so `paper-cifar10` alone still runs fused at the measured
    tiling. What OUT already holds wins; nothing is copied without PRIOR."""
    import os
    import subprocess
    root = Path(__file__).parent.parent
    prior, out = tmp_path / "prior", tmp_path / "out"
    prior.mkdir(), out.mkdir()
    (prior / "fused-tiles.json").write_text('{"from": "prior"}')
    (prior / "bench-paper.json").write_text('{"from": "prior"}')
    (out / "bench-paper.json").write_text('{"from": "out"}')
    script = ["bash", str(root / "benchmarks" / "cuda_session.sh"), str(out), str(tmp_path / "data"), "none"]
    env = {**os.environ, "DEVICE": "cpu", "PYTHON": "true"}  # no stage runs: only the preamble
    subprocess.run(script, env={**env, "PRIOR": str(prior)}, cwd=root, check=True, timeout=60)
    assert (out / "fused-tiles.json").read_text() == '{"from": "prior"}'
    assert (out / "bench-paper.json").read_text() == '{"from": "out"}'
    assert "from PRIOR: " in (out / "session.log").read_text()
    bare = tmp_path / "bare"
    subprocess.run([*script[:2], str(bare), *script[3:]], env=env, cwd=root, check=True, timeout=60)
    assert sorted(p.name for p in bare.iterdir()) == ["session.log"]
    missing = tmp_path / "missing"  # a PRIOR without the files says so in the log
    subprocess.run([*script[:2], str(missing), *script[3:]], env={**env, "PRIOR": str(tmp_path / "nowhere")}, cwd=root,
                   check=True, timeout=60)
    assert "PRIOR: no " in (missing / "session.log").read_text()
