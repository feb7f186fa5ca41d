"""Iterative search and learning (repsearch rounds): round r searches with round r-1's learner."""
import json

import pytest
import torch

from repsearch.cli.main import main
from repsearch.config import resolve
from repsearch.data import prepare
from repsearch.errors import UserError
from repsearch.search.pool import fingerprint_for, weights_hash
from repsearch.store.cache import TargetCache
from repsearch.studies.rounds import rounds

TINY = ["learn.epochs=3", "learn.select=best", "learn.groups_per_block=2"]  # on the tiny overlay: 3 epochs on 110 images, the best of them a learned network


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory):
    cfg = resolve("quickstart", TINY, overlays=["tiny"])
    prep = prepare(cfg)
    out = tmp_path_factory.mktemp("rounds")
    return cfg, prep, out, rounds(prep, cfg, out, n_rounds=2, carry="warm")


def _learned_state(out, r, kind):
    return torch.load(out / f"round{r}" / f"learn-{kind}" / f"model-learn-{kind}.pt", weights_only=True)


def test_round_searches_with_the_previous_rounds_learned_weights(two_rounds):
    _, _, out, _ = two_rounds
    learned = _learned_state(out, 0, "scratch")
    network = torch.load(out / "round1" / "cache" / "network.pt", weights_only=True)
    params = {k for k in learned if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert params and params <= set(network)
    for k in params:  # the weights are the learner's; only BatchNorm statistics are recalibrated
        assert torch.equal(network[k], learned[k]), k
    untrained = torch.load(out / "round0" / "cache" / "network.pt", weights_only=True)
    assert set(untrained) != set(network) or any(not torch.equal(untrained[k], network[k]) for k in params & set(untrained))


def test_learned_network_starts_the_search_lower_and_each_round_is_recorded(two_rounds):
    _, _, out, result = two_rounds
    r0, r1 = result["rounds"]
    # the untrained network's initial population is near chance; the learned network's is not
    assert r1["ce_per_point"][0]["start"] < r0["ce_per_point"][0]["start"] - 0.1
    assert "warm" not in r0 and {"scratch", "warm"} <= set(r1)
    assert r0["target_cosine_to_previous"] is None and len(r1["target_cosine_to_previous"]) == 4
    assert all(-1 <= c <= 1 for c in r1["target_cosine_to_previous"])
    # the warm learner's compute includes the carried learner's; a scratch learner's does not
    assert r1["warm"]["learn_flops_so_far"] == r1["warm"]["train_flops"] + r0["scratch"]["train_flops"]
    assert r1["scratch"]["learn_flops_so_far"] == r1["scratch"]["train_flops"]
    assert r1["cumulative_search_flops"] == r0["search_flops"] + r1["search_flops"]
    assert json.loads((out / "rounds.json").read_text())["rounds"][1]["round"] == 1
    assert (out / "rounds.png").stat().st_size > 0


def test_warm_learner_starts_from_the_carried_weights(two_rounds):
    _, _, out, _ = two_rounds
    epoch0 = [json.loads(l) for l in (out / "round1" / "learn-warm" / "metrics.jsonl").read_text().splitlines()]
    first = next(r for r in epoch0 if r.get("epoch") == 0 and "cos_block0" in r)
    carried = [json.loads(l) for l in (out / "round0" / "learn-scratch" / "metrics.jsonl").read_text().splitlines()]
    # before any step the warm learner is the carried model: its outputs are no untrained net's
    fresh = next(r for r in carried if r.get("epoch") == 0 and "cos_block0" in r)
    scratch1 = [json.loads(l) for l in (out / "round1" / "learn-scratch" / "metrics.jsonl").read_text().splitlines()]
    fresh1 = next(r for r in scratch1 if r.get("epoch") == 0 and "cos_block0" in r)
    # Closer to round 1's targets than an untrained learner, on average over the blocks (block 2
    # alone was within 0.02 of it on an AVX-512 machine: the tiny carried learner barely learned
    # there), and not the untrained network: a fresh learner's entropies repeat across rounds.
    mean_cos = [sum(r[f"cos_block{b}"] for b in range(3)) / 3 for r in (first, fresh1)]
    assert mean_cos[0] > mean_cos[1] + 0.1, (first, fresh1)
    assert fresh1["hcoll_within_block0"] == fresh["hcoll_within_block0"] != first["hcoll_within_block0"]


def test_plotted_warm_chain_starts_at_the_learner_it_was_warm_started_from(two_rounds):
    from repsearch.studies.rounds import accuracy_series
    _, _, _, result = two_rounds
    r0, r1 = result["rounds"]
    series = accuracy_series(result)
    assert series["warm"] == [(0, 100 * r0["scratch"]["test_accuracy"]), (1, 100 * r1["warm"]["test_accuracy"])]
    assert series["scratch"] == [(0, 100 * r0["scratch"]["test_accuracy"]), (1, 100 * r1["scratch"]["test_accuracy"])]
    # carried from scratch, round 1's warm learner started from round 0's too, but round 2's would
    # not continue round 1's warm one: no chain, no line back
    assert accuracy_series({**result, "carry": "scratch"})["warm"] == [(1, 100 * r1["warm"]["test_accuracy"])]


def test_resume_reuses_finished_rounds_and_a_changed_network_is_refused(two_rounds):
    cfg, prep, out, result = two_rounds
    stamp = (out / "round1" / "learn-warm" / "summary.json").stat().st_mtime_ns
    again = rounds(prep, cfg, out, n_rounds=2, carry="warm")
    assert again["rounds"] == result["rounds"]
    assert (out / "round1" / "learn-warm" / "summary.json").stat().st_mtime_ns == stamp
    other = torch.nn.Linear(2, 2)
    with pytest.raises(UserError):
        TargetCache.open(out / "round1" / "cache", fingerprint_for(cfg, prep, network=other))
    assert weights_hash(other) != weights_hash(torch.nn.Linear(2, 2))


def test_rounds_cli_rejects_zero_rounds(tmp_path, capsys):
    assert main(["rounds", "--preset", "quickstart", "--rounds", "0", "--out", str(tmp_path / "r")]) == 2
    assert "--rounds must be >= 1" in capsys.readouterr().err


def test_warm_only_rounds_skip_the_scratch_learner(two_rounds, tmp_path):
    cfg, prep, out, result = two_rounds
    # resume round 0 and round 1's search from the fixture's run, so only the choice of learners differs
    import shutil
    shutil.copytree(out / "sgd", tmp_path / "sgd")
    shutil.copytree(out / "round0", tmp_path / "round0")
    shutil.copytree(out / "round1" / "cache", tmp_path / "round1" / "cache")
    warm_only = rounds(prep, cfg, tmp_path, n_rounds=2, carry="warm", learners=("warm",))
    assert not (tmp_path / "round1" / "learn-scratch").exists()
    assert "scratch" not in warm_only["rounds"][1] and "scratch" in warm_only["rounds"][0]
    assert warm_only["rounds"][1]["warm"] == result["rounds"][1]["warm"]
    with pytest.raises(UserError, match="carried"):
        rounds(prep, cfg, tmp_path, n_rounds=2, carry="scratch", learners=("warm",))


def test_later_overrides_change_only_later_rounds(two_rounds, tmp_path):
    """`later`: round 0 is the fixture's (its cache reused, so its config is unchanged), round 1
    searches with the overridden generations, which its cache's manifest records."""
    import shutil
    cfg, prep, out, result = two_rounds
    shutil.copytree(out / "sgd", tmp_path / "sgd")
    shutil.copytree(out / "round0", tmp_path / "round0")
    later = rounds(prep, cfg, tmp_path, n_rounds=2, learners=("warm",),
                   later=["search.generations=[1,1,1,1]"])
    assert later["rounds"][0] == result["rounds"][0]
    manifest = json.loads((tmp_path / "round1" / "cache" / "manifest.json").read_text())
    assert manifest["config"]["search"]["generations"] == [1, 1, 1, 1] != cfg.search.generations
    assert later["rounds"][1]["evaluations_per_image"] < result["rounds"][1]["evaluations_per_image"]
    with pytest.raises(UserError, match="only search"):
        rounds(prep, cfg, tmp_path / "x", n_rounds=2, later=["data.subset=50"])
    with pytest.raises(UserError, match="groups_per_block"):
        rounds(prep, cfg, tmp_path / "y", n_rounds=2, later=["learn.groups_per_block=1"])


@pytest.mark.parametrize("bad, said", [(["--learners", "warm", "--carry", "scratch"], "carried"),
                                       (["--later-set", "data.subset=5"], "only search"),
                                       (["--later-set", "learn.groups_per_block=3"], "groups_per_block")])
def test_rounds_cli_bad_choices_say_one_line_and_write_nothing(tmp_path, capsys, bad, said):
    assert main(["rounds", "--preset", "quickstart", "--rounds", "2", *bad, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def search_and_train(tmp_path_factory):
    """A finished `search` cache and the `train` run that learned from it, made as a user would."""
    d = tmp_path_factory.mktemp("round0")
    sets = ["--overlay", "tiny", *(a for s in TINY for a in ("--set", s))]
    assert main(["search", "--preset", "quickstart", *sets, "--out", str(d / "search"), "--no-progress"]) == 0
    assert main(["train", "--preset", "quickstart", *sets, "--cache", str(d / "search" / "cache"),
                 "--out", str(d / "train"), "--no-progress"]) == 0
    return d / "search" / "cache", d / "train", sets


def test_round0_adopts_a_finished_search_and_train(search_and_train, tmp_path):
    cache, train, sets = search_and_train
    out = tmp_path / "r"
    assert main(["rounds", "--preset", "quickstart", *sets, "--rounds", "2", "--learners", "warm",
                 "--round0", str(cache), str(train), "--out", str(out), "--no-progress"]) == 0
    adopted = out / "round0" / "learn-scratch"
    assert (out / "round0" / "cache").is_symlink() and (out / "round0" / "cache").samefile(cache)
    assert (adopted / "model-learn-scratch.pt").read_bytes() == (train / "model-learn.pt").read_bytes()
    assert (adopted / "metrics.jsonl").read_text() == (train / "metrics.jsonl").read_text()  # not trained again
    result = json.loads((out / "rounds.json").read_text())
    assert result["rounds"][0]["scratch"]["test_accuracy"] == json.loads((train / "summary.json").read_text())["test_accuracy"]
    learned = torch.load(train / "model-learn.pt", weights_only=True)
    network = torch.load(out / "round1" / "cache" / "network.pt", weights_only=True)
    params = [k for k in learned if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert params and all(torch.equal(network[k], learned[k]) for k in params)  # round 1 searched with it
    assert json.loads((out / "config.json").read_text())["round0"] == [str(cache.resolve()), str(train.resolve())]


@pytest.mark.parametrize("change, said", [("other-setting", "learn.epochs"), ("other-seed", "another dataset/network"),
                                          ("no-model", "has no model-learn.pt"), ("other-cache", "was trained on")])
def test_round0_that_round0_would_not_have_made_is_refused(search_and_train, tmp_path, capsys, change, said):
    import shutil
    cache, train, sets = search_and_train
    extra = {"other-setting": ["--set", "learn.epochs=2"], "other-seed": ["--seed", "1"]}.get(change, [])
    if change == "no-model":
        shutil.copytree(train, tmp_path / "train")
        (tmp_path / "train" / "model-learn.pt").unlink()
        train = tmp_path / "train"
    if change == "other-cache":
        shutil.copytree(cache, tmp_path / "cache")
        cache = tmp_path / "cache"
    argv = ["rounds", "--preset", "quickstart", *sets, *extra, "--rounds", "2", "--round0", str(cache), str(train),
            "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def test_round0_is_not_adopted_over_another_round0(search_and_train, tmp_path):
    from repsearch.studies.rounds import adopt_round0
    cache, train, _ = search_and_train
    (tmp_path / "round0").mkdir()
    (tmp_path / "round0" / "cache").symlink_to(tmp_path / "gone")  # a dangling link left by another run
    with pytest.raises(UserError, match="another round 0"):
        adopt_round0(tmp_path, cache, train)
    assert not (tmp_path / "round0" / "learn-scratch").exists()
