"""Does the SGD baseline train the same under bf16 autocast as in fp32? Seeds x precisions x lrs in
one process, one JSON line per run (test and validation accuracy, the first epoch's validation
accuracy: a run that 'dies' at the warm-up's peak shows ~10% there).

    python benchmarks/sgd_precision.py --device cuda --preset cpu-mnist --set data.subset=0 \
        --seeds 0,1,2,3 --precisions bf16,fp32 --lrs 2.0,1.0
"""
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import emit, parser  # noqa: E402

from repsearch.config import resolve  # noqa: E402
from repsearch.data import prepare  # noqa: E402
from repsearch.learn.baseline import run_baseline  # noqa: E402
from repsearch.store.rundir import RunDir  # noqa: E402


def one(preset, overrides, data_root, device, seed, precision, lr, tmp) -> dict:
    cfg = resolve(preset, [*overrides, f"baseline.precision={precision}", f"baseline.lr={lr}"], seed=seed,
                  device=device, **{"data.root": data_root})
    run = RunDir(Path(tmp) / f"{precision}-{lr}-{seed}", cfg.to_dict(), device, write=True)
    summary = run_baseline(prepare(cfg), cfg, run)
    epochs = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    val = [e["val_accuracy"] for e in epochs if "val_accuracy" in e]
    return {"seed": seed, "precision": precision, "lr": lr, "test_accuracy": summary["test_accuracy"],
            "val_accuracy": summary["val_accuracy"], "val_accuracy_per_epoch": val,
            "train_accuracy_per_epoch": [e["train_accuracy"] for e in epochs if "train_accuracy" in e],
            "wall_time_s": summary.get("wall_time_s")}


def main():
    p = parser(__doc__)
    p.add_argument("--preset", default="cpu-mnist")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--precisions", default="bf16,fp32")
    p.add_argument("--lrs", default="2.0")
    a = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for lr in map(float, a.lrs.split(",")):
            for precision in a.precisions.split(","):
                for seed in map(int, a.seeds.split(",")):
                    rows.append(one(a.preset, a.overrides, a.data_root, a.device, seed, precision, lr, tmp))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # progress: one line per run
    emit("sgd_precision", {"preset": a.preset, "rows": rows}, device=a.device)


if __name__ == "__main__":
    main()
