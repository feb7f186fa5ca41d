import io
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from repsearch.events import show_progress

torch.set_num_threads(2)
show_progress(False)  # no bars in test output (the CLI's --no-progress)
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


class CliResult(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def cli_in_process(*args: str) -> CliResult:
    """`repsearch ARGS` through the CLI's own main() in this process: the exit code, stdout and
    stderr a subprocess would give, without paying torch's import (~3 s) per call. What only a
    real process shows (signals, torchrun, `python -m`) keeps its subprocess tests."""
    from repsearch.cli.main import main
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(map(str, args)))
        except SystemExit as e:  # argparse's own exits
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """A 200-image quickstart search (tiny generations) and its config: what learner tests learn from."""
    from repsearch.config import resolve
    from repsearch.data import prepare
    from repsearch.search.pool import run_search

    from .test_search import TINY
    cfg = resolve("quickstart", [*TINY, "data.subset=200", "learn.epochs=2", "learn.batch_size=50",
                                 "learn.probe_images=150"])
    prep = prepare(cfg)
    cache, _ = run_search(prep, cfg, tmp_path_factory.mktemp("c") / "cache")
    return cfg, prep, cache
