"""Training hooks that log elsewhere: TensorBoard event files and offline Weights & Biases runs,
written by a real quickstart-sized run and read back with the real packages."""
import json
import sys
from pathlib import Path

import pytest

from .conftest import cli_in_process

TINY = ["learn.epochs=3", "baseline.epochs=2"]  # on the tiny overlay: a few epochs to log


def metric(stage: Path, key: str) -> dict[int, float]:
    """epoch -> value of `key` in a stage's metrics.jsonl (the record every logger gets)."""
    recs = [json.loads(line) for line in (stage / "metrics.jsonl").read_text().splitlines()]
    return {r["epoch"]: r[key] for r in recs if key in r and "epoch" in r}


def tensorboard_scalars(logdir: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def wandb_history(run_dir: Path) -> list[dict]:
    """The history rows of an offline W&B run, from its .wandb file: LevelDB-log records (32 KiB
    blocks, 7-byte headers: crc32c, length, type FULL=1/FIRST=2/MIDDLE=3/LAST=4) after a 7-byte
    ':W&B' header, each a wandb_internal Record protobuf."""
    from wandb.proto import wandb_internal_pb2 as pb
    (path,) = run_dir.glob("run-*.wandb")
    data, pos, pending, rows = path.read_bytes(), 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if left < 7 or (length == 0 and kind == 0):  # block trailer or zero padding
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
    return rows


@pytest.mark.slow
def test_a_quickstart_run_writes_tensorboard_and_offline_wandb_logs_that_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    out = tmp_path / "run"
    sets = sum((["--set", kv] for kv in [*TINY, "log.tensorboard=true", "log.wandb=true"]), [])
    r = cli_in_process("run", "--preset", "quickstart", "--overlay", "tiny", *sets, "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    for stage, tag in ((out / "seed0" / "learn-all-noaug", "learn-all-noaug"), (out / "seed0" / "sgd-noaug", "sgd-depth1")):
        logged = metric(stage, "val_accuracy")
        assert sorted(logged) == list(range(1, len(logged) + 1)) and len(logged) >= 2
        scalars = tensorboard_scalars(stage / "tensorboard")
        assert scalars[f"{tag}/val_accuracy"] == pytest.approx(logged)
        (run_dir,) = (stage / "wandb" / "wandb").glob("offline-run-*")
        history = [row for row in wandb_history(run_dir) if f"{tag}/val_accuracy" in row]
        assert {row["_step"]: row[f"{tag}/val_accuracy"] for row in history} == pytest.approx(logged)
    # the learner's epoch-0 record (the untrained model's cosines) reaches the loggers too
    cos0 = metric(out / "seed0" / "learn-all-noaug", "cos_block0")[0]
    assert tensorboard_scalars(out / "seed0" / "learn-all-noaug" / "tensorboard")["learn-all-noaug/cos_block0"][0] == \
        pytest.approx(cos0)


def test_a_logger_whose_package_is_missing_is_one_line_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    out = tmp_path / "run"
    sets = sum((["--set", kv] for kv in [*TINY, "log.wandb=true"]), [])
    r = cli_in_process("baseline", "--preset", "quickstart", "--overlay", "tiny", *sets, "--out", out, "--no-progress")
    assert r.returncode == 2
    assert "log.wandb = true needs the wandb package" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()
