"""How long the paper's CIFAR-10 search would take, from per-evaluation costs measured here.

    python benchmarks/search.py --widths 256 --dataset cifar10-jpeg --paths fast,compiled > S.json
    python benchmarks/paper_scale.py S.json [--path compiled] [--gpus 1,8]

Reads the search benchmark's JSON (evaluations/s per search point at paper width, on this
machine) and the `paper-cifar10` preset (children per generation, generations per point, 50,000
images), and prints JSON with:
- the search's time on this machine, from the measured rates;
- an *estimate* for GPUs from bytes per evaluation. With the square Dirac convs skipped a
  candidate's scoring is elementwise and pooling work (the benchmark counts the remaining FLOPs),
  so it is bound by memory bandwidth: time = bytes / (bandwidth x efficiency). Two efficiencies
  are reported: 1.0 (the floor) and the fraction of copy bandwidth the compiled path reaches on
  this CPU (what the same kernels would do if they were as good on the GPU). Ranks share chunks
  with no communication, so N GPUs divide the time by N (benchmarks/ranks.py measures the CPU case).
`measured_device_hours` is the search at the rates measured wherever the benchmark ran (a CPU,
or a GPU: `benchmarks/search.py --device cuda`, as on 2026-12-01 on an H200); the H100 rows are a
bandwidth model, labelled as such.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import emit  # noqa: E402

from repsearch.config import resolve

H100_SXM = {"name": "H100 SXM (HBM3 3.35 TB/s)", "bandwidth_bytes_per_s": 3.35e12}


def paper_evaluations_per_image(preset: str) -> tuple[list[int], int]:
    """Children scored per image at each search point: children per generation x generations."""
    s = resolve(preset, []).search
    children = s.n_explore + s.n_refine
    return [children * g for g in s.generations], children


def estimate(bench: dict, path: str, preset: str, images: int, gpus: list[int], bytes_per_value: int) -> dict:
    per_image, children = paper_evaluations_per_image(preset)
    run = next(r for r in bench["results"] if r["path"] == path)
    copy_bw = bench["references"]["copy_bandwidth_bytes_per_s"]
    layers, cpu_s, gpu_floor_s, gpu_eff_s = [], 0.0, 0.0, 0.0
    for layer, evals in zip(run.get("points") or run["layers"], per_image):  # "layers": JSON written before 2026-12-04
        rate = layer["evaluations_per_s"]
        bytes_fp32 = layer["mutation_bytes_per_s"] / rate  # 8 passes of 4-byte values, as search.py counts
        nbytes = bytes_fp32 * bytes_per_value / 4
        efficiency = min(1.0, layer["mutation_bytes_per_s"] / copy_bw)
        total = evals * images
        layers.append({"point": layer.get("point", layer.get("layer")), "evaluations": total, "evaluations_per_s": rate,
                       "bytes_per_evaluation": nbytes, "fraction_of_copy_bandwidth": efficiency})
        cpu_s += total / rate
        gpu_floor_s += total * nbytes / H100_SXM["bandwidth_bytes_per_s"]
        gpu_eff_s += total * nbytes / (H100_SXM["bandwidth_bytes_per_s"] * max(efficiency, 1e-3))
    return {
        "preset": preset, "images": images, "children_per_generation": children,
        "evaluations_per_image": per_image, "evaluations_total": sum(per_image) * images,
        "measured_on": {"device": bench.get("device", "cpu"), "dataset": bench["dataset"], "width": run["width"], "path": path,
                        "torch_threads": bench["references"]["torch_threads"]},
        "layers": layers,
        "measured_device_hours": cpu_s / 3600,
        "gpu_model": H100_SXM["name"], "bytes_per_value": bytes_per_value,
        "gpu_minutes_estimated": {str(n): {"at_full_bandwidth": gpu_floor_s / n / 60,
                                           "at_measured_efficiency": gpu_eff_s / n / 60} for n in gpus},
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("benchmark_json")
    p.add_argument("--path", default="compiled")
    p.add_argument("--preset", default="paper-cifar10")
    p.add_argument("--images", type=int, default=50_000)
    p.add_argument("--gpus", default="1,8")
    p.add_argument("--bytes-per-value", type=int, default=4, help="4: fp32 (default); 2: bf16 storage")
    a = p.parse_args()
    with open(a.benchmark_json) as f:
        bench = json.load(f)
    if not any(r["path"] == a.path for r in bench.get("results", [])):
        sys.exit(f"paper_scale.py: {a.benchmark_json} has no '{a.path}' path; run benchmarks/search.py with --paths {a.path}")
    emit("paper_scale", estimate(bench, a.path, a.preset, a.images, [int(g) for g in a.gpus.split(",")],
                                 a.bytes_per_value))


if __name__ == "__main__":
    main()
