"""Per-image random streams: operators launched per generation's draws, as a function of the
number of images, for the generator RNG (one torch.Generator per image) and the counter RNG
(search.rng = "counter"). On a GPU each operator is at least one kernel launch, so the counter
RNG's flat count is what makes a draw cost the same for 8 or 4,096 images. Prints JSON.

    python benchmarks/rng.py [--images 8,64,512] [--children 10] [--shape 64,14,14]
"""
import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from common import emit  # noqa: E402

from repsearch.search.noise import per_image_rng


def one_generation(rng, children: int, shape: tuple, top_k: int):
    """A generation's draws with fresh noise (strategy.draw): normals, then two index draws."""
    rng.randn((children, *shape))
    rng.randint(top_k, (2, children // 2))
    rng.randint(top_k + children // 2, (2, children - children // 2))


def measure(kind: str, images: int, children: int, shape: tuple) -> dict:
    rng = per_image_rng(kind, 0, range(images))
    one_generation(rng, children, shape, 2)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        one_generation(rng, children, shape, 2)
    ops = sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))
    t = time.perf_counter()
    for _ in range(3):
        one_generation(rng, children, shape, 2)
    return {"rng": kind, "images": images, "aten_ops_per_generation": ops,
            "seconds_per_generation": (time.perf_counter() - t) / 3}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", default="8,64,512")
    p.add_argument("--children", type=int, default=10)
    p.add_argument("--shape", default="64,14,14")
    a = p.parse_args()
    shape = tuple(int(v) for v in a.shape.split(","))
    rows = [measure(kind, int(n), a.children, shape) for n in a.images.split(",") for kind in ("generator", "counter")]
    for r in rows:  # the ratio to the other RNG at the same size, measured in this run
        other = next(o for o in rows if o["images"] == r["images"] and o["rng"] != r["rng"])
        r["time_vs_other"] = r["seconds_per_generation"] / other["seconds_per_generation"]
    emit("rng", {"children": a.children, "shape": shape, "threads": torch.get_num_threads(), "rows": rows})


if __name__ == "__main__":
    main()
