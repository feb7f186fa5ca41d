import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import cli_in_process


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "repsearch", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.subprocess
@pytest.mark.parametrize("args, message", [
    (["baseline", "--preset", "nope"], "unknown preset"),
    (["baseline", "--preset", "quickstart", "--set", "baseline.epochz=3"], "did you mean 'epochs'"),
    (["baseline", "--preset", "quickstart", "--set", "data.name=mnist", "--data-root", "/nonexistent"],
     "dataset 'mnist' not found in /nonexistent"),
    (["baseline", "--preset", "quickstart", "--device", "cuda:0"], None),
    (["baseline", "--bogus"], "unrecognized arguments"),
    (["search", "--preset", "quickstart", "--set", "search.pop_size=13"], "must equal top_k"),
    (["run", "--preset", "quickstart", "--set", "data.subset=60"], "learn.batch_size=100 is more than the 55 training"),
    (["baseline", "--preset", "quickstart", "--set", "data.subset=60"], "baseline.batch_size=100 is more than the 55"),
    (["search", "--preset", "quickstart", "--set", "data.subset=5"], "holds out 0 validation images"),
])
def test_user_errors_one_line_exit_2_nothing_written(tmp_path, args, message):
    import torch
    if message is None:
        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
        message = "CUDA is not available"
    out = tmp_path / "run"
    # in this process (torch's import once), but one case through `python -m repsearch`: exit code 2 there too
    r = run_cli(*args) if "--bogus" in args else cli_in_process(*args, "--out", str(out))
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_config_command_prints_resolved_config():
    r = cli_in_process("config", "--preset", "quickstart", "--set", "seed=7")
    assert r.returncode == 0
    assert json.loads(r.stdout)["seed"] == 7


@pytest.mark.subprocess
def test_paper_literal_run_end_to_end(tmp_path):
    """Every literal switch at once (raw targets, whole-child smoothing, batch BN, fresh noise,
    float32 cache, summed loss, no running statistics, plain SGD) runs search, learning and the
    baseline, and the run directory records the overlay and its values."""
    out = tmp_path / "literal"
    r = run_cli("run", "--preset", "quickstart", "--overlay", "paper_literal", "--out", str(out), "--no-progress",
                "--set", "data.subset=120", "--set", "search.generations=[2,2,2,1]", "--set", "learn.epochs=2",
                "--set", "baseline.epochs=1", "--set", "learn.batch_size=50", "--set", "baseline.batch_size=50",
                "--set", "learn.probe_images=60", "--seeds", "1")
    assert r.returncode == 0, r.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["overlays"] == ["paper_literal"]
    assert config["search"]["smooth"] == "child" and config["learn"]["reduction"] == "sum"
    assert config["search"]["pop_size"] == 240 and config["baseline"]["depths"] == [1, 2, 3]  # the paper's protocol
    assert config["model"]["bn_running_stats"] is False
    summary = json.loads((out / "summary.json").read_text())
    stage = {name: json.loads((out / "seed0" / name / "summary.json").read_text()) for name in ("sgd-noaug", "learn-all-noaug")}
    assert summary["sgd_test_accuracy"] == stage["sgd-noaug"]["test_accuracy"]  # the headline is the stages' figure
    assert summary["search_test_accuracy"] == stage["learn-all-noaug"]["test_accuracy"]
    assert summary["sgd_depth_per_seed"] == [stage["sgd-noaug"]["best_depth"]] and stage["sgd-noaug"]["best_depth"] in (1, 2, 3)
    assert stage["sgd-noaug"]["test_images"] == 359  # digits' fixed 20% test split
    cache = json.loads((out / "seed0" / "cache" / "manifest.json").read_text())
    assert cache["dtype"] == "float32" and cache["config"]["search"]["noise"] == "fresh"  # the literal switches ran


