"""A resumable experiment's record: one JSON line per finished row, keyed by the row's name, so
a killed experiment skips what it finished (levers.py, deviations.py)."""
import json
from pathlib import Path


def load(log: Path) -> dict:
    """{row name: record} of the rows already finished."""
    return {r["name"]: r for r in map(json.loads, Path(log).read_text().splitlines())} if Path(log).exists() else {}


def append(log: Path, rec: dict) -> None:
    with Path(log).open("a") as f:
        f.write(json.dumps(rec) + "\n")


def in_order(done: dict, order: list[str]) -> list[dict]:
    """The finished records in the experiment's row order; rows it does not list go last."""
    return sorted(done.values(), key=lambda r: order.index(r["name"]) if r["name"] in order else len(order))
