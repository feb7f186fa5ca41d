"""A run's record: one compact file, RUN/record.json, that says what ran, where, and what it measured.

Every command that produces results (run, rounds, ensemble, sweep, scaling, diversity, ...) and
every benchmark writes one. It holds the command line, the resolved config, the environment (CPU
model and vector ISA, GPU, torch, commit, dirty tree), per-stage wall times, the headline figures,
the searched cross-entropy's statistics and the seeds; well under 100 KB, so records are what the
repository keeps (`results/`) and what tables are rendered from (`repsearch results`). The schema
is versioned and checked by pydantic when a record is written and when it is read.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from repsearch.errors import UserError

from .atomic import atomic_write_json

SCHEMA_VERSION = 1
Scalar = float | int | str | bool | None


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: str  # the subcommand ("run", "rounds", ...) or "benchmark/NAME"
    created: str  # when the record was written (ISO 8601, local time with offset)
    argv: list[str]  # the command line, as typed
    preset: str | None = None
    overlays: list[str] = []
    config: dict[str, Any]  # the resolved config (every section)
    environment: dict[str, Any]  # store.rundir.environment: versions, CPU/GPU, commit, dirty
    seeds: list[int]
    dataset: str | None = None
    train_images: int | None = None
    test_images: int | None = None
    wall_seconds: float  # the whole command
    stage_seconds: dict[str, float] = {}  # each stage's own wall time, by its path in the run directory
    headline: dict[str, Scalar | list[Scalar]]  # the figures the command reports
    searched_ce: dict[str, dict[str, float]] = {}  # per target cache (path in the run): mean, p50, p90, p99, max
    # Tables 1-2 of a `run`: method ("sgd", "all", "skip0") -> augmentation ("noaug", "aug") -> mean, std, values
    tables: dict[str, dict[str, dict[str, float | list[float]]]] = {}
    # A study's own result (what scaling.json, diversity.json, sweep.json ... hold) when it is small:
    # the curves of Figures 2-4 re-derivable from the record alone
    study: dict[str, Any] = {}


def write(path: Path, **fields) -> Record:
    """Validate and write RUN/record.json (atomically); returns the record."""
    fields.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    fields.setdefault("argv", ["repsearch", *sys.argv[1:]] if sys.argv and sys.argv[0].endswith("repsearch")
                      else list(sys.argv))
    record = Record.model_validate(fields)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(path), record.model_dump(mode="json"))
    return record


def read(path: Path) -> Record:
    """A record from record.json; a missing or invalid one is one line naming the file."""
    path = Path(path)
    try:
        return Record.model_validate_json(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no record at {path} (record.json is written when a command finishes)") from None
    except (OSError, ValidationError) as e:
        first = str(e).splitlines()[1:2] or [str(e)]
        raise UserError(f"{path} is not a valid record (schema {SCHEMA_VERSION}): {first[0].strip()}") from None


def find(paths) -> list[Path]:
    """Every record.json at or under the given files and directories, sorted."""
    found = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            found.extend(p.rglob("record.json"))
        else:
            raise UserError(f"{p} is neither a record.json nor a directory")
    return sorted(set(found))
