"""A full disk is one line at a clean point, nothing is half-written, and the same command resumes.

The end-to-end cases run on a real small tmpfs (mounting needs root; they skip with a reason
elsewhere); the refusal before a cache is created is checked everywhere with the free space faked.
"""
import subprocess
import sys

import numpy as np
import pytest
import torch

from repsearch.data import prepare
from repsearch.errors import UserError
from repsearch.search.pool import run_search
from repsearch.store import atomic as storage
from repsearch.store.cache import TargetCache

from .test_search import tiny

SEARCH = ["--preset", "quickstart", "--no-progress", "--set", "data.subset=200", "--set", "search.generations=[2,2,2,1]"]


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs at tmp_path/disk, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


def fill(disk, leave: int = 0):
    """Take all of the disk's free space but `leave` bytes; returns the filler to delete."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while storage.free_bytes(disk) > leave:
                f.write(b"\0" * min(1 << 16, max(4096, storage.free_bytes(disk) - leave)))
                f.flush()
        except OSError:
            pass
    return filler


def cli(*args):
    return subprocess.run([sys.executable, "-m", "repsearch", *args], capture_output=True, text=True)


def test_a_cache_is_refused_before_anything_is_written_when_space_is_short(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "free_bytes", lambda path: 1000)
    with pytest.raises(UserError, match="not enough disk space"):
        TargetCache.create(tmp_path / "c", config={}, fingerprint="f", dataset="d", indices=np.arange(10),
                           labels=np.zeros(10), shapes=[(4, 3, 3), (10,)], dtype="float16", chunk_images=5,
                           network_state={"w": torch.zeros(3)})
    assert not (tmp_path / "c").exists()


@pytest.mark.subprocess
def test_a_full_disk_before_the_search_is_one_line_and_the_same_command_then_runs(small_disk):
    filler = fill(small_disk, leave=1 << 20)
    out = small_disk / "run"
    r = cli("search", *SEARCH, "--out", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "not enough disk space" in r.stderr and "re-run the same command" in r.stderr
    assert not (out / "cache").exists()
    filler.unlink()
    r = cli("search", *SEARCH, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert TargetCache.open(out / "cache").complete


def test_a_disk_filled_during_the_search_stops_at_a_chunk_boundary_and_resumes(small_disk, monkeypatch):
    """The arrays' space is reserved up front, so chunk rows never hit a full disk inside a memory
    map (SIGBUS); the chunk's record then fails cleanly and the same search resumes after it."""
    import repsearch.search.pool as search_mod
    cfg = tiny("data.subset=200", "search.generations=[2,2,2,1]", "engine.chunk_images=50")
    prep, cache_dir = prepare(cfg), small_disk / "cache"
    original, filler = search_mod.search_chunk, []

    def chunk_then_fill(*args):
        record = original(*args)
        if not filler:
            filler.append(fill(small_disk))
        return record

    monkeypatch.setattr(search_mod, "search_chunk", chunk_then_fill)
    with pytest.raises(UserError, match="not enough disk space"):
        run_search(prep, cfg, cache_dir)
    assert TargetCache.open(cache_dir).done_chunks() == {0}
    assert not list(cache_dir.rglob(".*.tmp"))
    filler[0].unlink()
    monkeypatch.setattr(search_mod, "search_chunk", original)
    cache, _ = run_search(prep, cfg, cache_dir)
    assert cache.complete
    from repsearch.store.verify import verify_cache
    verify_cache(cache)


def test_a_checkpoint_on_a_full_disk_keeps_the_previous_one(small_disk):
    path = small_disk / "ck.pt"
    storage.atomic_torch_save({"w": torch.ones(1000)}, path)
    filler = fill(small_disk, leave=2000)
    with pytest.raises(UserError, match="not enough disk space"):
        storage.atomic_torch_save({"w": torch.zeros(300_000)}, path)
    assert torch.equal(torch.load(path)["w"], torch.ones(1000))
    assert not list(small_disk.glob(".*.tmp"))
    filler.unlink()
    storage.atomic_torch_save({"w": torch.zeros(300_000)}, path)
    assert torch.load(path)["w"].shape == (300_000,)


def test_an_append_on_a_full_disk_leaves_no_half_line(small_disk):
    log = small_disk / "metrics.jsonl"
    storage.append_line(log, '{"epoch": 1}')
    filler = fill(small_disk)
    with pytest.raises(UserError, match="not enough disk space"):
        for _ in range(1000):  # the first line may still fit in the file's last block
            storage.append_line(log, '{"epoch": 2, "pad": "' + "x" * 5000 + '"}')
    filler.unlink()
    lines = log.read_text().splitlines()
    assert lines[0] == '{"epoch": 1}' and all(line.endswith("}") for line in lines)
