import pytest
import torch
import torch.nn.functional as F

from repsearch.models.airbench import Net
from repsearch.models.staged import (
    check_staged,
    forward_from,
    normalize_stages,
    representations,
    sample_normalize,
)
from repsearch.search.fastpaths import (
    forward_from_phases,
    from_phases,
    mark_identity_modules,
    phase_max_pool,
    phases_allowed,
    pool_phase_order,
    to_phases,
)


def make(widths=(16, 16, 16), groups=1, normalize_outputs=False, **kw):
    torch.manual_seed(0)
    net = Net((3, 32, 32), 10, widths, groups, **kw).eval()
    return normalize_stages(net) if normalize_outputs else net


def test_stage_shapes_match_paper():
    net = Net((3, 32, 32), 10, (256, 256, 256), 1)
    assert check_staged(net, (3, 32, 32), 10) == [(256, 15, 15), (256, 7, 7), (256, 3, 3), (10,)]
    assert net.stem.out_channels == 24
    mnist = Net((1, 28, 28), 10, (64, 64, 64), 2)
    assert check_staged(mnist, (1, 28, 28), 10)[:3] == [(64, 13, 13), (64, 6, 6), (64, 3, 3)]
    assert mnist.stem.out_channels == 8
    assert sum(isinstance(m, torch.nn.Conv2d) for m in mnist.stages[0].modules()) == 4  # 2 groups = 4 convs


def test_whitening_whitens_patches():
    torch.manual_seed(0)
    # correlated images: smooth noise
    x = F.avg_pool2d(torch.randn(500, 3, 18, 18), 3, stride=1)
    net = make()
    net.stem.fit(x, eps=1e-8)
    out = net.stem(x)[:, :12]  # the first C*4 filters; the rest are their negatives
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12)
    cov = torch.cov(flat.T)
    assert torch.allclose(cov, torch.eye(12), atol=0.05)
    assert flat.mean(0).abs().max() < 0.05
    assert torch.allclose(net.stem(x)[:, 12:], -out, atol=1e-4)  # the negated filters


def test_partial_dirac_passes_first_channels_and_keeps_the_rest_random():
    net = make(widths=(32, 32, 32))
    conv = net.stages[0][0].conv1  # 24 -> 32
    x = torch.randn(2, 24, 9, 9)
    y = conv(x)
    assert torch.allclose(y[:, :24], x, atol=1e-6)
    assert conv.weight[24:].abs().sum() > 0  # filters beyond in_channels keep their random init
    square = net.stages[1][0].conv1
    z = torch.randn(2, 32, 5, 5)
    assert torch.allclose(square(z), z, atol=1e-6)


def test_forward_from_agrees_with_forward_at_every_point():
    net = make(groups=2, normalize_outputs=True)
    x = torch.randn(4, 3, 32, 32)
    reps = representations(net, x)
    logits = net(x)
    for layer in range(4):
        assert torch.allclose(forward_from(net, layer, reps[layer]), logits, atol=1e-5)
    for h in reps[:3]:  # normalized search space
        flat = h.flatten(1)
        assert torch.allclose(flat.mean(1), torch.zeros(4), atol=1e-4)
        assert torch.allclose(flat.var(1, unbiased=False), torch.ones(4), atol=1e-3)


def test_identity_conv_skip_is_exact():
    net = make(widths=(32, 32, 32))
    x = torch.randn(3, 3, 32, 32)
    ref = net(x)
    n = mark_identity_modules(net)
    assert n == 5  # every square Dirac conv: 2nd of block 0, both of blocks 1 and 2
    assert torch.equal(net(x), ref)
    net.stages[1][0].conv1.weight.data[0, 1, 1, 1] = 0.5
    assert mark_identity_modules(net) == 4


def test_sample_normalize():
    h = torch.randn(5, 4, 3, 3) * 7 + 3
    n = sample_normalize(h)
    assert torch.allclose(n.mean((1, 2, 3)), torch.zeros(5), atol=1e-5)
    assert torch.allclose(n.var((1, 2, 3), unbiased=False), torch.ones(5), atol=1e-4)


@pytest.mark.parametrize("h,w", [(13, 13), (6, 6), (7, 4), (3, 3)])
def test_pool_phase_order_turns_pooling_into_a_max_over_planes(h, w):
    order = pool_phase_order(h, w)
    assert torch.equal(order.sort().values, torch.arange(h * w))  # a permutation
    x = torch.randn(3, 5, h, w)
    assert torch.equal(from_phases(to_phases(x)), x)
    assert torch.equal(phase_max_pool(to_phases(x)), F.max_pool2d(x, 2))


def test_forward_from_phase_ordered_maps_equals_forward_from_true_order():
    net = make(widths=(16, 16, 16), groups=2, normalize_outputs=True).eval()
    reps = representations(net, torch.randn(4, 3, 32, 32))
    with pytest.raises(ValueError, match="identity"):  # needs the fast path's identity marks
        forward_from_phases(net, 0, to_phases(reps[0]))
    mark_identity_modules(net)
    assert not phases_allowed(net, 2)  # the head has no pool to fold
    for layer in (0, 1):
        assert phases_allowed(net, layer)
        assert torch.allclose(forward_from_phases(net, layer, to_phases(reps[layer])),
                              forward_from(net, layer, reps[layer]), atol=1e-5)
