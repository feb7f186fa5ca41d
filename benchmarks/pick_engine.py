"""The engine settings for a GPU run, from the same session's `search.py` JSON: per map point, the
faster of the compiled and fused paths (the logits point stays compiled). Prints `--set` arguments;
without a readable benchmark, the compiled path everywhere (the faster one measured so far).

    python benchmarks/pick_engine.py BENCH_JSON
"""
import json
import sys


def pick(bench: dict | None) -> tuple[list[int], list[int]]:
    """(engine.fused, engine.compile) point lists."""
    rates = {}
    for result in (bench or {}).get("results", []):
        rates[result["path"]] = {p["point"]: p["evaluations_per_s"] for p in result["points"]}
    compiled, fused = rates.get("compiled", {}), rates.get("fused", {})
    if not compiled or not fused:
        return [], sorted(compiled) or [0, 1, 2, 3]
    last = max(compiled)  # the logits: no map, never fused
    faster = [p for p in sorted(fused) if p != last and fused[p] > compiled.get(p, 0.0)]
    return faster, [p for p in sorted(compiled) if p not in faster]


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        with open(argv[0]) as f:
            bench = json.load(f)
    except (OSError, ValueError, IndexError):
        bench = None
    fused, compiled = pick(bench)
    print(f"--set engine.fused={json.dumps(fused).replace(' ', '')} --set engine.compile={json.dumps(compiled).replace(' ', '')}")


if __name__ == "__main__":
    main()
