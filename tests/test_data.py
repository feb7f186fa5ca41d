import numpy as np
import pytest
import torch

from repsearch import data as D
from repsearch.errors import UserError

from .conftest import need


def test_digits_shapes_and_split():
    ds = D.load_digits(16)
    assert ds.train_x.shape[1:] == (1, 16, 16) and ds.train_x.dtype == torch.uint8
    assert len(ds.train_y) + len(ds.test_y) == 1797 and ds.num_classes == 10


def test_holdout_disjoint_deterministic_and_seeded():
    a = D.holdout_split(1000, 0.08, seed=0)
    b = D.holdout_split(1000, 0.08, seed=0)
    c = D.holdout_split(1000, 0.08, seed=1)
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val)
    assert not torch.equal(a.val, c.val)
    assert len(set(a.train.tolist()) & set(a.val.tolist())) == 0
    assert len(a.val) == 80 and len(a.train) == 920
    s = D.holdout_split(1000, 0.1, seed=0, subset=200)
    assert len(s.pool) == 200 and len(s.val) == 20
    with pytest.raises(UserError):
        D.holdout_split(100, 0.1, seed=0, subset=200)


def test_flip_crop_properties():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 8, 8)
    y = D.flip_crop(x, g, pad=0)
    for i in range(64):  # pad 0: each image is itself or its mirror
        assert torch.equal(y[i], x[i]) or torch.equal(y[i], x[i].flip(2))
    y2 = D.flip_crop(x, torch.Generator().manual_seed(0), pad=0)
    assert torch.equal(y, y2)  # deterministic by seed
    flipped = sum(not torch.equal(y[i], x[i]) for i in range(64))
    assert 10 < flipped < 54
    z = D.flip_crop(x, torch.Generator().manual_seed(1), pad=2)
    assert z.shape == x.shape
    # every crop is a window of the reflect-padded (possibly mirrored) image
    padded = torch.nn.functional.pad(torch.cat([x, x.flip(3)]), (2,) * 4, mode="reflect")
    for i in range(8):
        found = any(torch.equal(z[i], padded[j][:, dy:dy + 8, dx:dx + 8])
                    for j in (i, i + 64) for dy in range(5) for dx in range(5))
        assert found


def test_loader_fixed_batches_and_coverage():
    x, y = torch.randn(10, 1, 4, 4), torch.arange(10)
    loader = D.DeviceLoader(x, y, 4, fixed_batches=True, seed=0)
    e1 = [idx.tolist() for idx, _, _ in loader]
    e2 = [idx.tolist() for idx, _, _ in loader]
    assert e1 == e2 and sorted(sum(e1, [])) == list(range(10))
    loader = D.DeviceLoader(x, y, 4, fixed_batches=False, seed=0)
    assert [i.tolist() for i, _, _ in loader] != [i.tolist() for i, _, _ in loader]


def test_prepare_normalizes_with_training_stats():
    from repsearch.config import resolve
    prep = D.prepare(resolve("quickstart"))
    x, _ = prep.images("train")
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-2


@need("fashion-mnist")
def test_fashion_mnist_real(data_root):
    ds = D.load_dataset("fashion-mnist", data_root)
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.train_y).tolist() == [6000] * 10


@need("mnist")
def test_mnist_real(data_root):
    ds = D.load_dataset("mnist", data_root)
    assert ds.train_x.shape == (60000, 1, 28, 28)
    assert torch.bincount(ds.test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@need("cifar10-jpeg")
def test_cifar10_jpeg_loader(data_root):
    ds = D.load_dataset("cifar10-jpeg", data_root)
    assert ds.name == "cifar10-jpeg"
    assert ds.train_x.shape == (50000, 3, 32, 32) and ds.test_x.shape == (10000, 3, 32, 32)
    assert torch.bincount(ds.train_y).tolist() == [5000] * 10
    mean, std = D.channel_stats(ds.train_x)
    np.testing.assert_allclose(mean.numpy(), [0.491, 0.482, 0.447], atol=0.01)


def test_missing_dataset_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="materialize.py"):
        D.load_dataset("cifar10-jpeg", str(tmp_path))


@pytest.mark.parametrize("subset, fraction, message", [
    (5, 0.08, "holds out 0 validation images and leaves 5"),
    (10, 0.97, "holds out 10 validation images and leaves 0"),
])
def test_a_subset_too_small_for_its_holdout_is_refused(subset, fraction, message):
    with pytest.raises(UserError, match=message):
        D.holdout_split(1000, fraction, seed=0, subset=subset)
    split = D.holdout_split(1000, fraction, seed=0, subset=subset * 3)  # large enough: both sides non-empty
    assert len(split.val) >= 1 and len(split.train) >= 1


def test_a_batch_larger_than_the_training_set_is_refused_by_the_api():
    from repsearch import api
    from repsearch.models.mlp import MLP
    model = MLP((1, 4, 4), 3, (6, 6), 1, "default")
    x, y = torch.randn(8, 1, 4, 4), torch.arange(8) % 3
    targets = api.Targets([torch.randn(8, 6), torch.randn(8, 6), torch.randn(8, 3)], torch.zeros(8), torch.zeros(8),
                          target_space="raw")
    with pytest.raises(UserError, match="learn.batch_size=16 is more than the 8 training images"):
        api.learn_from_targets(model, x, y, targets, learn={"epochs": 1, "batch_size": 16})
