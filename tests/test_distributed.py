"""Several processes (torchrun, gloo on CPU): ranks share one cache's chunks and the cache is the
same bytes as one process makes, also when ranks resume a partial cache; DDP learning on two
ranks is one process's learning at the same global batch."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.torchrun

SEARCH = ["search", "--preset", "quickstart", "--no-progress", "--set", "data.subset=120",
          "--set", "search.generations=[3,2,2,2]", "--set", "engine.chunk_images=16"]
ARRAYS = ("block0", "block1", "block2", "logits", "ce", "evals")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same threads per rank in every run


def one_process(*args):
    return subprocess.run([sys.executable, "-m", "repsearch", *args], capture_output=True, text=True, env=ENV)


def torchrun(*args, timeout: int = 600):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout)


def two_ranks(*args):
    return torchrun("-m", "repsearch", *args)


def fixture_on_two_ranks(script: str, out_dir, timeout: int = 300):
    """tests/fixtures/SCRIPT under torchrun; it writes each rank's findings under out_dir."""
    return torchrun(os.path.join(os.path.dirname(__file__), "fixtures", script), out_dir, timeout=timeout)


def why(r) -> str:
    """A failed torchrun's cause: every rank's exception line, or a C++ abort's message (SIGABRT),
    first (the tail alone shows only the rank that was left waiting), then the tail."""
    causes = [line for line in r.stderr.splitlines()
              if re.match(r"\[rank\d+\]: \w+(Error|Exception)\b", line) or "terminate called" in line or "what():" in line]
    return "\n".join(causes) + "\n...\n" + r.stderr[-2000:]


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
    assert r.returncode == 0, why(r)
    cache = out / "cache"
    records = [json.loads(p.read_text()) for p in sorted((cache / "chunks").glob("*.json"))]
    assert {rec["rank"] for rec in records} == {0, 1} and len(records) == 8  # 120 images / 16
    assert json.loads((cache / "manifest.json").read_text())["complete"]
    assert same_bytes(arrays(single), arrays(cache))
    assert (out / "summary.json").exists() and (out / "config.json").exists()


def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_nodes_by_rendezvous_write_the_same_bytes_as_one_process(single, tmp_path):
    """The multi-node launch, both nodes on this machine: two torchrun agents (--nnodes 2, one rank
    each) meet at a c10d rendezvous on 127.0.0.1 and share the chunks; the cache is the same bytes
    as one process writes (N nodes x 8 GPUs is the same command: docs/performance.md)."""
    out, port = tmp_path / "nodes", free_port()
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(rank),
                               "--nproc_per_node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
                               "--rdzv-id", "repsearch-test", "-m", "repsearch", *SEARCH, "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV) for rank in (0, 1)]
    results = [node.communicate(timeout=600) for node in nodes]
    for node, (_, err) in zip(nodes, results):
        assert node.returncode == 0, err[-3000:]
    cache = out / "cache"
    ranks = {json.loads(p.read_text())["rank"] for p in (cache / "chunks").glob("*.json")}
    assert ranks == {0, 1} and same_bytes(arrays(single), arrays(cache))


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
    assert r.returncode == 0, why(r)
    redone = {json.loads((out / "cache" / "chunks" / f"{c:05d}.json").read_text())["rank"] for c in (1, 4, 5)}
    assert redone == {0, 1}
    assert same_bytes(arrays(single), arrays(out / "cache"))
    shutil.rmtree(out)


def test_commands_without_a_multi_process_path_refuse_torchrun_in_one_line(tmp_path):
    r = two_ranks("scaling", "--preset", "quickstart", "--out", str(tmp_path / "s"))
    assert r.returncode != 0 and "runs in one process" in r.stderr and "rounds take torchrun" in r.stderr
    assert not (tmp_path / "s").exists()


TINY_ROUNDS = ["--overlay", "tiny"]


def test_rounds_on_two_ranks_search_and_learn_together(tmp_path):
    """`repsearch rounds` under torchrun: every stage joins the process group (round 1 searches
    with round 0's learned weights, chunks shared), rank 0 alone writes and prints."""
    out = tmp_path / "r"
    r = two_ranks("rounds", "--preset", "quickstart", "--no-progress", "--rounds", "2", "--learners", "warm",
                  *TINY_ROUNDS, "--out", str(out))
    assert r.returncode == 0, why(r)
    result = json.loads((out / "rounds.json").read_text())
    assert [sorted(k for k in ("scratch", "warm") if k in rec) for rec in result["rounds"]] == [["scratch"], ["warm"]]
    assert r.stdout.count("run directory:") == 1
    shards = json.loads((out / "round1" / "cache" / "manifest.json").read_text())
    assert shards["complete"]


