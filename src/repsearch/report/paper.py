"""The paper's own numbers (Vegesna & Dahal, 2025, Tables 1-2: test accuracy %, mean over 3 runs),
to show beside ours. CIFAR-10's stand for our JPEG copy of it only as a reference, never as the
same dataset; the paper has no digits or Fashion-MNIST."""
from __future__ import annotations

TABLE1 = {"mnist": {"sgd": 99.1, "all": 99.0}, "cifar10": {"sgd": 89.1, "all": 88.3},
          "cifar100": {"sgd": 62.3, "all": 61.6}}
TABLE2 = {"cifar10": {"sgd": 93.0, "skip0": 92.0, "all": 90.6}, "cifar100": {"sgd": 71.8, "skip0": 69.2, "all": 66.5}}
STANDS_FOR = {"cifar10-jpeg": "cifar10"}  # the paper's dataset a copy of ours is closest to


def paper_figure(dataset: str, method: str, augmented: bool = False) -> str:
    """'89.1 (CIFAR-10)' style text of the paper's figure for a dataset and method, or '–'."""
    name = STANDS_FOR.get(dataset, dataset)
    value = (TABLE2 if augmented else TABLE1).get(name, {}).get(method)
    if value is None:
        return "–"
    return f"{value:.1f}" + ("" if name == dataset else f" (the paper's {name.upper().replace('CIFAR', 'CIFAR-')})")


SUMMARY_KEYS = {"sgd_test_accuracy": "sgd", "search_test_accuracy": "all"}