@pytest.mark.subprocess
def test_baseline_cli_writes_run_directory(tmp_path):
    out = tmp_path / "run"
    r = run_cli("baseline", "--preset", "quickstart", "--set", "baseline.epochs=2", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert {"test_accuracy", "val_accuracy", "wall_time_s", "train_flops"} <= summary.keys()
    config = json.loads((out / "config.json").read_text())
    assert config["baseline"]["epochs"] == 2 and config["command"] == "baseline"
    env = json.loads((out / "environment.json").read_text())
    assert {"torch", "device", "commit", "dirty"} <= env.keys()
    # the CPU picks the kernels (the same seed's SGD differs by 0.7 points across two EPYCs)
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and env["cpu_capability"]
    if Path("/proc/cpuinfo").exists() and "model name" in Path("/proc/cpuinfo").read_text():
        assert env["cpu_model_name"]
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r.get("tag") == "sgd-depth1"] == [1, 2]
    # the saved model is the one tested: rebuilt and evaluated, it gives the summary's test accuracy
    from repsearch.config import resolve
    from repsearch.data import prepare
    from repsearch.learn.runtime import evaluate
    from repsearch.models import build_model
    cfg = resolve("quickstart", ["baseline.epochs=2"])
    prep = prepare(cfg)
    model, _ = build_model(cfg, "baseline", prep.dataset.shape, prep.dataset.num_classes, depth=1)
    model.load_state_dict(torch.load(out / "model-depth1.pt", weights_only=True))
    assert evaluate(model, *prep.images("test"))["accuracy"] == pytest.approx(summary["test_accuracy"])


def test_scaling_and_diversity_commands_write_json_and_png(tmp_path):
    tiny = ["--set", "model.widths=[8,8,8]", "--set", "search.generations=[2,2,2,3]", "--set", "data.subset=40"]
    r = cli_in_process("scaling", "--preset", "quickstart", *tiny, "--images", "6", "--pop-sizes", "6,12",
                "--generations", "0,2", "--out", str(tmp_path / "s"), "--no-progress")
    assert r.returncode == 0, r.stderr
    scaling = json.loads((tmp_path / "s" / "scaling.json").read_text())
    assert scaling["images"] == 6 and (tmp_path / "s" / "scaling_population.png").exists()
    for block in scaling["blocks"].values():
        assert [r["pop_size"] for r in block["population"]] == [6, 12]
        ce0, ce2 = (r["mean_best_ce"] for r in block["generations"])
        assert 0 < ce2 <= ce0  # two generations never worsen the best
    r = cli_in_process("diversity", "--preset", "quickstart", *tiny, "--set", "search.pop_size=12", "--set", "search.top_k=2",
                "--set", "search.n_explore=5", "--set", "search.n_refine=5", "--images", "4", "--runs", "3",
                "--out", str(tmp_path / "d"), "--no-progress")
    assert r.returncode == 0, r.stderr
    diversity = json.loads((tmp_path / "d" / "diversity.json").read_text())
    assert diversity["runs"] == 3 and len(diversity["seeds"]) == 3
    for curve in diversity["blocks"].values():
        for point in curve:
            assert point["n_eff"] is None or 1 - 1e-6 <= point["n_eff"] <= point["runs"] + 1e-6
    # the records keep each study's curves, and the figures' tables render from the records alone
    from repsearch.report.figure_tables import markdown
    from repsearch.store import record
    assert record.read(tmp_path / "s" / "record.json").study == scaling
    assert record.read(tmp_path / "d" / "record.json").study == diversity
    text = markdown([tmp_path / "d", tmp_path / "s"])
    first = scaling["blocks"]["0"]["population"][0]["mean_best_ce"]
    assert "| block | population 6 | population 12 |" in text and f"| 0 | {first:.3g} |" in text
    assert "| block | 1 run | 2 runs | 3 runs |" in text
    r = cli_in_process("diversity", "--preset", "quickstart", "--runs", "0", "--out", str(tmp_path / "bad"))
    assert r.returncode == 2 and not (tmp_path / "bad").exists()


def test_out_must_be_a_directory_this_run_may_own(tmp_path):
    """--out naming a file, a path that cannot be created, or another run's directory is one line,
    exit 2, and leaves what is there untouched; the same config resumes, an engine change too."""
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me")
    base = ["baseline", "--preset", "quickstart", "--set", "baseline.epochs=1", "--no-progress"]
    for out, message in ((afile, "is a file, not a directory"), (afile / "run", "cannot create it under")):
        r = cli_in_process(*base, "--out", str(out))
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert r.returncode == 2 and len(lines) == 1 and message in lines[0], r.stderr
    assert afile.read_text() == "keep me"
    run = tmp_path / "run"
    assert cli_in_process(*base, "--out", str(run)).returncode == 0
    before = (run / "config.json").read_text()
    r = cli_in_process(*base, "--set", "seed=3", "--out", str(run))
    assert r.returncode == 2 and "holds another run (seed differs" in r.stderr, r.stderr
    assert (run / "config.json").read_text() == before
    assert cli_in_process(*base, "--set", "engine.chunk_images=7", "--out", str(run)).returncode == 0