def test_rounds_on_two_ranks_adopt_round0_once(tmp_path):
    """`--round0` under torchrun: rank 0 links and copies while the other waits, then both run round 1."""
    common = ("--preset", "quickstart", "--no-progress", *TINY_ROUNDS)
    assert one_process("search", *common, "--out", str(tmp_path / "s")).returncode == 0
    assert one_process("train", *common, "--cache", str(tmp_path / "s" / "cache"), "--out", str(tmp_path / "t")).returncode == 0
    out = tmp_path / "r"
    r = two_ranks("rounds", *common, "--rounds", "2", "--learners", "warm",
                  "--round0", str(tmp_path / "s" / "cache"), str(tmp_path / "t"), "--out", str(out))
    assert r.returncode == 0, why(r)
    assert (out / "round0" / "learn-scratch" / "model-learn-scratch.pt").read_bytes() == (tmp_path / "t" / "model-learn.pt").read_bytes()
    assert not (out / "round0" / ".learn-scratch.tmp").exists()
    assert json.loads((out / "round1" / "cache" / "manifest.json").read_text())["complete"]


MLP_BASELINE = ["baseline", "--preset", "quickstart", "--no-progress", "--set", "model.name=mlp",
                "--set", "model.widths=[32,32,32]", "--set", "data.subset=400", "--set", "baseline.epochs=3",
                "--set", "baseline.batch_size=100"]


def test_ddp_training_on_two_ranks_is_one_process_training(tmp_path):
    """Without BatchNorm (the mlp: LayerNorm is per sample) two ranks compute exactly the global
    batch's gradient: each rank sums over its half, DDP averages, the loss is scaled by the world.
    So the trained weights equal one process's up to float summation order."""
    import torch
    one, two = tmp_path / "one", tmp_path / "two"
    assert one_process(*MLP_BASELINE, "--out", str(one)).returncode == 0
    r = two_ranks(*MLP_BASELINE, "--out", str(two))
    assert r.returncode == 0, why(r)
    a, b = torch.load(one / "model-depth1.pt"), torch.load(two / "model-depth1.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-4, rtol=1e-3), k
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (one, two))
    assert abs(s1["test_accuracy"] - s2["test_accuracy"]) <= 0.01
    assert len((two / "metrics.jsonl").read_text().splitlines()) == len((one / "metrics.jsonl").read_text().splitlines())


def test_run_on_two_ranks_end_to_end(tmp_path):
    """Search shared by chunks, SGD and search-based learning with DDP; rank 0 writes the tables,
    figures and report; a second call reuses every stage (the ranks agree on what is done)."""
    args = ["run", "--preset", "quickstart", "--no-progress", "--set", "data.subset=300", "--set", "learn.epochs=2",
            "--set", "baseline.epochs=2", "--set", "learn.probe_images=100", "--set", "search.generations=[3,2,2,2]",
            "--set", "learn.head_refit_l2=0.01", "--out", str(tmp_path / "run")]
    r = two_ranks(*args)
    assert r.returncode == 0, why(r)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    sgd = json.loads((tmp_path / "run" / "seed0" / "sgd-noaug" / "summary.json").read_text())
    assert summary["sgd_test_accuracy"] == sgd["test_accuracy"] and (tmp_path / "run" / "report.html").exists()
    assert r.stdout.count("| SGD |") == 1  # printed once, by rank 0
    refit = json.loads((tmp_path / "run" / "seed0" / "learn-all-noaug" / "summary.json").read_text())["head_refit"]
    assert refit["objective_after"] <= refit["objective_before"]  # the shared feature forwards, gathered
    again = two_ranks(*args)
    assert again.returncode == 0, why(again)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["sgd_test_accuracy"] == summary["sgd_test_accuracy"]


