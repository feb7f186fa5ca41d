"""The fused kernel's offline tools: compiled for sm_90 without a GPU (registers, the occupancy
limit the first version hit on the H200), and the tiling benchmark's dry run under the interpreter."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Triton is found, not imported: importing it here, before tests/test_fused.py sets TRITON_INTERPRET,
# would leave that module's kernel uninterpretable when both run in one process
TRITON = importlib.util.find_spec("triton")
pytestmark = pytest.mark.skipif(TRITON is None, reason="triton is not installed")
ROOT = Path(__file__).parents[1]


def _run(args, env=None):
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, **(env or {})}, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout[r.stdout.index("{"):])


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_kernel_compiles_for_sm90_here_and_its_default_tiling_keeps_registers_down():
    """Every point compiles (scored only, scored + written, written only); the default tiling stays at
    or under 128 registers per thread, where the first version's 228 (measured) held occupancy at
    12.5%; the instructions each program issues are counted, and the issue ceiling modelled from them."""
    if not (Path(TRITON.origin).parent / "backends/nvidia/bin/ptxas").exists():
        pytest.skip("this Triton wheel ships no ptxas")
    out = _run(["benchmarks/fused_compile.py"], {"TRITON_INTERPRET": "0"})
    points = {k: v for k, v in out.items() if isinstance(v, dict)}
    assert len(points) == 9
    for name, p in points.items():
        assert p["registers"] <= 128 and p["spill_stores"] == 0, (name, p)
        assert p["issued_per_thread"] > 0, (name, p)
        assert sum(p["issued_by_function"].values()) == p["issued_per_thread"], (name, p)
        # the GELUs are issued where a stage follows the point (point 2 feeds the head directly)
        assert ("_gelu" in p["issued_by_function"]) == (not name.startswith("point2") and "score" in name), (name, p)
    for point in ("point0", "point1", "point2"):  # an explorer does what a refiner does and more
        issued = {k.split(") ")[1]: v["issued_per_thread"] for k, v in points.items() if k.startswith(point)}
        assert issued["write"] < issued["score + write"] and issued["score"] < issued["score + write"], issued
    ceilings = [v for k, v in out.items() if "issue ceiling" in k]
    assert len(ceilings) == 3 and ceilings[0] < ceilings[1] < ceilings[2]  # smaller maps, fewer instructions


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_tiling_benchmark_dry_runs_on_the_cpu(tmp_path):
    out = _run(["benchmarks/fused_tiles.py", "--width", "8", "--images", "2", "--population", "24", "--tiles", "0x4,4x2",
                "--points", "0", "--repeats", "1"], {"TRITON_INTERPRET": "1", "BENCH_RECORD": str(tmp_path / "r.json")})
    point = out["points"]["0"]  # the paper's CIFAR map: 15x15, pooled to 7x7 and 3x3 by two stages
    assert point["shape"] == [8, 15, 15] and point["0x4"]["evals_per_s"] > 0 and point["4x2"]["vs_eager"] > 0
    assert point["bytes_per_child_modelled"] == 4 * 8 * 225 * (1 + 10 / 20)
    # under the interpreter both tilings build the eager children: their CE agrees, either may be picked
    assert all(point[t]["ce_max_abs_diff"] < 1e-4 and point[t]["same_parents"] == 1.0 for t in ("0x4", "4x2"))
    assert point["fastest"] in ("0x4", "4x2")
    assert (tmp_path / "r.json").exists()


@pytest.mark.subprocess
def test_the_gelu_accuracy_benchmark_emulates_the_kernel_and_finds_it_at_fp32s_accuracy(tmp_path):
    """Its emulation is the kernel's formula (else its verdict on the GPU's units says nothing of the
    kernel), and at those units' worst errors the kernel's GELU stays as near the exact one as
    torch's fp32 GELU does (within a third more)."""
    out = _run(["benchmarks/gelu_accuracy.py", "--points", "100001"], {"BENCH_RECORD": str(tmp_path / "r.json")})
    assert out["emulation_vs_kernel_max_abs"] <= 2.5e-7  # an ulp at the largest values compared
    kernel, torch_gelu = out["kernel_gelu_worst_units"], out["torch_fp32_gelu"]
    assert kernel["max_abs"] < 1.34 * torch_gelu["max_abs"] and kernel["max_abs"] < 6e-7, out
    assert kernel["max_relative_in_negative_tail"] <= torch_gelu["max_relative_in_negative_tail"], out
