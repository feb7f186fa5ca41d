"""Search on several processes (torchrun, gloo on CPU): ranks share one cache's chunks, and the
cache is the same bytes as one process makes, also when ranks resume a partial cache."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

SEARCH = ["search", "--preset", "quickstart", "--no-progress", "--set", "data.subset=120",
          "--set", "search.generations=[3,2,2,2]", "--set", "engine.chunk_images=16"]
ARRAYS = ("block0", "block1", "block2", "logits", "ce", "evals")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same threads per rank in every run


def one_process(*args):
    return subprocess.run([sys.executable, "-m", "repsearch", *args], capture_output=True, text=True, env=ENV)


def two_ranks(*args):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "repsearch", *args], capture_output=True, text=True, env=ENV, timeout=600)


def arrays(cache):
    return {name: np.load(cache / f"{name}.npy") for name in ARRAYS}


def same_bytes(a, b):
    return all(a[k].tobytes() == b[k].tobytes() for k in ARRAYS)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "one"
    r = one_process(*SEARCH, "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out / "cache"


def test_two_ranks_share_the_chunks_and_write_the_same_bytes(single, tmp_path):
    out = tmp_path / "two"
    r = two_ranks(*SEARCH, "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    cache = out / "cache"
    records = [json.loads(p.read_text()) for p in sorted((cache / "chunks").glob("*.json"))]
    assert {rec["rank"] for rec in records} == {0, 1} and len(records) == 8  # 120 images / 16
    assert json.loads((cache / "manifest.json").read_text())["complete"]
    assert same_bytes(arrays(single), arrays(cache))
    assert (out / "summary.json").exists() and (out / "config.json").exists()


def test_two_ranks_resume_a_partial_cache_to_the_same_bytes(single, tmp_path):
    import shutil
    out = tmp_path / "resumed"
    r = one_process(*SEARCH, "--out", str(out))
    assert r.returncode == 0
    for c in (1, 4, 5):  # these chunks never happened
        (out / "cache" / "chunks" / f"{c:05d}.json").unlink()
        for name in ARRAYS:
            arr = np.load(out / "cache" / f"{name}.npy", mmap_mode="r+")
            arr[c * 16:(c + 1) * 16] = 0
            arr.flush()
    r = two_ranks(*SEARCH, "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    redone = {json.loads((out / "cache" / "chunks" / f"{c:05d}.json").read_text())["rank"] for c in (1, 4, 5)}
    assert redone == {0, 1}
    assert same_bytes(arrays(single), arrays(out / "cache"))
    shutil.rmtree(out)


def test_learning_under_torchrun_is_refused_in_one_line(tmp_path):
    r = two_ranks("baseline", "--preset", "quickstart", "--out", str(tmp_path / "b"))
    assert r.returncode != 0 and "runs in one process" in r.stderr
    assert not (tmp_path / "b").exists()
