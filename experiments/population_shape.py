"""Population shape at equal evaluations (issue 13): fewer children per generation and more
generations, or the reverse. Which reaches a lower searched CE per second?

    python experiments/population_shape.py --preset cpu-mnist --data-root data --out runs/popshape [--images 400]

Every shape keeps the 1:2.5:2.5 parent:explorer:refiner ratio and spends the same evaluations
per image (children per generation x generations); each searches the same images into
OUT/<shape>/. Writes OUT/population_shape.json and .md.
"""
import argparse
import json
import sys
from pathlib import Path

from repsearch.config import resolve
from repsearch.data import prepare
from repsearch.errors import UserError
from repsearch.search.pool import run_search

BASE_GENERATIONS = [60, 30, 30, 5]
SHAPES = [  # (top_k, n_explore, n_refine, generation multiplier)
    (2, 5, 5, 2.0),
    (4, 10, 10, 1.0),
    (8, 20, 20, 0.5),
    (16, 40, 40, 0.25),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu-mnist")
    p.add_argument("--data-root", default="data")
    p.add_argument("--out", required=True)
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--set", action="append", default=[], dest="sets")
    a = p.parse_args()
    out = Path(a.out)
    rows = []
    for k, e, r, mult in SHAPES:
        gens = [max(1, round(g * mult)) for g in BASE_GENERATIONS]
        cfg = resolve(a.preset, [*a.sets, f"search.top_k={k}", f"search.n_explore={e}", f"search.n_refine={r}",
                                 f"search.pop_size={k + e + r}", f"search.generations={gens}"],
                      **{"data.root": a.data_root})
        prep = prepare(cfg)
        _, summary = run_search(prep, cfg, out / f"pop{k + e + r}" / "cache", limit=a.images)
        rows.append({"top_k": k, "n_explore": e, "n_refine": r, "generations": gens,
                     "evaluations_per_image": summary["evaluations_per_image_mean"],
                     "searched_ce_mean": summary["searched_ce_mean"], "searched_ce_p90": summary["searched_ce_p90"],
                     "ce_end_per_layer": [l["ce_end"] for l in summary["points"]],
                     "seconds": sum(l["seconds"] for l in summary["points"])})
        print(json.dumps(rows[-1]), flush=True)
    (out / "population_shape.json").write_text(json.dumps(rows, indent=2))
    lines = ["| parents / explorers / refiners | generations | evals per image | CE end per layer (block 0/1/2, logits) "
             "| searched CE mean / p90 | search s |", "|---|---|---|---|---|---|"]
    for x in rows:
        ce = " / ".join(f"{c:.3f}" for c in x["ce_end_per_layer"])
        lines.append(f"| {x['top_k']} / {x['n_explore']} / {x['n_refine']} | {x['generations']} | "
                     f"{x['evaluations_per_image']:.0f} | {ce} | {x['searched_ce_mean']:.4f} / {x['searched_ce_p90']:.4f} "
                     f"| {x['seconds']:.0f} |")
    (out / "population_shape.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        sys.exit(f"population_shape.py: {e}")
