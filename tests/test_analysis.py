import math

import torch

from repsearch.analysis import linear_probe


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
