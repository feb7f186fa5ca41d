"""The learner's end-of-training measurements on a finished run: every rank computing all of them
(test accuracy, cosines and probes each with its own validation forward, the untrained control)
against `train_from_cache`'s way (one validation forward, the jobs spread over the ranks by
`distributed.shared`). Prints seconds for each and checks they measure the same.

    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 benchmarks/final_measurements.py \\
        runs/mnist-60k-b --preset cpu-mnist --set data.subset=0

(the run directory is positional: torchrun would take `--run` for its own `--run-path`)
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import emit, parser  # noqa: E402

from repsearch.config import resolve  # noqa: E402
from repsearch.data import prepare  # noqa: E402
from repsearch.learn.diagnostics import Diagnostics  # noqa: E402
from repsearch.learn.regression import build_learner  # noqa: E402
from repsearch.learn.runtime import evaluate  # noqa: E402
from repsearch.search.pool import fingerprint_for  # noqa: E402
from repsearch.store import distributed  # noqa: E402
from repsearch.store.cache import TargetCache  # noqa: E402


def timed(fn) -> tuple[float, object]:
    distributed.barrier()
    t = time.perf_counter()
    out = fn()
    distributed.barrier()
    return time.perf_counter() - t, out


def main():
    p = parser(__doc__)
    p.add_argument("run", help="a `repsearch run` directory (seed0/cache, seed0/learn-all-noaug)")
    p.add_argument("--preset", default="cpu-mnist")
    a = p.parse_args()
    distributed.init("cpu")
    cfg = resolve(a.preset, a.overrides, **{"data.root": a.data_root})
    prep = prepare(cfg)
    cache = TargetCache.open(Path(a.run) / "seed0" / "cache", fingerprint_for(cfg, prep))
    model = build_learner(prep, cfg)
    model.load_state_dict(torch.load(Path(a.run) / "seed0" / "learn-all-noaug" / "model-learn-all-noaug.pt"))
    model.eval()
    test = prep.images("test")

    def every_rank_all():
        d = Diagnostics(prep, cache, 0, cfg.learn.probe_images, cfg.learn.entropy_images)
        return (evaluate(model, *test)["accuracy"], {**d.cosines(model), **d.probes(model)},
                {f"untrained_{k}": v for k, v in d.probes(build_learner(prep, cfg)).items()})

    def shared():
        d = Diagnostics(prep, cache, 0, cfg.learn.probe_images, cfg.learn.entropy_images)
        (acc, final), control = distributed.shared([lambda: (evaluate(model, *test)["accuracy"], d.final(model)),
                                                    lambda: d.control(build_learner(prep, cfg))])
        return acc, final, control

    before, old = timed(every_rank_all)
    after, new = timed(shared)
    if distributed.is_main():
        same = old[0] == new[0] and all(abs(old[i][k] - new[i][k]) < 1e-6 for i in (1, 2) for k in old[i])
        emit("final_measurements", {"ranks": distributed.world(), "threads": torch.get_num_threads(),
                                    "every_rank_all_s": before, "shared_s": after, "ratio": before / after,
                                    "same_measurements": same, "test_accuracy": new[0], **new[1], **new[2]})
    distributed.shutdown()


if __name__ == "__main__":
    main()
