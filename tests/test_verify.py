"""A damaged target cache is found and named in one line (exit 2), never learned from."""
import json

import numpy as np
import pytest

from repsearch.config import resolve
from repsearch.data import prepare
from repsearch.search.pool import run_search

from .conftest import cli_in_process
from .test_search import TINY

ARGS = ["--preset", "quickstart", *sum((["--set", t] for t in [*TINY, "data.subset=30", "learn.epochs=1", "learn.batch_size=10",
                                                                "learn.probe_images=20"]), [])]


@pytest.fixture
def cache_dir(tmp_path):
    cfg = resolve("quickstart", [*TINY, "data.subset=30"])
    run_search(prepare(cfg), cfg, tmp_path / "cache")
    return tmp_path / "cache"


def cli(*args):
    return cli_in_process(*args)


def _rewrite_rows(path, fn):
    arr = np.load(path, mmap_mode="r+")
    fn(arr)
    arr.flush()


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "block1.npy").write_bytes((d / "block1.npy").read_bytes()[:500]), "block1.npy cannot be read"),
    (lambda d: (d / "manifest.json").write_text("{ not json"), "unreadable manifest.json"),
    (lambda d: _rewrite_rows(d / "block0.npy", lambda a: a.__setitem__((3, 0, 0, 0), a[3, 0, 0, 0] + 1)),
     "block0.npy rows 0-"),
    (lambda d: _rewrite_rows(d / "logits.npy", lambda a: a.__setitem__((5, 2), np.nan)), "logits.npy rows 0-"),
    (lambda d: (d / "chunks" / "00000.json").write_text("garbage"), "chunk record 00000.json is unreadable"),
])
def test_damaged_cache_is_named_by_verify_and_refused_by_train(cache_dir, tmp_path, damage, message):
    ok = cli("verify", str(cache_dir))
    assert ok.returncode == 0 and ok.stdout.startswith("ok:") and "1 chunk(s) verified" in ok.stdout, ok.stderr
    damage(cache_dir)
    for r in (cli("verify", str(cache_dir)), cli("train", *ARGS, "--cache", str(cache_dir), "--out", str(tmp_path / "t"))):
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert r.returncode == 2 and len(lines) == 1 and message in lines[0], r.stderr
    assert not (tmp_path / "t").exists()


def test_every_chunk_record_carries_checksums_of_its_rows(cache_dir):
    record = json.loads((cache_dir / "chunks" / "00000.json").read_text())
    assert set(record["checksums"]) == {"block0", "block1", "block2", "logits", "ce", "evals"}


def test_values_beyond_the_cache_dtype_are_refused_before_anything_is_written(tmp_path):
    """Raw targets can exceed float16's range: writing them would store inf silently."""
    import numpy as np
    import pytest
    import torch

    from repsearch.errors import UserError
    from repsearch.store.cache import TargetCache
    cache = TargetCache.create(tmp_path / "c", config={}, fingerprint="f", dataset="d", indices=np.arange(10),
                               labels=np.zeros(10), shapes=[(4, 3, 3), (10,)], dtype="float16", chunk_images=5,
                               network_state={"w": torch.zeros(3)})
    big = torch.full((5, 4, 3, 3), 1e6)
    args = (torch.zeros(5, 10), torch.ones(5), torch.ones(5, dtype=torch.int64), {})
    with pytest.raises(UserError, match="search.dtype=float32"):
        cache.write_chunk(0, [big, args[0]], *args[1:])
    assert not cache.done_chunks() and np.load(tmp_path / "c" / "block0.npy")[:5].max() == 0
    cache.write_chunk(0, [big / 1e3, args[0]], *args[1:])  # within range: written
    assert cache.done_chunks() == {0}
