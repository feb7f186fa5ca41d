"""Several independent searches of the same images (`search.stream`), and a learner that regresses
to their mean (`learn.target_searches`)."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from repsearch.data import prepare
from repsearch.learn.regression import mean_targets
from repsearch.search.noise import stream_seed
from repsearch.search.pool import run_search
from repsearch.store.cache import search_fingerprint
from repsearch.studies.stages import stream_config

from .conftest import cli_in_process
from .test_search import tiny

SMALL = ["data.subset=120", "search.generations=[2,2,2,1]", "learn.epochs=2", "baseline.epochs=1",
         "learn.batch_size=50", "learn.probe_images=60"]


@pytest.fixture(scope="module")
def two_streams(tmp_path_factory):
    """Streams 0 and 1 of one tiny search: the same 40 images and network, other random draws."""
    root = tmp_path_factory.mktemp("streams")
    cfg = tiny()
    prep = prepare(cfg)
    caches = [run_search(prep, stream_config(cfg, k), root / f"s{k}")[0] for k in (0, 1)]
    return cfg, prep, caches


def test_stream_zero_is_the_search_every_earlier_cache_holds():
    """Stream 0 draws with the seed itself and leaves the fingerprint of a config without the field;
    other streams get their own seeds, apart from the small seeds users choose."""
    assert stream_seed(5, 0) == 5
    seeds = {stream_seed(s, k) for s in range(3) for k in range(1, 4)}
    assert len(seeds) == 9 and min(seeds) >= 2 ** 32
    before = tiny()
    del before.search.stream
    assert search_fingerprint(tiny(), "data") == search_fingerprint(before, "data")
    assert search_fingerprint(tiny("search.stream=1"), "data") != search_fingerprint(before, "data")


def test_streams_search_the_same_images_with_the_same_network_but_draw_independently(two_streams):
    _, _, (c0, c1) = two_streams
    a0, a1 = c0.arrays(), c1.arrays()
    np.testing.assert_array_equal(a0["indices"], a1["indices"])
    n0, n1 = (torch.load(c.path / "network.pt", weights_only=True) for c in (c0, c1))
    assert n0.keys() == n1.keys() and all(torch.equal(n0[k], n1[k]) for k in n0)
    for name in c0.names:
        differs = (a0[name] != a1[name]).reshape(len(a0[name]), -1).any(1)
        assert differs.all(), f"{name}: some images got the same search in both streams"


def test_the_learners_targets_are_the_mean_of_the_searches(two_streams):
    """Blocks: the elementwise mean. Logits: the log of the mean softmax. One cache: its own targets."""
    _, prep, (c0, c1) = two_streams
    idx = prep.split.train.numpy()
    t0, t1 = (c.load(c.rows_for(idx), "cpu", torch.float32) for c in (c0, c1))
    mean = mean_targets([c0, c1], idx, "cpu")
    for name in c0.names[:-1]:
        torch.testing.assert_close(mean[name], (t0[name] + t1[name]) / 2)
    torch.testing.assert_close(mean["logits"].exp(), (t0["logits"].softmax(1) + t1["logits"].softmax(1)) / 2)
    single = mean_targets([c0], idx, "cpu")
    assert all(torch.equal(single[k], t0[k]) for k in t0)


def test_regressing_to_the_mean_is_the_mean_of_each_searchs_loss_up_to_a_constant(two_streams):
    """Why averaging is the right combination: for any output h and head q, the MSE to the mean
    target and the KL to the mean distribution differ from the losses averaged over searches by
    the same constant."""
    _, prep, (c0, c1) = two_streams
    idx = prep.split.train.numpy()
    ts = [c.load(c.rows_for(idx), "cpu", torch.float32) for c in (c0, c1)]
    mean = mean_targets([c0, c1], idx, "cpu")
    g = torch.Generator().manual_seed(0)
    gaps_mse, gaps_kl = [], []
    for _ in range(3):
        h = torch.randn(mean["block1"].shape, generator=g)
        q = torch.randn(mean["logits"].shape, generator=g).log_softmax(1)
        gaps_mse.append(F.mse_loss(h, mean["block1"]) - sum(F.mse_loss(h, t["block1"]) for t in ts) / 2)
        kl = [F.kl_div(q, t["logits"].log_softmax(1), log_target=True, reduction="sum") for t in ts]
        gaps_kl.append(F.kl_div(q, mean["logits"], log_target=True, reduction="sum") - sum(kl) / 2)
    for gaps in (gaps_mse, gaps_kl):
        torch.testing.assert_close(torch.stack(gaps), gaps[0].expand(3), atol=1e-3, rtol=0)


def test_run_learns_from_two_searches_and_train_reproduces_it_from_their_caches(tmp_path):
    out = tmp_path / "run"
    sets = [a for s in [*SMALL, "learn.target_searches=2"] for a in ("--set", s)]
    r = cli_in_process("run", "--preset", "quickstart", "--no-progress", "--out", out, *sets)
    assert r.returncode == 0, r.stderr
    seed = out / "seed0"
    learned = json.loads((seed / "learn-all-noaug" / "summary.json").read_text())
    assert learned["target_searches"] == 2
    results = json.loads((out / "results.json").read_text())
    stream1 = results["per_seed"][0]["search_streams"]
    assert len(stream1) == 1 and (seed / "cache-stream1" / "manifest.json").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["search_flops"] == results["per_seed"][0]["search"]["flops_total"] + stream1[0]["flops_total"]

    small = [a for s in SMALL for a in ("--set", s)]
    r = cli_in_process("train", "--preset", "quickstart", "--no-progress", "--out", tmp_path / "train",
                       "--cache", seed / "cache", seed / "cache-stream1", *small)
    assert r.returncode == 0, r.stderr
    again = json.loads((tmp_path / "train" / "summary.json").read_text())
    assert again["test_accuracy"] == learned["test_accuracy"] and again["target_ce_mean"] == learned["target_ce_mean"]
    assert json.loads((tmp_path / "train" / "config.json").read_text())["learn"]["target_searches"] == 2

    swapped = cli_in_process("train", "--preset", "quickstart", "--no-progress", "--out", tmp_path / "t2",
                             "--cache", seed / "cache-stream1", seed / "cache", *small)
    assert swapped.returncode == 2 and "another dataset/network/search config" in swapped.stderr
    three = cli_in_process("train", "--preset", "quickstart", "--no-progress", "--out", tmp_path / "t3",
                           "--cache", seed / "cache", seed / "cache-stream1", *small, "--set", "learn.target_searches=3")
    assert three.returncode == 2 and "3 but 2 caches" in three.stderr
    assert not (tmp_path / "t2").exists() and not (tmp_path / "t3").exists()
    alone = cli_in_process("train", "--preset", "quickstart", "--no-progress", "--out", tmp_path / "t4",
                           "--cache", seed / "cache-stream1", *small, "--set", "search.stream=1")
    assert alone.returncode == 0, alone.stderr  # the k-th cache is stream search.stream + k


def test_commands_that_learn_from_one_search_refuse_several():
    r = cli_in_process("rounds", "--preset", "quickstart", "--set", "learn.target_searches=2")
    assert r.returncode == 2 and "only 'repsearch run' and 'repsearch train'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    bad = cli_in_process("search", "--preset", "quickstart", "--set", "search.stream=-1")
    assert bad.returncode == 2 and "search.stream" in bad.stderr
