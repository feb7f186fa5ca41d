"""Search throughput: candidate evaluations/s per layer phase, plain vs fast path, in one process.

    python benchmarks/search.py [--widths 64,256] [--images 16] [--dataset mnist|digits|...] [--device cuda]
                                [--set engine.memory_gb=40 ...]

Prints JSON: per width and path, evaluations/s per search point, achieved FLOP/s over a matmul
peak measured here, and bytes/s of the elementwise mutation work over a copy bandwidth measured here.
"""
import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import emit, references  # noqa: E402

from repsearch.config import resolve  # noqa: E402
from repsearch.data import prepare  # noqa: E402
from repsearch.errors import UserError  # noqa: E402
from repsearch.search.engine import chunk_size, search_images  # noqa: E402
from repsearch.search.hooks import ChunkRecorder  # noqa: E402
from repsearch.search.pool import images_for, open_search  # noqa: E402
from repsearch.search.summary import flops_from  # noqa: E402

# path -> (engine.fast, search.noise, engine.compile, engine.fused)
PATHS = {"plain": ("false", "fresh", "[]", "[]"), "fast": ("true", "bank", "[]", "[]"),
         "compiled": ("true", "bank", "[0,1,2,3]", "[]"), "fused": ("true", "bank", "[3]", "[0,1,2]")}
SPLITS = {24: (4, 10, 10), 240: (20, 100, 120)}  # parents / explorers / refiners (240: the paper's)


def measure(dataset, width, path, images, gens, data_root, device="cpu", overrides=(), population=24):
    fast, noise, compiled, fused = PATHS[path]
    k, e, r = SPLITS[population]
    cfg = resolve("cpu-mnist", [f"data.name={dataset}", f"model.widths=[{width},{width},{width}]",
                                f"search.pop_size={population}", f"search.top_k={k}", f"search.n_explore={e}",
                                f"search.n_refine={r}", f"search.generations={gens}", f"engine.fast={fast}",
                                f"search.noise={noise}", f"engine.compile={compiled}", f"engine.fused={fused}",
                                "search.blur=[5,1,1,0]", "data.subset=0", *overrides], device=device,
                  **{"data.root": data_root})
    prep = prepare(cfg)
    searcher = open_search(cfg, prep)
    problem, params = searcher.problem, searcher.params
    chunk = min(images, chunk_size(problem.shapes, params, cfg.engine, cfg.device))
    images = -(-images // chunk) * chunk  # whole chunks: a smaller last chunk would recompile a compiled graph
    rows = prep.split.pool[:images]
    x, y = (t.to(prep.device) for t in images_for(prep, rows[:chunk]))  # warm-up: one-time set-up (noise banks, compilation) is not throughput
    search_images(problem, x, y, rows[:chunk].tolist(), params, cfg.engine, 0)
    n = problem.num_points
    totals = [[0, 0.0] for _ in range(n)]
    for a in range(0, images, chunk):
        x, y = (t.to(prep.device) for t in images_for(prep, rows[a:a + chunk]))
        rec = ChunkRecorder(params.n_children)
        search_images(problem, x, y, rows[a:a + chunk].tolist(), params, cfg.engine, 0, hooks=(rec,))
        for l in range(n):
            totals[l][0] += rec.evaluations[l]
            totals[l][1] += rec.seconds[l]
    out = []
    for l in range(n):
        evals, secs = totals[l]
        rate = evals / secs
        size = math.prod(problem.shapes[l])
        # elementwise mutation traffic per evaluation: crossover reads 2 parents, noise, smoothing,
        # normalization and std passes: ~8 reads/writes of the representation, 4 bytes each
        out.append({"point": l, "evaluations_per_s": rate, "flops_per_evaluation": flops_from(problem, l),
                    "achieved_flops": rate * flops_from(problem, l), "mutation_bytes_per_s": rate * size * 4 * 8})
    return {"width": width, "path": path, "population": population, "chunk_images": chunk, "images": images,
            "points": out}


def _device_name(device: str) -> str:
    import torch
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--widths", default="64,256")
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--generations", default="[6,4,4,3]")
    p.add_argument("--data-root", default="data")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]; references are measured on it too")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config override, key=value")
    p.add_argument("--paths", default="plain,fast,compiled", help="plain: reference engine; fast: bank noise, "
                   "skipped identity convs; compiled: fast + one torch.compile'd graph per generation; fused: one "
                   "Triton program per child at the map points (a GPU; a CPU under TRITON_INTERPRET=1)")
    p.add_argument("--population", type=int, default=24, choices=sorted(SPLITS), help="240: the paper's")
    a = p.parse_args()
    import torch
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {a.device}: CUDA is not available here")
    ref = references(a.device)
    results = []
    for width in map(int, a.widths.split(",")):
        for path in a.paths.split(","):
            r = measure(a.dataset, width, path, a.images, a.generations, a.data_root, a.device, a.overrides,
                        a.population)
            for layer in r["points"]:
                layer["fraction_of_matmul_peak"] = layer["achieved_flops"] / ref["matmul_peak_flops"]
                layer["fraction_of_copy_bandwidth"] = layer["mutation_bytes_per_s"] / ref["copy_bandwidth_bytes_per_s"]
            results.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)  # each path as measured: a timeout keeps them
    speedups = {}
    for width in map(int, a.widths.split(",")):
        by_path = {r["path"]: r for r in results if r["width"] == width}
        if "plain" in by_path:
            speedups[str(width)] = {path: [f["evaluations_per_s"] / p["evaluations_per_s"]
                                           for f, p in zip(r["points"], by_path["plain"]["points"])]
                                    for path, r in by_path.items() if path != "plain"}
    emit("search", {"dataset": a.dataset, "device": _device_name(a.device), "overrides": a.overrides, "references": ref,
                    "results": results, "over_plain": speedups}, device=a.device)


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        sys.exit(f"benchmarks/search.py: {e}")
