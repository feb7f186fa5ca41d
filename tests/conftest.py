import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)
DATA = Path(os.environ.get("REPSEARCH_DATA", Path(__file__).resolve().parents[1] / "data"))
FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def have(name: str) -> bool:
    return {
        "mnist": (DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").exists(),
        "fashion-mnist": FASHION_DEBIAN.exists() or (DATA / "FashionMNIST" / "raw").exists(),
        "cifar10-jpeg": (DATA / "cifar10-jpeg" / "cifar10-jpeg.npz").exists(),
    }[name]


def need(name: str):
    return pytest.mark.skipif(not have(name), reason=f"{name} not found under {DATA} (run `make data`)")


@pytest.fixture
def data_root() -> str:
    return str(DATA)
