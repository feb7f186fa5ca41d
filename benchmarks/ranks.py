"""Throughput on this machine's cores, split two ways in one run: 1 rank x N threads against
N ranks x 1 thread (torchrun, gloo), on the same images and config. Prints JSON with the rate
(search: evaluations/s; baseline / train: SGD / learner training images/s under DDP at the same
global batch), both summed over ranks, for each and their ratio; for the search it also checks
whether the caches are identical. `--stage train` first searches a cache in one process (pass
`--set 'search.generations=[1,1,1,1]'` to make that quick: the learner's speed does not depend on
how good its targets are) and then trains from it both ways.

    python benchmarks/ranks.py [--stage search|baseline|train] [--ranks 2] [--preset quickstart] [--set key=value ...]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import emit  # noqa: E402


def launch(stage: str, out: Path, ranks: int, threads: int, preset: str, sets: list[str], extra=()) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
                if ranks > 1 else [sys.executable])
    args = ["-m", "repsearch", stage, "--preset", preset, "--no-progress", "--out", str(out),
            *[x for s in sets for x in ("--set", s)], *extra]
    t = time.perf_counter()
    r = subprocess.run([*launcher, *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(r.stderr[-2000:])
    summary = json.loads((out / "summary.json").read_text())
    row = {"ranks": ranks, "threads_per_rank": threads, "wall_s": wall}
    if stage == "search":
        return {**row, "search_s": summary["search_wall_time_s_this_call"],
                "rate": summary["evaluations_total"] / summary["search_wall_time_s_this_call"], "unit": "evaluations/s"}
    if stage == "train":
        return {**row, "rate": summary["images_per_s"], "steady_rate": summary["steady_images_per_s"],
                "unit": "training images/s", "test_accuracy": summary["test_accuracy"]}
    return {**row, "rate": summary["depths"][0]["images_per_s"], "unit": "training images/s",
            "test_accuracy": summary["test_accuracy"]}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--stage", choices=("search", "baseline", "train"), default="search")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--preset", default="quickstart")
    p.add_argument("--set", dest="sets", action="append", default=[])
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        extra = ()
        if a.stage == "train":
            launch("search", Path(tmp) / "searched", 1, a.ranks, a.preset, a.sets)
            extra = ("--cache", str(Path(tmp) / "searched" / "cache"))
        one = launch(a.stage, Path(tmp) / "one", 1, a.ranks, a.preset, a.sets, extra)
        many = launch(a.stage, Path(tmp) / "many", a.ranks, 1, a.preset, a.sets, extra)
        if a.stage != "search":
            emit("ranks", {"stage": a.stage, "runs": [one, many], "ranks_over_threads": many["rate"] / one["rate"]})
            return
        same = all(np.load(Path(tmp) / "one" / "cache" / f) .tobytes() == np.load(Path(tmp) / "many" / "cache" / f).tobytes()
                   for f in ("logits.npy", "ce.npy"))
    emit("ranks", {"stage": a.stage, "runs": [one, many], "ranks_over_threads": many["rate"] / one["rate"],
                   "same_logits_and_ce": same,
                   "note": "bytes are promised only at the same threads per rank (here N vs 1): "
                           + ("they happen to match" if same else "they differ")})


if __name__ == "__main__":
    main()
