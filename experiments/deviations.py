"""Each departure from the paper's text, measured (issue 23): the base protocol with our defaults,
then one row per deviation switched to the paper's literal reading, then all of them at once
(`--overlay paper_literal`).

    python experiments/deviations.py --preset cpu-mnist --data-root data --out runs/deviations-mnist \
        [--subset 10000] [--only base,literal]

Rows run in the order below (the cheap learn-only rows reuse the base row's cache and SGD
baseline); a killed run continues where it stopped. A row whose literal reading fails (an error
such as non-finite representations) is recorded with its message. Writes OUT/deviations.jsonl,
OUT/deviations.md (the table in docs/method.md) and OUT/deviations.png. That table was measured
with the presets of 2026-11-24: add `--set 'search.generations=[120,60,60,10]' --set
learn.select=best --set baseline.select=best` to reproduce it with today's `cpu-mnist`.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import rowlog  # noqa: E402
from levers import collect, link_shared, plot  # noqa: E402  (same table format as the lever table)

from repsearch.config import load_preset, resolve  # noqa: E402
from repsearch.errors import UserError  # noqa: E402
from repsearch.studies.pipeline import run_pipeline  # noqa: E402


def _flat(section: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in section.items():
        out += _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}={json.dumps(v)}"]
    return out


def rows() -> list[dict]:
    """(name, deviation, literal value, overrides, learn_only)."""
    r = lambda name, what, value, sets, learn_only=False: dict(name=name, lever=what, value=value, sets=sets,
                                                              learn_only=learn_only)
    # rows that change the search only share the base row's SGD baseline (it does not depend on them)
    return [
        r("base", "none (our defaults)", "-", []),
        r("literal", "all of them (--overlay paper_literal)", "all", _flat(load_preset("paper_literal", "overlay"))),
        r("learn-init-dirac", "learner init", "dirac", ["learn.init=dirac"], True),
        r("reduction-sum", "regression loss", "sum of squared norms / 3", ["learn.reduction=sum"], True),
        r("head-lr-1", "head step", "lambda x lr", ["learn.head_lr_scale=1"], True),
        r("optimizer-plain", "learning optimizer", "no wd, constant lr, no bias scaler",
          ["learn.weight_decay=0", "learn.warmup=0", "learn.final_lr=1", "learn.bias_scaler=1"], True),
        r("smooth-child", "smoothing", "whole child", ["search.smooth=child"]),
        # raw representations exceed float16's range (the fp16 cache refuses them): a float32 cache
        r("target-raw", "target space", "raw parents (float32 cache)", ["search.target_space=raw", "search.dtype=float32"]),
        r("bn-batch", "search BatchNorm", "batch statistics", ["search.bn=batch"]),
        r("noise-fresh", "noise source", "fresh normals", ["search.noise=fresh"]),
        r("blur-zero", "smoothing borders", "zero padding counts", ["search.blur_border=zero"]),
        r("bn-no-running", "BatchNorm running stats", "none", ["model.bn_running_stats=false"]),
        r("cache-float32", "cache dtype", "float32", ["search.dtype=float32"]),
    ]


def table(results: list[dict]) -> str:
    lines = ["| deviation | paper-literal value | searched CE | evals/image | SGD test | search-based test | gap (points) "
             "| probe block 2 | cosine block 0/1/2 | wall s |", "|---" * 10 + "|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['lever']} | {r['value']} | fails: {r['error']} |||||||| {r['seconds']:.0f} |")
            continue
        s = r["summary"]
        cos = "/".join(f"{c:.2f}" for c in r["cosines"])
        lines.append(f"| {r['lever']} | {r['value']} | {s['searched_ce_mean']:.4f} | {s['search_evaluations_per_image']:.0f} "
                     f"| {100 * s['sgd_test_accuracy']:.2f} | {100 * s['search_test_accuracy']:.2f} | {s['gap_points']:.2f} "
                     f"| {100 * s['search_probe_last_block']:.1f} | {cos} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def run_row(row: dict, a, out: Path) -> dict:
    cfg = resolve(a.preset, [f"data.subset={a.subset}", *a.sets, *row["sets"]], **{"data.root": a.data_root})
    row_dir = out / row["name"]
    if row["learn_only"]:
        link_shared(out / "base", row_dir)
    elif not any(s.startswith(("model.", "baseline.")) for s in row["sets"]) and row["name"] != "base":
        link_shared(out / "base", row_dir, names=("sgd-noaug",))
    t0 = time.time()
    try:
        summary, _ = run_pipeline(cfg, row_dir)
    except UserError as e:
        return {"name": row["name"], "lever": row["lever"], "value": row["value"], "error": str(e),
                "seconds": time.time() - t0}
    (row_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return collect(row["name"], row["lever"], row["value"], row_dir, time.time() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu-mnist")
    p.add_argument("--data-root", default="data")
    p.add_argument("--out", required=True)
    p.add_argument("--subset", type=int, default=10000)
    p.add_argument("--only", default="", help="comma-separated row names (default: all)")
    p.add_argument("--set", action="append", default=[], dest="sets", help="override for every row")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    only = set(filter(None, a.only.split(",")))
    log = out / "deviations.jsonl"
    done = rowlog.load(log)
    for row in rows():
        if (only and row["name"] not in only) or row["name"] in done:
            continue
        rec = done[row["name"]] = run_row(row, a, out)
        rowlog.append(log, rec)
        print(json.dumps({k: rec.get(k) for k in ("name", "seconds", "error")}), flush=True)
    results = rowlog.in_order(done, [r["name"] for r in rows()])
    (out / "deviations.md").write_text(table(results))
    measured = [r for r in results if "error" not in r]
    if measured:
        plot(measured, out / "deviations.png")
    print(table(results))


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        sys.exit(f"deviations.py: {e}")
