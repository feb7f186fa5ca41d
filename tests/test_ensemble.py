"""repsearch ensemble: K independent searches -> K learned models, against K SGD seeds."""
import json

import numpy as np
import pytest
import torch

from repsearch.config import resolve
from repsearch.data import prepare
from repsearch.learn.measures import linear_cka
from repsearch.studies.ensemble import diversity_metrics, ensemble, ensemble_metrics

TINY = ["baseline.epochs=2"]  # on the tiny overlay


def test_ensemble_prediction_is_the_mean_of_members_softmax():
    # input 0: the mean of logits says 1, the mean softmax 0 (label 0);
    # input 1: a majority vote says 0, the mean softmax 1 (label 1)
    logits = torch.tensor([[[0.0, 20.0], [0.0, 10.0]],
                           [[8.0, 0.0], [0.5, 0.0]],
                           [[8.0, 0.0], [0.5, 0.0]]])
    labels = torch.tensor([0, 1])
    assert logits.mean(0).argmax(1).tolist() == [1, 1]
    assert logits.argmax(2).mode(0).values.tolist() == [0, 0]
    m = ensemble_metrics(logits, labels)
    assert m["member_accuracy"] == [0.5, 0.5, 0.5]
    assert m["ensemble_accuracy_by_k"] == [0.5, 0.5, 1.0]
    assert m["disagreement"] == pytest.approx((1 + 1 + 0) / 3)


def test_ensemble_of_first_k_members_matches_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(5, 200, 7, generator=g), torch.randint(0, 7, (200,), generator=g)
    m = ensemble_metrics(logits, labels)
    for k in range(1, 6):
        direct = (logits[:k].softmax(2).mean(0).argmax(1) == labels).float().mean().item()
        assert m["ensemble_accuracy_by_k"][k - 1] == pytest.approx(direct)


def test_cka_is_one_for_rotated_copies_and_n_eff_counts_distinct_members():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, 3, 3, generator=g)
    q, _ = torch.linalg.qr(torch.randn(36, 36, generator=g))
    rotated = (x.flatten(1) @ q).reshape_as(x)
    assert linear_cka(x, rotated) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x, x[:, torch.randperm(4, generator=g)]) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x, torch.randn(64, 36, generator=g)) < 0.9
    same = diversity_metrics([[x], [x.clone()], [x.clone()]])
    assert same["cka_block0"] == pytest.approx(1.0) and same["n_eff_block0"] == pytest.approx(1.0)
    # three members whose representations of every input are mutually orthogonal: N_eff = 3
    e = torch.eye(3)
    ortho = [[e[i].expand(10, 3).clone()] for i in range(3)]
    assert diversity_metrics(ortho)["n_eff_block0"] == pytest.approx(3.0)


def test_members_search_independently_on_the_same_images_and_are_measured_as_trained(tmp_path):
    cfg = resolve("quickstart", TINY, overlays=["tiny"])
    prep = prepare(cfg)
    result = ensemble(prep, cfg, tmp_path, members=2, diversity_images=50)
    caches = [np.load(tmp_path / f"member{k}" / "cache" / "indices.npy") for k in range(2)]
    assert np.array_equal(caches[0], caches[1])  # the same images
    block0 = [np.load(tmp_path / f"member{k}" / "cache" / "block0.npy") for k in range(2)]
    assert not np.array_equal(block0[0], block0[1])  # independent searches
    for k in range(2):  # the measured models are the trained ones
        learn = json.loads((tmp_path / f"member{k}" / "learn" / "summary.json").read_text())
        sgd = json.loads((tmp_path / f"member{k}" / "sgd" / "summary.json").read_text())
        assert result["families"]["search"]["member_accuracy"][k] == pytest.approx(learn["test_accuracy"], abs=1e-6)
        assert result["families"]["sgd"]["member_accuracy"][k] == pytest.approx(sgd["test_accuracy"], abs=1e-6)
    assert json.loads((tmp_path / "ensemble.json").read_text())["members"] == 2
    assert "| SGD |" in (tmp_path / "ensemble.md").read_text() and (tmp_path / "ensemble.png").exists()
