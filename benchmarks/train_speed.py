"""The training speed options A/B'd in one process: the learner and the SGD baseline under each
of `memory_format` (contiguous / channels_last) x `compile` (off / on), as steady-state images/s
(after the first epoch, which pays any compilation) and as a ratio to the contiguous eager step.

    python benchmarks/train_speed.py [--preset cpu-mnist] [--images 3000] [--epochs 3] [--variants eager,compile]
        [--set key=value ...]
"""
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import emit, parser, references  # noqa: E402

from repsearch.config import resolve  # noqa: E402
from repsearch.data import prepare  # noqa: E402
from repsearch.learn.baseline import train_baseline  # noqa: E402
from repsearch.learn.regression import build_learner, train_from_cache  # noqa: E402
from repsearch.models.staged import forward_flops  # noqa: E402
from repsearch.search.pool import run_search  # noqa: E402

VARIANTS = {"eager": {}, "channels_last": {"memory_format": "channels_last"}, "compile": {"compile": "true"},
            "channels_last+compile": {"memory_format": "channels_last", "compile": "true"}}


def overrides(section: str, variant: dict, epochs: int) -> list[str]:
    """Same budget for every variant: `epochs` epochs, no step cap, no early stopping."""
    return [f"{section}.epochs={epochs}", f"{section}.max_steps=0", f"{section}.patience=0",
            *(f"{section}.{k}={v}" for k, v in variant.items())]


def main():
    p = parser(__doc__)
    p.add_argument("--preset", default="cpu-mnist")
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS))
    a = p.parse_args()
    unknown = set(a.variants.split(",")) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    base = [f"data.subset={a.images}", "search.generations=[1,1,1,1]", "learn.probe_images=200", *a.overrides]
    cfg = resolve(a.preset, base, **{"data.root": a.data_root})
    prep = prepare(cfg)
    ref = references()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache, _ = run_search(prep, cfg, Path(tmp) / "cache")
        for name in a.variants.split(","):
            variant = VARIANTS[name]
            c = resolve(a.preset, [*base, *overrides("learn", variant, a.epochs), *overrides("baseline", variant, a.epochs)],
                        **{"data.root": a.data_root})
            _, learn = train_from_cache(prep, c, cache)
            _, sgd = train_baseline(prep, c, c.baseline.depths[0], None)
            results[name] = {"learn_images_per_s": learn["steady_images_per_s"],
                             "sgd_images_per_s": sgd["steady_images_per_s"],
                             "learn_flops_per_image": 3 * forward_flops(build_learner(prep, c), prep.dataset.shape),
                             "sgd_flops_per_image": 3 * sgd["forward_flops_per_image"]}
            print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
    for r in results.values():
        for kind in ("learn", "sgd"):
            r[f"{kind}_vs_eager"] = r[f"{kind}_images_per_s"] / results["eager"][f"{kind}_images_per_s"]
            r[f"{kind}_fraction_of_matmul_peak"] = r[f"{kind}_images_per_s"] * r[f"{kind}_flops_per_image"] / ref["matmul_peak_flops"]
    emit("train_speed", {"preset": a.preset, "train_images": len(prep.split.train), "epochs": a.epochs,
                         "references": ref, "results": results}, config=cfg.to_dict())


if __name__ == "__main__":
    main()
