"""Learning-phase throughput: images/s of regression training on cached targets, as a fraction of
the FLOP-bound rate at a matmul peak measured in this process.

    python benchmarks/learn.py [--preset quickstart] [--set key=value ...]
"""
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import emit, parser, references  # noqa: E402

from repsearch.config import resolve  # noqa: E402
from repsearch.data import prepare  # noqa: E402
from repsearch.learn.regression import build_learner, train_from_cache  # noqa: E402
from repsearch.models.staged import forward_flops  # noqa: E402
from repsearch.search.pool import run_search  # noqa: E402


def main():
    p = parser(__doc__)
    p.add_argument("--preset", default="cpu-mnist")
    a = p.parse_args()
    cfg = resolve(a.preset, ["data.subset=1000", "search.generations=[2,1,1,1]", "learn.epochs=2",
                             "learn.probe_images=500", *a.overrides], **{"data.root": a.data_root})
    prep = prepare(cfg)
    ref = references()
    with tempfile.TemporaryDirectory() as tmp:
        cache, _ = run_search(prep, cfg, Path(tmp) / "cache")
        _, s = train_from_cache(prep, cfg, cache)
    flops = forward_flops(build_learner(prep, cfg), prep.dataset.shape)
    bound = ref["matmul_peak_flops"] / (3 * flops)
    emit("learn", {"preset": a.preset, "dataset": prep.dataset.name, "references": ref,
                   "learn_images_per_s": s["images_per_s"], "flop_bound_images_per_s": bound,
                   "fraction_of_matmul_peak": s["images_per_s"] / bound}, config=cfg.to_dict())


if __name__ == "__main__":
    main()