def killed_mid_run(args, marker, at_least: int, restarts: int):
    """Start `torchrun` on 2 ranks, kill -9 one worker once `marker()` counts `at_least`, wait."""
    import signal
    import time
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "--max-restarts", str(restarts), "-m", "repsearch", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 300
    while marker() < at_least and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert workers and proc.poll() is None, "the run ended before it could be killed"
    os.kill(int(workers[-1]), signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    return proc.returncode, err


ELASTIC = ["search", "--preset", "quickstart", "--no-progress", "--set", "data.subset=320",
           "--set", "search.generations=[4,3,3,2]", "--set", "engine.chunk_images=16"]


def test_a_rank_killed_mid_search_with_restarts_ends_in_the_same_cache(tmp_path):
    """torchrun --max-restarts 1: kill -9 of a worker after a few chunks; the restarted ranks
    resume the cache and it is byte-identical to an uninterrupted one-process search."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert one_process(*ELASTIC, "--out", str(one)).returncode == 0
    chunks = lambda: len(list((two / "cache" / "chunks").glob("*.json"))) if (two / "cache" / "chunks").exists() else 0
    rc, err = killed_mid_run([*ELASTIC, "--out", str(two)], chunks, 4, restarts=1)
    assert rc == 0, err[-3000:]
    assert chunks() == 20 and json.loads((two / "cache" / "manifest.json").read_text())["complete"]
    assert same_bytes(arrays(one / "cache"), arrays(two / "cache"))
    assert not list((two / "cache").rglob(".*.tmp"))


def test_without_restarts_a_killed_rank_leaves_only_whole_chunks_and_the_same_command_resumes(tmp_path):
    out = tmp_path / "run"
    chunks = lambda: len(list((out / "cache" / "chunks").glob("*.json"))) if (out / "cache" / "chunks").exists() else 0
    rc, err = killed_mid_run([*ELASTIC, "--out", str(out)], chunks, 4, restarts=0)
    assert rc != 0 and "exitcode" in err  # torchrun names the failed rank and its exit code
    done = chunks()
    assert 4 <= done < 20
    for record in (out / "cache" / "chunks").glob("*.json"):  # every record is whole JSON with its checksums
        assert "checksums" in json.loads(record.read_text())
    r = two_ranks(*ELASTIC, "--out", str(out))
    assert r.returncode == 0, why(r)
    from repsearch.store.cache import TargetCache
    from repsearch.store.verify import verify_cache
    verify_cache(TargetCache.open(out / "cache"))


def test_a_rank_killed_mid_training_with_restarts_resumes_from_the_checkpoint(tmp_path):
    """DDP training killed after a few epochs and restarted ends where an uninterrupted run does
    (both ranks reload rank 0's last checkpoint: model, optimizer, batch order)."""
    import torch
    args = [*MLP_BASELINE, "--set", "baseline.epochs=40"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    r = two_ranks(*args, "--out", str(full))
    assert r.returncode == 0, why(r)
    epochs = lambda: len((killed / "metrics.jsonl").read_text().splitlines()) if (killed / "metrics.jsonl").exists() else 0
    rc, err = killed_mid_run([*args, "--out", str(killed)], epochs, 5, restarts=1)
    assert rc == 0, err[-3000:]
    logged = [json.loads(x)["epoch"] for x in (killed / "metrics.jsonl").read_text().splitlines() if '"epoch"' in x]
    assert max(logged) == 40 and "exitcode: -9" in err  # a worker died, the restarted ranks finished
    a, b = torch.load(full / "model-depth1.pt"), torch.load(killed / "model-depth1.pt")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def test_ranks_whose_validation_scores_disagree_stop_early_together(tmp_path):
    """Each rank evaluates its own copy of the model (another rank's BatchNorm statistics differ by
    its last batch), so their scores can disagree; rank 0's decides the best epoch and the stop for
    all, or a rank that stopped would leave the other waiting at a collective (a 30,000-image
    MNIST run ended so, its learner stopped by patience at epoch 10)."""
    r = fixture_on_two_ranks("ddp_early_stop.py", tmp_path)
    assert r.returncode == 0, why(r)
    ranks = [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert sorted(x["rank"] for x in ranks) == [0, 1]
    assert {(x["epochs_run"], x["best_epoch"]) for x in ranks} == {(4, 2)}  # rank 0's scores: best at 2, patience 2


def test_shared_measurements_run_once_each_and_reach_every_rank(tmp_path):
    """`distributed.shared` splits independent jobs over the ranks (the learner's final test and
    probes on one, the untrained control on the other): each job runs on exactly one rank, every
    rank gets every result in order, and a job that raised stops every rank."""
    r = fixture_on_two_ranks("ddp_shared.py", tmp_path)
    assert r.returncode == 0, why(r)
    ranks = {k: json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1)}
    assert ranks[0]["ran"] == [0, 2] and ranks[1]["ran"] == [1]
    expected = [{"job": 0, "rank": 0}, {"job": 1, "rank": 1}, {"job": 2, "rank": 0}]
    assert ranks[0]["results"] == ranks[1]["results"] == expected
    assert ranks[1]["failure"] == "ValueError: job 1 failed"
    assert ranks[0]["failure"].startswith("UserError: another rank failed")


def test_shared_in_one_process_runs_every_job_in_order():
    from repsearch.store import distributed
    order = []
    assert distributed.shared([lambda: order.append("a") or 1, lambda: order.append("b") or 2]) == [1, 2]
    assert order == ["a", "b"]
    with pytest.raises(ZeroDivisionError):
        distributed.shared([lambda: 1 / 0])



def test_a_stage_returns_on_every_rank_only_once_rank0s_files_are_written(tmp_path):
    """Regression (CI, 2026-12-01): `rounds` loads a learner right after its stage; rank 1 got
    there before rank 0 had saved it and died with FileNotFoundError."""
    r = fixture_on_two_ranks("ddp_stage.py", tmp_path, timeout=120)
    assert r.returncode == 0, why(r)
    assert [json.loads((tmp_path / f"rank{k}.json").read_text())["sees_model"] for k in (0, 1)] == [True, True]
