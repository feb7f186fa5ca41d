"""Datasets as whole uint8 tensors, a seeded holdout, and an airbench-style device loader.

Every dataset is loaded once into memory as (N, C, H, W) uint8 plus int64 labels; the loader
keeps the normalized split on the device and augments whole batches there (no workers).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from repsearch.errors import UserError

FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class Dataset:
    name: str
    train_x: torch.Tensor  # uint8 (N, C, H, W)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])

    def fingerprint(self) -> str:
        """Cheap identity of the training set: name, size, and a hash of labels and a pixel sample."""
        import hashlib
        h = hashlib.sha256()
        h.update(self.name.encode())
        h.update(str(tuple(self.train_x.shape)).encode())
        h.update(self.train_y.numpy().tobytes())
        h.update(self.train_x[:: max(1, len(self.train_x) // 256)].numpy().tobytes())
        return h.hexdigest()[:16]


def data_root(root: str) -> Path:
    return Path(root or os.environ.get("REPSEARCH_DATA") or "data")


def _missing(name: str, where: Path, how: str) -> UserError:
    return UserError(f"dataset '{name}' not found in {where}: {how}")


def load_digits(size: int) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images), upsampled; a fixed 20% test split."""
    from sklearn.datasets import load_digits as sk_digits
    d = sk_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    y = torch.tensor(d.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1234))
    n_test = len(y) // 5
    test, train = order[:n_test], order[n_test:]
    return Dataset("digits", x[train], y[train], x[test], y[test], 10)


def _torchvision_mnist(cls_name: str, name: str, root: Path, download: bool) -> Dataset:
    import torchvision
    cls = getattr(torchvision.datasets, cls_name)
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except RuntimeError as e:
        raise _missing(name, root / cls_name / "raw",
                       "run 'python ../shared/datasets/materialize.py DATA_ROOT' (offline) or pass "
                       f"--set data.download=true (online), and point --data-root/REPSEARCH_DATA at it ({e})") from None
    return Dataset(name, train.data[:, None].clone(), train.targets.clone().long(),
                   test.data[:, None].clone(), test.targets.clone().long(), 10)


def _idx_file(path: Path) -> np.ndarray:
    import gzip
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _fashion_from_debian() -> Dataset:
    d = FASHION_DEBIAN
    arr = {s: _idx_file(d / f"{s}.gz") for s in
           ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
    t = lambda a: torch.from_numpy(a.copy())
    return Dataset("fashion-mnist", t(arr["train-images-idx3-ubyte"])[:, None], t(arr["train-labels-idx1-ubyte"]).long(),
                   t(arr["t10k-images-idx3-ubyte"])[:, None], t(arr["t10k-labels-idx1-ubyte"]).long(), 10)


def load_fashion(root: Path, download: bool) -> Dataset:
    if not (root / "FashionMNIST" / "raw").exists() and not download and FASHION_DEBIAN.exists():
        return _fashion_from_debian()
    try:
        return _torchvision_mnist("FashionMNIST", "fashion-mnist", root, download)
    except UserError:
        raise UserError(f"dataset 'fashion-mnist' not found in {root / 'FashionMNIST' / 'raw'} nor in "
                        f"{FASHION_DEBIAN}: 'apt-get install dataset-fashion-mnist' (offline) or pass "
                        "--set data.download=true (online)") from None


def load_cifar_torchvision(name: str, root: Path, download: bool) -> Dataset:
    import torchvision
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except RuntimeError:
        raise _missing(name, root, "set data.download=true (online); offline, use data.name=cifar10-jpeg "
                       "(../shared/datasets/materialize.py)") from None
    to_t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()
    return Dataset(name, to_t(train.data), torch.tensor(train.targets), to_t(test.data),
                   torch.tensor(test.targets), 10 if name == "cifar10" else 100)


def load_cifar10_jpeg(root: Path) -> Dataset:
    """CIFAR-10's labels and order with pixels decoded from a JPEG copy: lossy, named as such."""
    path = root / "cifar10-jpeg" / "cifar10-jpeg.npz"
    if not path.exists():
        raise _missing("cifar10-jpeg", path.parent,
                       "run 'python ../shared/datasets/materialize.py DATA_ROOT' and point --data-root at it")
    z = np.load(path)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).contiguous()
    return Dataset("cifar10-jpeg", to_t(z["x_train"]), torch.from_numpy(z["y_train"]).long(),
                   to_t(z["x_test"]), torch.from_numpy(z["y_test"]).long(), 10)


def load_dataset(name: str, root: str = "", download: bool = False, digits_size: int = 16) -> Dataset:
    r = data_root(root)
    if name == "digits":
        return load_digits(digits_size)
    if name == "mnist":
        return _torchvision_mnist("MNIST", "mnist", r, download)
    if name == "fashion-mnist":
        return load_fashion(r, download)
    if name in ("cifar10", "cifar100"):
        return load_cifar_torchvision(name, r, download)
    if name == "cifar10-jpeg":
        return load_cifar10_jpeg(r)
    raise UserError(f"unknown dataset '{name}'")


@dataclass
class Split:
    """Indices into the training set: `pool` = every image used (searched), = train + val."""
    train: torch.Tensor
    val: torch.Tensor

    @property
    def pool(self) -> torch.Tensor:
        return torch.cat([self.train, self.val]).sort().values


