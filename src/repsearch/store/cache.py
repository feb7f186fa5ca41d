"""The on-disk target cache: searched representations for every image, resumable by chunk.

    CACHE/manifest.json    format version, resolved config, fingerprints, shapes, dtype, counts
    CACHE/network.pt       the search network's weights (so learning and analysis see the same one)
    CACHE/indices.npy      dataset index of each row; labels.npy: its label
    CACHE/block{i}.npy     searched output of stage i (float16 by default), memory-mapped; as many
                           as the model has stages
    CACHE/logits.npy       searched logits (float32); ce.npy: final best CE; evals.npy: evaluations
    CACHE/chunks/NNNNN.json  written last for each chunk (atomic rename): that chunk is complete,
                           with its per-point, per-generation curves and timings

A chunk is complete exactly when its record exists, so a killed search resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from repsearch.config.overrides import RENAMED
from repsearch.errors import UserError

from .atomic import (
    atomic_torch_save,
    atomic_write_json,
    require_free,
    reserve,
    tensor_bytes,
    writing,
)

FORMAT_VERSION = 2  # 2: search points from the model (names in the manifest), fingerprint of whole sections


def point_names(num_points: int) -> list[str]:
    """Array names of the search points: block0..block{N-2} for the stages, then logits."""
    return [f"block{i}" for i in range(num_points - 1)] + ["logits"]


# Fields added to `search`/`model` after format 2, with the behaviour caches had before them: at
# that value they are left out of the fingerprint, so existing caches stay valid; any other value
# is hashed like every other field.
ADDED_LATER = {"search": {"blur_border": "valid", "rng": "generator", "precision": "fp32", "stream": 0}, "model": {}}


def search_fingerprint(cfg, dataset_fingerprint: str, model_source: str = "") -> str:
    """Everything that changes what the search writes: the whole `search` and `model` sections, the
    data selection, the seed, the dataset itself, and a user model's source. The `engine` section
    (speed only) is left out by construction, not by a list of exceptions."""
    data = {k: v for k, v in vars(cfg.data).items() if k not in ("root", "download")}
    search, model = ({_hashed_name(name, k): v for k, v in vars(section).items() if ADDED_LATER[name].get(k, object()) != v}
                     for name, section in (("search", cfg.search), ("model", cfg.model)))
    key = {"search": search, "model": model, "data": data, "seed": cfg.seed,
           "dataset": dataset_fingerprint, "model_source": model_source}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _hashed_name(section: str, field: str) -> str:
    """A renamed field is hashed under its old name (`config.overrides.RENAMED`): same cache, same fingerprint."""
    old = {new: old for old, new in RENAMED.items()}.get(f"{section}.{field}")
    return old.split(".", 1)[1] if old else field


class TargetCache:
    def __init__(self, path: Path, manifest: dict):
        self.path, self.manifest = Path(path), manifest
        self._arrays = None
        self.verified = None  # verify.verify_cache's report, once it has run on this object

    # --- creation and opening -------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, *, config: dict, fingerprint: str, dataset: str, indices: np.ndarray,
               labels: np.ndarray, shapes: list, dtype: str, chunk_images: int, network_state: dict) -> "TargetCache":
        """Every array is created at full size and its disk space reserved before the first chunk
        is searched, so a full disk is refused here, with nothing left behind."""
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise UserError(f"{path} exists and is not a target cache; choose another --cache/--out directory")
        n, names = len(indices), point_names(len(shapes))
        arrays = {name: (np.float32 if name == "logits" else np.dtype(dtype), (n, *shape))
                  for name, shape in zip(names, shapes)}
        arrays.update(ce=(np.float32, (n,)), evals=(np.int64, (n,)))
        require_free(path if path.exists() else path.parent, sum(np.dtype(dt).itemsize * int(np.prod(shape))
                                                                 for dt, shape in arrays.values()) + tensor_bytes(network_state))
        try:
            (path / "chunks").mkdir(parents=True, exist_ok=True)
            with writing(path):
                np.save(path / "indices.npy", indices.astype(np.int64))
                np.save(path / "labels.npy", labels.astype(np.int64))
                for name, (dt, shape) in arrays.items():
                    np.lib.format.open_memmap(path / f"{name}.npy", mode="w+", dtype=dt, shape=shape).flush()
                    reserve(path / f"{name}.npy")
            atomic_torch_save(network_state, path / "network.pt")
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)  # it was empty or absent: no manifest, no cache
            raise
        manifest = {"format_version": FORMAT_VERSION, "fingerprint": fingerprint, "dataset": dataset, "count": n,
                    "points": names, "shapes": [list(s) for s in shapes], "dtype": dtype, "chunk_images": chunk_images,
                    "num_chunks": -(-n // chunk_images), "config": config, "complete": False}
        atomic_write_json(path / "manifest.json", manifest)  # last: its presence makes this a cache
        return cls(path, manifest)

    def reserve(self) -> None:
        """Claim the arrays' disk space again before a resumed search writes into them (a cache
        made by an older version, or copied, may be sparse)."""
        for name in (*self.names, "ce", "evals"):
            reserve(self.path / f"{name}.npy")

    @classmethod
    def open(cls, path: Path, fingerprint: str | tuple[str, ...] | None = None) -> "TargetCache":
        path = Path(path)
        mf = path / "manifest.json"
        if not mf.exists():
            raise UserError(f"no target cache at {path} (manifest.json missing); run 'repsearch search' first")
        try:
            manifest = json.loads(mf.read_text())
            manifest["fingerprint"], manifest["points"]
        except (OSError, ValueError, TypeError, KeyError):
            raise UserError(f"target cache {path} has an unreadable manifest.json (damaged); re-run the search into "
                            "a new directory") from None
        if manifest.get("format_version") != FORMAT_VERSION:
            raise UserError(f"target cache {path} has format {manifest.get('format_version')}, this version reads "
                            f"{FORMAT_VERSION}; re-run the search")
        accepted = (fingerprint,) if isinstance(fingerprint, str) else fingerprint
        if accepted is not None and manifest["fingerprint"] not in accepted:
            raise UserError(f"target cache {path} was made for another dataset/network/search config "
                            f"(fingerprint {manifest['fingerprint']} != {accepted[0]}); use a new cache directory "
                            "or the config it was made with (see its manifest.json)")
        return cls(path, manifest)

    @property
    def names(self) -> list[str]:
        return self.manifest["points"]

    @property
    def num_stages(self) -> int:
        return len(self.names) - 1

    # --- writing ----------------------------------------------------------------------------
    def chunk_rows(self, c: int) -> tuple[int, int]:
        k = self.manifest["chunk_images"]
        return c * k, min((c + 1) * k, self.manifest["count"])

    def done_chunks(self) -> set[int]:
        return {int(p.stem) for p in (self.path / "chunks").glob("*.json")}

    def write_chunk(self, c: int, reps: list[torch.Tensor], ce: torch.Tensor, evals: torch.Tensor, record: dict) -> None:
        """Write chunk c's rows, then its record (with a checksum of every row written): the
        record's presence is what makes the chunk complete."""
        from .verify import rows_checksum
        a, b = self.chunk_rows(c)
        arrays = {name: np.load(self.path / f"{name}.npy", mmap_mode="r+")
                  for name in (*self.names, "ce", "evals")}
        rows = {}
        for (name, arr), t in zip(arrays.items(), (*reps, ce, evals)):
            v = t.detach().cpu().numpy()
            with np.errstate(over="ignore"):  # an overflow is checked for, and named, just below
                rows[name] = v.astype(arr.dtype)
            # finite values that the cache's dtype cannot hold (e.g. raw targets in float16): refuse, write nothing
            if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(rows[name]).all() and np.isfinite(v).all():
                raise UserError(f"search point {name} has values beyond the range of the cache's {arr.dtype} "
                                f"(largest {float(np.abs(v).max()):.3g}); set search.dtype=float32 and search again into a "
                                "new directory")
        for name, arr in arrays.items():
            arr[a:b] = rows[name]
            arr.flush()
        del arrays
        record = {**record, "checksums": rows_checksum(self, a, b)}
        atomic_write_json(self.path / "chunks" / f"{c:05d}.json", {"chunk": c, "rows": [a, b], **record})

    def finalize(self, extra: dict) -> None:
        self.manifest.update(extra, complete=True)
        atomic_write_json(self.path / "manifest.json", self.manifest)

    # --- reading ----------------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        return len(self.done_chunks()) == self.manifest["num_chunks"]

    def require_complete(self) -> None:
        if not self.complete:
            done = len(self.done_chunks())
            raise UserError(f"target cache {self.path} is incomplete ({done}/{self.manifest['num_chunks']} chunks); "
                            "resume it with the same 'repsearch search' command")

    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            from .verify import load_array
            self._arrays = {name: load_array(self, name) for name in (*self.names, "ce", "evals", "indices", "labels")}
        return self._arrays

    def rows_for(self, dataset_indices) -> np.ndarray:
        """Cache rows holding the given dataset indices (error if some were not searched)."""
        idx = np.asarray(dataset_indices)
        all_idx = self.arrays()["indices"]
        pos = np.searchsorted(all_idx, idx)
        pos = np.clip(pos, 0, len(all_idx) - 1)
        if not np.array_equal(all_idx[pos], idx):
            missing = idx[all_idx[pos] != idx][:5].tolist()
            raise UserError(f"target cache {self.path} has no targets for images {missing}...; it covers "
                            f"{len(all_idx)} images (search with the same data.subset and without --limit)")
        return pos

    def load(self, rows, device="cpu", dtype=torch.float16) -> dict[str, torch.Tensor]:
        """Targets for the given rows as tensors by point name (stage outputs in `dtype`, logits float32)."""
        arr = self.arrays()
        rows = np.asarray(rows)
        out = {name: torch.from_numpy(np.ascontiguousarray(arr[name][rows])) for name in self.names}
        return {k: v.to(device, dtype=torch.float32 if k == "logits" else dtype) for k, v in out.items()}

    def curves(self) -> dict:
        """Mean best and mean population CE per search point and generation, over all complete chunks."""
        recs = [json.loads(p.read_text()) for p in sorted((self.path / "chunks").glob("*.json"))]
        out = {}
        for point in range(len(self.names)):
            parts = [r["curves"][str(point)] for r in recs]
            if not parts:
                continue
            n = min(len(p["best_sum"]) for p in parts)
            count = sum(p["count"] for p in parts)
            out[point] = {"best": [sum(p["best_sum"][g] for p in parts) / count for g in range(n)],
                          "mean": [sum(p["mean_sum"][g] for p in parts) / count for g in range(n)]}
        return out
