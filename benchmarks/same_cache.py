"""Whether two target caches hold the same search results, byte for byte: every array (.npy) and
the stored search network. Chunk records and the manifest's summary hold wall times, so they
differ between any two runs; the fingerprint is compared as well.

    python benchmarks/same_cache.py CACHE_A CACHE_B     prints JSON, exit 1 if anything differs
"""
import hashlib
import json
import sys
from pathlib import Path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compare(a: Path, b: Path) -> dict:
    names = sorted({p.name for p in a.glob("*.npy")} | {p.name for p in b.glob("*.npy")} | {"network.pt"})
    files = {n: (a / n).exists() and (b / n).exists() and digest(a / n) == digest(b / n) for n in names}
    fingerprints = [json.loads((d / "manifest.json").read_text())["fingerprint"] for d in (a, b)]
    return {"a": str(a), "b": str(b), "identical": all(files.values()) and fingerprints[0] == fingerprints[1],
            "files": files, "fingerprints": fingerprints}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    result = compare(Path(sys.argv[1]), Path(sys.argv[2]))
    print(json.dumps(result, indent=2))
    sys.exit(0 if result["identical"] else 1)