def holdout_split(n: int, val_fraction: float, seed: int, subset: int = 0) -> Split:
    """Deterministic by seed: optional subset of the training set, then a validation holdout."""
    g = torch.Generator().manual_seed(10_000 + seed)
    order = torch.randperm(n, generator=g)
    if subset:
        if subset > n:
            raise UserError(f"data.subset={subset} exceeds the {n} training images")
        order = order[:subset]
    n_val = int(round(len(order) * val_fraction))
    if n_val < 1 or n_val >= len(order):
        what = f"data.subset={subset}" if subset else f"the {n} training images"
        raise UserError(f"{what} with data.val_fraction={val_fraction} holds out {n_val} validation images and leaves "
                        f"{len(order) - n_val} to train on; both need at least 1: raise data.subset or change "
                        "data.val_fraction")
    return Split(train=order[n_val:].sort().values, val=order[:n_val].sort().values)


def channel_stats(x_uint8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x_uint8.float() / 255
    return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))


def normalize(x_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, device="cpu") -> torch.Tensor:
    x = x_uint8.to(device).float() / 255
    return (x - mean.to(device)[:, None, None]) / std.to(device)[:, None, None]


def flip_crop(x: torch.Tensor, generator: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random horizontal flip and random crop from reflect-padded images, batched in one gather."""
    b, c, h, w = x.shape
    dev = x.device
    flip = torch.rand(b, generator=generator, device=generator.device) < 0.5
    x = torch.where(flip.to(dev)[:, None, None, None], x.flip(3), x)
    if pad == 0:
        return x
    padded = F.pad(x, (pad,) * 4, mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=generator.device).to(dev)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=generator.device).to(dev)
    rows = (torch.arange(h, device=dev)[None] + dy[:, None])[:, None, :, None]
    cols = (torch.arange(w, device=dev)[None] + dx[:, None])[:, None, None, :]
    bi = torch.arange(b, device=dev)[:, None, None, None]
    ci = torch.arange(c, device=dev)[None, :, None, None]
    return padded[bi, ci, rows, cols]


class DeviceLoader:
    """The whole split as one normalized tensor on the device; batches are index slices.

    `fixed_batches` draws one permutation and keeps batch composition fixed across epochs (the
    paper's choice); otherwise each epoch reshuffles. Yields (indices, images, labels), where
    indices are positions in this loader (use them to fetch per-image targets).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, shuffle: bool = True,
                 augment: bool = False, fixed_batches: bool = False, seed: int = 0, drop_last: bool = False):
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.fixed_batches, self.drop_last = fixed_batches, drop_last
        self.generator = torch.Generator().manual_seed(seed)
        self.aug_generator = torch.Generator(device=images.device).manual_seed(seed + 1)
        self._fixed_order = torch.randperm(len(labels), generator=self.generator) if shuffle else None

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(len(self.labels))
        if self.fixed_batches:
            return self._fixed_order
        return torch.randperm(len(self.labels), generator=self.generator)

    def __iter__(self):
        """Under torchrun each rank takes its share of every global batch (every world-th image),
        so the global batch and its composition are those of one process."""
        from repsearch.store import distributed
        rank, world = distributed.rank(), distributed.world()
        order = self._order().to(self.images.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size][rank::world]
            x = self.images[idx]
            if self.augment:
                x = flip_crop(x, self.aug_generator)
            yield idx, x, self.labels[idx]


@dataclass
class Prepared:
    """A dataset made ready for a run: split, normalization stats, and device tensors."""
    dataset: Dataset
    split: Split
    mean: torch.Tensor
    std: torch.Tensor
    device: str

    def images(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.dataset
        if which == "test":
            x, y = d.test_x, d.test_y
        else:
            idx = {"train": self.split.train, "val": self.split.val, "pool": self.split.pool}[which]
            x, y = d.train_x[idx], d.train_y[idx]
        return normalize(x, self.mean, self.std, self.device), y.to(self.device)


def check_batch(n_train: int, batch_size: int, key: str) -> None:
    """A batch larger than the training set would silently train on one partial batch per epoch
    (a smaller step than the batch size and lr were chosen for): refuse it."""
    if batch_size > n_train:
        raise UserError(f"{key}={batch_size} is more than the {n_train} training images (data.subset less the "
                        f"validation holdout); set {key} to at most {n_train} or raise data.subset")


def check_batches(cfg, prep: "Prepared", sections=("learn", "baseline")) -> None:
    """Before any work: every training section this command runs fits its training images."""
    for name in sections:
        check_batch(len(prep.split.train), getattr(cfg, name).batch_size, f"{name}.batch_size")


def prepare(cfg, device: str | None = None) -> Prepared:
    """Load the configured dataset, split it by seed, and fix normalization from training images."""
    dc = cfg.data
    ds = load_dataset(dc.name, dc.root, dc.download, dc.digits_size)
    split = holdout_split(len(ds.train_y), dc.val_fraction, cfg.seed, dc.subset)
    mean, std = channel_stats(ds.train_x[split.train])
    return Prepared(ds, split, mean, std, device or cfg.device)
