"""The parameter-space baseline: OpenAI-ES on a network's weights at a stated FLOP budget."""
import pytest
import torch
import torch.nn as nn

from repsearch.models.staged import forward_flops
from repsearch.studies.param_search import ESParams, centered_ranks, es_gradient, evolve


class Tiny(nn.Module):
    """A staged model: 4 features -> 2 stages -> 3 classes."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Identity()
        self.stages = nn.ModuleList([nn.Sequential(nn.Linear(4, 8), nn.Tanh()), nn.Sequential(nn.Linear(8, 8), nn.Tanh())])
        self.head = nn.Linear(8, 3)


def _data(n=300):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


def test_centered_ranks_reward_the_lowest_loss():
    u = centered_ranks(torch.tensor([3.0, 1.0, 2.0, 0.5]))
    assert u.tolist() == pytest.approx([-0.5, 1 / 6, -1 / 6, 0.5])
    assert u.sum().item() == pytest.approx(0.0, abs=1e-6)


def test_es_gradient_points_along_the_true_gradient():
    g = torch.Generator().manual_seed(0)
    theta, sigma = torch.randn(20, generator=g), 0.01
    half = torch.randn(2000, 20, generator=g)
    eps = torch.cat([half, -half])
    losses = (theta + sigma * eps).pow(2).sum(1)
    est = es_gradient(eps, losses, sigma)
    assert torch.nn.functional.cosine_similarity(est, 2 * theta, dim=0) > 0.9


def test_evolve_spends_exactly_the_stated_forward_passes_and_lowers_the_loss():
    torch.manual_seed(0)
    model, (x, y) = Tiny(), _data()
    seen = []
    model.stages[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    es = ESParams(population=8, sigma=0.05, lr=0.05, batch=16, chunk=1)
    per_gen = es.population * es.batch
    loss0 = nn.functional.cross_entropy(model.head(model.stages[1](model.stages[0](x))), y).item()
    seen.clear()
    res = evolve(model, x, y, budget_forwards=40.5 * per_gen, es=es, seed=0)
    assert res["generations"] == 40 and res["forwards"] == 40 * per_gen
    assert seen[0] == 2  # the FLOP counter's probe (two zero inputs), then the generations:
    assert sum(seen[1:]) == 40 * es.population * es.batch  # one forward per candidate and image, nothing more
    assert res["flops"] == 40 * per_gen * forward_flops(model, (4,))
    loss1 = nn.functional.cross_entropy(model.head(model.stages[1](model.stages[0](x))), y).item()
    assert loss1 < loss0 - 0.1  # the weights written back are the evolved ones, and better


def test_evolve_rejects_an_odd_population():
    model, (x, y) = Tiny(), _data(20)
    with pytest.raises(ValueError):
        evolve(model, x, y, 1e9, ESParams(population=5))
