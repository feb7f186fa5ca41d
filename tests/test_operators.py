import pytest
import torch

from repsearch.search import noise as rn
from repsearch.search import operators as ops


def test_crossover_is_the_mean_of_the_chosen_parents():
    pop = torch.randn(3, 4, 2, 5, 5)
    i1 = torch.tensor([[0, 1], [2, 3], [1, 1]])
    i2 = torch.tensor([[3, 2], [0, 0], [1, 2]])
    child = ops.crossover(pop, i1, i2)
    for b in range(3):
        for m in range(2):
            assert torch.allclose(child[b, m], (pop[b, i1[b, m]] + pop[b, i2[b, m]]) / 2)


def test_noise_scale_follows_alpha_and_parent_channel_std():
    torch.manual_seed(0)
    scales = torch.tensor([0.5, 2.0, 4.0])
    pop = torch.randn(2, 2, 3, 32, 32) * scales[None, None, :, None, None]
    std = ops.channel_std(pop)
    i1 = torch.zeros(2, 64, dtype=torch.long)
    i2 = torch.ones(2, 64, dtype=torch.long)
    noise = torch.randn(2, 64, 3, 32, 32)
    for alpha in (0.1, 0.5):
        out = ops.perturb_conv(pop, std, i1, i2, noise, alpha, blur=0)
        delta = out - ops.crossover(pop, i1, i2)
        measured = delta.transpose(1, 2).flatten(2).std(dim=2)  # (B, C)
        expected = alpha * 0.5 * (std[:, 0] + std[:, 1])
        assert torch.allclose(measured, expected, rtol=0.03)


def test_smoothing_lowers_high_frequency_energy_and_fast_equals_plain():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 15, 15)

    def hf(t):  # energy of the discrete Laplacian
        lap = 4 * t[..., 1:-1, 1:-1] - t[..., :-2, 1:-1] - t[..., 2:, 1:-1] - t[..., 1:-1, :-2] - t[..., 1:-1, 2:]
        return lap.pow(2).mean()

    for passes in (1, 2, 5):
        s = ops.smooth(x, passes)
        assert hf(s) < 0.2 * hf(x)
        assert torch.allclose(s, ops.smooth(x, passes, fast=False), atol=1e-5)
    assert torch.equal(ops.smooth(x, 0), x)
    const = torch.full((1, 1, 7, 7), 3.0)  # borders average over valid pixels: constants stay constant
    assert torch.allclose(ops.smooth(const, 3), const)


def test_zero_border_smoothing_is_pytorchs_padded_average_pooling():
    """border="zero" is avg_pool2d's default count_include_pad: the padding counts, so a constant
    map darkens at its borders (and noise shrinks there); the interior is as with "valid"."""
    x = torch.randn(2, 3, 9, 11)
    for passes in (1, 3):
        expect = x
        for _ in range(passes):
            expect = torch.nn.functional.avg_pool2d(expect, 3, stride=1, padding=1)
        assert torch.allclose(ops.smooth(x, passes, border="zero"), expect, atol=1e-5)
        assert torch.allclose(ops.smooth(x, passes, fast=False, border="zero"), expect, atol=1e-5)
    const = ops.smooth(torch.ones(1, 1, 7, 7), 1, border="zero")
    assert const[0, 0, 3, 3] == pytest.approx(1.0) and const[0, 0, 0, 0] == pytest.approx(4 / 9)


def test_mutated_conv_children_are_normalized_per_sample():
    pop = torch.randn(2, 3, 4, 6, 6) * 5 + 2
    std = ops.channel_std(pop)
    i = torch.randint(0, 3, (2, 7))
    child = ops.mutate_conv(pop, std, i, i.flip(1), torch.randn(2, 7, 4, 6, 6), 0.3, 1)
    flat = child.flatten(2)
    assert torch.allclose(flat.mean(2), torch.zeros(2, 7), atol=1e-5)
    assert torch.allclose(flat.var(2, unbiased=False), torch.ones(2, 7), atol=1e-3)


def test_logit_children_are_recentered_and_scaled():
    pop = torch.randn(2, 4, 10) + 5
    std = ops.logit_std(pop)
    i = torch.randint(0, 4, (2, 6))
    child = ops.mutate_logits(pop, std, i, i, torch.randn(2, 6, 10), 0.1)
    assert torch.allclose(child.mean(2), torch.zeros(2, 6), atol=1e-5)
    zero_alpha = ops.mutate_logits(pop, std, i, i, torch.randn(2, 6, 10), 0.0)
    parents = ops.gather(pop, i)
    assert torch.allclose(zero_alpha, parents - parents.mean(2, keepdim=True), atol=1e-5)


def test_one_by_one_maps_still_get_noise():
    pop = torch.randn(1, 2, 8, 1, 1)
    assert (ops.channel_std(pop) > 0).all()


