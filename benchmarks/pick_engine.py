"""The engine settings for a GPU run, from the same session's `search.py` JSON: per map point, the
faster of the compiled and fused paths (the logits point stays compiled); and, with
`--search-seconds`, how many training images the preset's search covers in that time at those
measured rates (per-chunk work included in them), so that an end-to-end run fits its command.
With `--tiles`, the fused kernel's tiling that `fused_tiles.py` measured fastest at block 0 (the
search's bulk). Prints `--set` arguments; without a readable benchmark, the compiled path everywhere
(the faster one measured so far) and `--fallback-images`; without readable tiles, no tiling.

    python benchmarks/pick_engine.py [BENCH_JSON] [--tiles TILES_JSON] [--preset paper-cifar10]
                                     [--search-seconds 120] [--max-images 10000] [--fallback-images 1000]
"""
import argparse
import json


def pick(bench: dict | None) -> tuple[list[int], list[int], dict[int, float]]:
    """(engine.fused, engine.compile) point lists, and the chosen path's evaluations/s per point."""
    rates = {}
    for result in (bench or {}).get("results", []):
        rates[result["path"]] = {p["point"]: p["evaluations_per_s"] for p in result["points"]}
    compiled, fused = rates.get("compiled", {}), rates.get("fused", {})
    if not compiled or not fused:
        return [], sorted(compiled) or [0, 1, 2, 3], dict(compiled)
    last = max(compiled)  # the logits: no map, never fused
    faster = [p for p in sorted(fused) if p != last and fused[p] > compiled.get(p, 0.0)]
    chosen = {p: (fused[p] if p in faster else compiled[p]) for p in compiled}
    return faster, [p for p in sorted(compiled) if p not in faster], chosen


def images_in(seconds: float, rates: dict[int, float], evaluations_per_image: list[int], cap: int,
              least: int = 200) -> int:
    """Training images whose search takes `seconds` at `rates` (in hundreds, at least `least`: one
    learning batch past the validation holdout; cap wins)."""
    per_image = sum(e / rates[p] for p, e in enumerate(evaluations_per_image))
    return int(min(cap, max(least, seconds / per_image // 100 * 100)))


def least_images(cfg) -> int:
    """The fewest images (in hundreds) whose training split holds one batch of SGD and the learner."""
    batch = max(cfg.learn.batch_size, cfg.baseline.batch_size)
    return int(-(-batch / (1 - cfg.data.val_fraction) // 100) * 100)


def fastest_tiling(tiles: dict | None) -> str:
    """The tiling fused_tiles.py found fastest at point 0 ("" when it measured none)."""
    return ((tiles or {}).get("points", {}).get("0", {})).get("fastest", "")


def without_fused(bench: dict) -> dict:
    return {**bench, "results": [r for r in bench.get("results", []) if r["path"] != "fused"]}


def read_json(path: str | None) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError, TypeError):
        return None


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bench", nargs="?")
    p.add_argument("--tiles", help="fused_tiles.py JSON: add its fastest tiling")
    p.add_argument("--tiling-only", action="store_true", help="print only the tiling's --set")
    p.add_argument("--tiling-name", default=None, metavar="DEFAULT",
                   help="print only the fastest tiling's name (DEFAULT when none was measured)")
    p.add_argument("--preset", default="paper-cifar10")
    p.add_argument("--search-seconds", type=float, default=0.0, help="0: print no data.subset")
    p.add_argument("--max-images", type=int, default=10000)
    p.add_argument("--fallback-images", type=int, default=1000)
    a = p.parse_args(argv)
    tiles = read_json(a.tiles)
    tiling = fastest_tiling(tiles)  # "" also when no tiling agreed with eager
    tiling_args = [f"--set engine.fused_tiling={tiling}"] if tiling else []
    if a.tiling_name is not None:
        print(tiling or a.tiling_name)
        return
    if a.tiling_only:
        print(" ".join(tiling_args))
        return
    bench = read_json(a.bench)
    if bench and tiles is not None and not tiling:
        bench = without_fused(bench)  # fused_tiles.py ran and no tiling scored the children as eager does
    fused, compiled, rates = pick(bench)
    args = [f"--set engine.fused={json.dumps(fused).replace(' ', '')}",
            f"--set engine.compile={json.dumps(compiled).replace(' ', '')}", *tiling_args]
    if a.search_seconds > 0:
        from repsearch.config import resolve
        cfg = resolve(a.preset)
        per_point = [(cfg.search.n_explore + cfg.search.n_refine) * g for g in cfg.search.generations]
        n = images_in(a.search_seconds, rates, per_point, a.max_images, least_images(cfg)) \
            if len(rates) == len(per_point) else min(a.fallback_images, a.max_images)
        args.append(f"--set data.subset={n}")
    print(" ".join(args))


if __name__ == "__main__":
    main()
