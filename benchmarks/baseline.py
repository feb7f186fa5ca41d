"""SGD baseline at the CPU presets on real data: test accuracy, images/s, and images/s as a
fraction of the rate the model's FLOPs allow at a matmul peak measured in this process.

    python benchmarks/baseline.py [--presets cpu-fashion,cpu-mnist,cpu-cifar10] [--set key=value ...]
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import emit, parser, references  # noqa: E402

from repsearch.config import resolve  # noqa: E402
from repsearch.data import prepare  # noqa: E402
from repsearch.errors import UserError  # noqa: E402
from repsearch.learn.baseline import run_baseline  # noqa: E402


def main():
    p = parser(__doc__)
    p.add_argument("--presets", default="cpu-fashion,cpu-mnist,cpu-cifar10")
    a = p.parse_args()
    ref = references()
    out = []
    for preset in a.presets.split(","):
        cfg = resolve(preset, a.overrides, **{"data.root": a.data_root})
        try:
            prep = prepare(cfg)
        except UserError as e:
            out.append({"preset": preset, "skipped": str(e)})
            continue
        s = run_baseline(prep, cfg)
        d = s["depths"][0]
        flop_bound = ref["matmul_peak_flops"] / (3 * d["forward_flops_per_image"])
        out.append({"preset": preset, "dataset": s["dataset"], "train_images": s["train_images"],
                    "epochs": cfg.baseline.epochs, "test_accuracy": s["test_accuracy"],
                    "images_per_s": d["images_per_s"], "flop_bound_images_per_s": flop_bound,
                    "fraction_of_matmul_peak": d["images_per_s"] / flop_bound})
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)  # progress: one line per preset
    emit("baseline", {"references": ref, "results": out})


if __name__ == "__main__":
    main()