def test_per_image_rng_does_not_depend_on_company():
    a = rn.PerImageRNG(0, [5, 9, 11]).randn((4,))
    b = rn.PerImageRNG(0, [11, 5]).randn((4,))
    assert torch.equal(a[0], b[1]) and torch.equal(a[2], b[0])
    assert not torch.equal(a[0], a[1])


def test_presmoothed_bank_equals_smoothing_the_drawn_noise():
    bank = rn.NoiseBank(0, size=1 << 16)
    shape = (5, 3, 6, 7)
    got = bank.draw(rn.PerImageRNG(0, [1, 2]), shape, blur=2)
    rng = rn.PerImageRNG(0, [1, 2])
    hw, n = 42, 3 * 42
    offsets = rng.randint((len(bank.bank) // hw * hw - n) // hw + 1, (5,)) * hw
    raw = torch.stack([torch.stack([bank.bank[o:o + n] for o in row.tolist()]) for row in offsets]).reshape(2, *shape)
    assert torch.allclose(got, ops.smooth(raw, 2), atol=1e-5)
    zero = bank.draw(rn.PerImageRNG(0, [1, 2]), shape, blur=2, border="zero")  # same windows, other smoothing
    assert torch.allclose(zero, ops.smooth(raw, 2, border="zero"), atol=1e-5)
    plain = bank.draw(rn.PerImageRNG(0, [1, 2]), shape)
    assert abs(plain.std().item() - 1) < 0.1 and abs(plain.mean().item()) < 0.1


def test_slice_maxpool_equals_max_pool2d():
    from repsearch.models.airbench import MaxPool2
    for size in (13, 14, 7, 3):
        x = torch.randn(4, 5, size, size)
        assert torch.equal(MaxPool2()(x), torch.nn.functional.max_pool2d(x, 2))


def test_phase_ordered_bank_windows_are_the_true_windows_reordered():
    from repsearch.search.fastpaths import to_phases
    bank = rn.NoiseBank(0, size=1 << 16)
    shape = (3, 4, 7, 7)
    true = bank.draw(rn.PerImageRNG(0, [1, 2]), shape, blur=2)
    phased = bank.draw(rn.PerImageRNG(0, [1, 2]), shape, blur=2, phases=True)
    assert torch.equal(phased, to_phases(true))


def test_vector_points_get_element_scaled_noise_no_smoothing_and_normalization():
    """A vector representation (an MLP's (D,)) is mutated like a map's 1x1 channels: noise scaled
    by alpha x the parents' std over all elements, no spatial smoothing, then normalized per sample."""
    torch.manual_seed(0)
    pop = torch.randn(2, 3, 4000) * torch.tensor([1.0, 3.0])[:, None, None]
    std = ops.member_std(pop, "vector")
    assert std.shape == (2, 3)
    i1, i2 = torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 5, dtype=torch.long)
    noise = torch.randn(2, 5, 4000)
    delta = ops.perturb_vector(pop, std, i1, i2, noise, 0.2) - ops.crossover(pop, i1, i2)
    expected = 0.2 * 0.5 * (std[:, 0] + std[:, 1])
    assert torch.allclose(delta.std(2), expected[:, None].expand(2, 5), rtol=0.05)
    child = ops.mutate(pop, std, i1, i2, noise, 0.2, blur=3, smooth_target="noise", kind="vector")
    assert torch.allclose(child.mean(2), torch.zeros(2, 5), atol=1e-5)
    assert torch.allclose(child.var(2, unbiased=False), torch.ones(2, 5), atol=1e-3)
    same = ops.mutate(pop, std, i1, i2, noise, 0.2, blur=0, smooth_target="noise", kind="vector")
    assert torch.equal(child, same)  # blur does nothing without a spatial map


def test_every_kind_of_point_through_every_operator():
    """Maps and vectors end normalized, logits recentred; each kind's member std has its own shape."""
    torch.manual_seed(0)
    cases = {"map": torch.randn(2, 4, 3, 5, 5), "vector": torch.randn(2, 4, 7), "logits": torch.randn(2, 4, 10) + 3}
    stds = {"map": (2, 4, 3), "vector": (2, 4), "logits": (2, 4)}
    for kind, pop in cases.items():
        std = ops.member_std(pop, kind)
        assert std.shape == stds[kind] and (std > 0).all(), kind
        i = torch.randint(0, 4, (2, 6))
        child = ops.mutate(pop, std, i, i.flip(1), torch.randn(2, 6, *pop.shape[2:]), 0.3, 1, "noise", kind=kind)
        assert child.shape == (2, 6, *pop.shape[2:])
        flat = child.flatten(2)
        assert torch.allclose(flat.mean(2), torch.zeros(2, 6), atol=1e-5), kind
        if kind != "logits":
            assert torch.allclose(flat.var(2, unbiased=False), torch.ones(2, 6), atol=1e-3), kind
