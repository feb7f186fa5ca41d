"""Trust in a target cache: every chunk record carries a checksum of the rows it wrote, and a
cache is verified (shapes, checksums, finite values) before anything learns from it.

    repsearch verify CACHE     checks everything, prints a one-line verdict (exit 2 if damaged)
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from repsearch.errors import UserError

ROW_ARRAYS = ("ce", "evals")


def _damaged(cache, what: str) -> UserError:
    return UserError(f"target cache {cache.path} is damaged: {what}; re-run the search into a new directory "
                     "(or delete the damaged chunk records under chunks/ and resume the same command)")


def load_array(cache, name: str) -> np.ndarray:
    """A cache array, memory-mapped, with the shape and dtype its manifest promises."""
    n = cache.manifest["count"]
    shapes = dict(zip(cache.names, cache.manifest["shapes"]))
    expected = {"ce": (n,), "evals": (n,), "indices": (n,), "labels": (n,)}.get(name) or (n, *shapes[name])
    try:
        arr = np.load(cache.path / f"{name}.npy", mmap_mode="r")
    except (OSError, ValueError) as e:
        raise _damaged(cache, f"{name}.npy cannot be read ({type(e).__name__}: {e})") from None
    if arr.shape != tuple(expected):
        raise _damaged(cache, f"{name}.npy has shape {arr.shape}, the manifest says {tuple(expected)}")
    return arr


def rows_checksum(cache, a: int, b: int) -> dict[str, str]:
    """sha256 of rows a:b of every searched array, as stored on disk."""
    out = {}
    for name in (*cache.names, *ROW_ARRAYS):
        arr = np.load(cache.path / f"{name}.npy", mmap_mode="r")
        out[name] = hashlib.sha256(np.ascontiguousarray(arr[a:b]).tobytes()).hexdigest()
    return out


def verify_cache(cache) -> dict:
    """Check every complete chunk against its record: checksums of its rows and finite values.
    Returns counts; raises a UserError naming the first damage found. Done once per opened cache
    (a run learns several variants from one cache)."""
    if cache.verified is not None:
        return cache.verified
    arrays = cache.arrays()  # shapes and readability of every array
    checked = unchecked = 0
    for path in sorted((cache.path / "chunks").glob("*.json")):
        try:
            record = json.loads(path.read_text())
            a, b = record["rows"]
        except (OSError, ValueError, KeyError, TypeError):
            raise _damaged(cache, f"chunk record {path.name} is unreadable") from None
        for name in (*cache.names, "ce"):
            if not np.isfinite(np.asarray(arrays[name][a:b], dtype=np.float64)).all():
                raise _damaged(cache, f"{name}.npy rows {a}-{b - 1} hold NaN or inf")
        if "checksums" not in record:
            unchecked += 1  # written before chunk checksums existed
            continue
        got = rows_checksum(cache, a, b)
        bad = [k for k, v in record["checksums"].items() if got.get(k) != v]
        if bad:
            raise _damaged(cache, f"{', '.join(f'{k}.npy' for k in bad)} rows {a}-{b - 1} differ from what the search "
                                  f"wrote (chunk {path.stem}'s checksum)")
        checked += 1
    cache.verified = {"chunks_verified": checked, "chunks_without_checksum": unchecked,
                      "images": int(cache.manifest["count"]), "complete": cache.complete}
    return cache.verified
