"""Neuroevolution of the weights against the gradient (Whitelam et al.): for small mutations the
mean accepted step points along -grad U, as far as P proposals can resolve it."""
import math

import pytest
import torch

from repsearch.models.mlp import MLP
from repsearch.studies.neuroevolution import gradient_alignment, predicted_cosine


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    model = MLP((1, 8, 8), 3, (6,), 1, "default")
    x, y = torch.randn(128, 1, 8, 8), torch.randint(0, 3, (128,))
    return model, x, y


def test_small_mutations_follow_the_gradient_as_predicted(problem):
    model, x, y = problem
    rows = gradient_alignment(model, x, y, sigmas=[1e-4], populations=[256, 4096])
    d = rows[0]["weights"]
    assert d == 64 * 6 + 6 + 6 + 6 + 6 * 3 + 3  # every weight is mutated
    for r in rows:
        assert abs(r["acceptance"] - 0.5) < 0.05  # half the small moves go downhill
        assert r["cosine"] == pytest.approx(predicted_cosine(d, r["population"]), abs=0.08)
        assert r["step_norm_over_sigma"] >= 1 / math.sqrt(2 * math.pi) - 0.05  # the signal, plus noise
    assert rows[1]["cosine"] > rows[0]["cosine"] + 0.3  # more proposals resolve the direction better


def test_large_mutations_lose_the_gradient(problem):
    model, x, y = problem
    small, large = gradient_alignment(model, x, y, sigmas=[1e-4, 3.0], populations=[2048])
    assert large["cosine"] < small["cosine"] - 0.2
    assert large["acceptance"] < small["acceptance"]


def test_the_prediction_tends_to_one():
    assert predicted_cosine(1000, 10 ** 7) > 0.99 and predicted_cosine(10 ** 6, 100) < 0.05
