import math

import pytest
import torch

from repsearch.learn.measures import linear_probe


def _blobs(n=200, d=10, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    centers = 4 * torch.randn(classes, d, generator=g)
    return centers[y] + torch.randn(n, d, generator=g), y


def test_linear_probe_separates_separable_classes():
    x, y = _blobs()
    assert linear_probe(x[:150], y[:150], x[150:], y[150:], 3) > 0.9


def test_linear_probe_survives_degenerate_features():
    """Features from a diverged learner (inf, NaN, a near-constant column with one huge value)
    must not raise: a diagnostic never ends a long run."""
    x, y = _blobs()
    x = torch.cat([x, torch.zeros(len(x), 2)], 1)
    x[0, -1] = 1e30
    x[1, -2] = float("inf")
    x[2, 0] = float("nan")
    acc = linear_probe(x[:150], y[:150], x[150:], y[150:], 3)
    assert math.isnan(acc) or acc > 0.8


def test_class_collision_entropy_within_and_between():
    """Same-class copies of one vector per class, classes orthogonal: within 0, between inf; with
    random directions both approach -log(1/d) (E[cos^2] = 1/d for random unit vectors)."""
    import math

    from repsearch.learn.measures import class_collision_entropy
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    feats = torch.eye(4)[labels] * torch.tensor([1.0, 2, 3, 1, 2, 3])[:, None]  # scale does not matter
    h = class_collision_entropy(feats, labels)
    assert h["within"] == pytest.approx(0.0, abs=1e-9) and h["between"] == float("inf")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, 64, generator=g), torch.arange(400) % 4
    rand = class_collision_entropy(x, y, diagonal=False)
    assert rand["within"] == pytest.approx(math.log(64), rel=0.05)
    assert rand["between"] == pytest.approx(math.log(64), rel=0.05)
    # the paper's estimator counts each example's pair with itself (K_ii^2 = 1): per class of 100,
    # the mean is (100 + 9,900 / 64) / 100^2 in expectation
    paper = class_collision_entropy(x, y)
    assert paper["within"] == pytest.approx(-math.log((100 + 9900 / 64) / 100 ** 2), rel=0.02)
    assert paper["between"] == rand["between"]  # different classes: no pair with itself
    shared = torch.randn(4, 64, generator=g)[torch.arange(400) % 4] + 0.3 * torch.randn(400, 64, generator=g)
    clustered = class_collision_entropy(shared, torch.arange(400) % 4)
    assert clustered["within"] < 0.2 < clustered["between"]  # classes cluster: similar within, distinct between
