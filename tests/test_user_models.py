"""The staged-model contract: built-in families, a user's own model through the CLI and the
Python API, and one clear line for each way a model can break the contract."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from repsearch import api
from repsearch.config import resolve
from repsearch.data import prepare
from repsearch.errors import UserError
from repsearch.models import build_model
from repsearch.search.pool import images_for, run_search

from .conftest import cli_in_process

FIXTURES = Path(__file__).parent / "fixtures"
TINY_SEARCH = {"pop_size": 12, "top_k": 2, "n_explore": 5, "n_refine": 5}
THREE_POINTS = ["search.generations=[6,4,4]", "search.alpha=[0.3,0.2,0.3]", "search.boost=[3,3,1]",
                "search.blur=[1,0,0]", "search.target_ce=[0]", "search.extra_generations=[0]"]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "repsearch", *args], capture_output=True, text=True, cwd=FIXTURES)


@pytest.mark.parametrize("factory, message", [
    ("no_stages", "no module attribute stages"),
    ("batch_changer", "stages[1] must keep the batch dimension"),
    ("wrong_head", "head must return (batch, 10) logits"),
    ("not_a_factory", "has no callable 'not_a_factory'"),
    ("missing_name", "has no callable 'missing_name'"),
])
def test_a_model_that_breaks_the_contract_gets_one_line_and_exit_2(tmp_path, monkeypatch, factory, message):
    """In this process, the fixtures' directory first on the path as `python -m` puts the working
    directory (the other tests here run a real process from it)."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    out = tmp_path / "run"
    r = cli_in_process("search", "--preset", "quickstart", "--set", f"model.name=user_models:{factory}", "--out", str(out))
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1 and message in lines[0], r.stderr
    assert not out.exists()


@pytest.mark.subprocess
def test_unimportable_module_and_an_explicit_wrong_point_count_are_named(tmp_path):
    r = cli("search", "--preset", "quickstart", "--set", "model.name=nowhere:make", "--out", str(tmp_path / "a"))
    assert r.returncode == 2 and "cannot import 'nowhere'" in r.stderr
    r = cli("search", "--preset", "quickstart", "--set", "model.name=user_models:make_net", "--set",
            "search.generations=[4,2,2,2]", "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "the model has 3 search points (2 stages + logits)" in r.stderr
    assert "search.generations" in r.stderr and "Traceback" not in r.stderr and not (tmp_path / "b").exists()


@pytest.mark.subprocess
def test_user_model_through_the_cli_searches_and_learns(tmp_path):
    out = tmp_path / "run"
    sets = [x for s in [*THREE_POINTS, "data.subset=400", "learn.epochs=12", "baseline.epochs=12",
                        "learn.probe_images=100", "search.pop_size=12", "search.top_k=2", "search.n_explore=5",
                        "search.n_refine=5", "model.name=user_models:make_net"] for x in ("--set", s)]
    r = cli("run", "--preset", "quickstart", *sets, "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    search = json.loads((out / "seed0" / "cache" / "manifest.json").read_text())
    assert search["points"] == ["block0", "block1", "logits"]
    assert search["shapes"] == [[12, 8, 8], [48], [10]]  # digits 16x16: a map, then a vector
    layers = search["summary"]["points"]
    assert layers[-1]["ce_end"] < layers[0]["ce_start"]
    assert summary["search_test_accuracy"] > 0.5 and summary["sgd_test_accuracy"] > 0.5, summary
    learner = torch.load(out / "seed0" / "learn-all-noaug" / "model-learn-all-noaug.pt")
    assert any(k.startswith("stages.0.0.3.") for k in learner)  # the learner's role: a deeper first stage


def test_python_api_searches_and_learns_any_staged_model():
    sys.path.insert(0, str(FIXTURES))
    from user_models import make_net
    cfg = resolve("quickstart", ["data.subset=200"])
    prep = prepare(cfg)
    x, y = images_for(prep, prep.split.train)
    torch.manual_seed(0)
    model = make_net(prep.dataset.shape, 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    targets = api.search_targets(model, x, y, search={**TINY_SEARCH, "generations": [8, 6, 6], "alpha": [0.3],
                                                      "boost": [3], "blur": [1, 0, 0], "target_ce": [0],
                                                      "extra_generations": [0]}, seed=3)
    assert [tuple(r.shape) for r in targets.reps] == [(len(y), 12, 8, 8), (len(y), 48), (len(y), 10)]
    assert all(c[-1] < c[0] for c in targets.curves.values())
    assert len(model.stages[0]) == 3 and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    flat = targets.reps[1]  # the vector point lives in the normalized space
    assert torch.allclose(flat.mean(1), torch.zeros(len(y)), atol=1e-4)
    again = api.search_targets(model, x[:5], y[:5], image_ids=range(5), seed=3, calibration_images=x, search={
        **TINY_SEARCH, "generations": [8, 6, 6], "alpha": [0.3], "boost": [3], "blur": [1, 0, 0],
        "target_ce": [0], "extra_generations": [0]})
    assert torch.allclose(again.ce, targets.ce[:5], atol=1e-5)  # an image's search ignores its company
    torch.manual_seed(1)
    learner, stats = api.learn_from_targets(make_net(prep.dataset.shape, 10, role="learner"), x, y, targets,
                                            learn={"epochs": 6, "batch_size": 50})
    from repsearch.learn.runtime import evaluate
    assert evaluate(learner, *prep.images("test"))["accuracy"] > 0.4, stats


@pytest.mark.parametrize("family, shapes", [
    ("mlp", [(32,), (32,), (32,), (10,)]),
    ("resnet", [(8, 8, 8), (8, 4, 4), (8, 2, 2), (10,)]),
])
def test_builtin_families_follow_the_contract_and_search(tmp_path, family, shapes):
    cfg = resolve("quickstart", [f"model.name={family}", "model.widths=[{0},{0},{0}]".format(shapes[0][0]),
                                 "data.subset=24", "search.generations=[3,2,2,2]"])
    prep = prepare(cfg)
    model, got = build_model(cfg, "learner", prep.dataset.shape, 10, depth=2)
    assert got == shapes
    cache, summary = run_search(prep, cfg, tmp_path / "c")
    assert summary["points"][-1]["ce_end"] <= summary["points"][0]["ce_start"]
    assert cache.manifest["shapes"] == [list(s) for s in shapes]
    if family == "mlp":  # Dirac init: identity where a layer keeps every input, random where it narrows
        search, _ = build_model(cfg, "search", prep.dataset.shape, 10, init="dirac")
        first, second = search.stages[0][0][0].weight, search.stages[1][0][0].weight
        assert first.abs().gt(0).float().mean() > 0.9 and torch.equal(second, torch.eye(32))
    with pytest.raises(UserError, match="learn.supervise lists stages 0-2"):
        from repsearch.config.validation import check_supervise
        check_supervise([3], 3)


def test_search_can_start_from_given_representations():
    """The seam for iterative search and learning: point 0 starts from representations handed in
    (here each image's clean forward), not from noisy copies of the input; with no generations
    there, that start is what the search keeps."""
    from repsearch.models import airbench
    from repsearch.models.staged import normalize_stages, stage_outputs
    cfg = resolve("quickstart", ["data.subset=40", "model.widths=[8,8,8]"])
    prep = prepare(cfg)
    x, y = images_for(prep, prep.split.train[:12])
    torch.manual_seed(0)
    net = airbench.build(cfg.model, prep.dataset.shape, 10)
    net.init_from_data(x)
    search = {**TINY_SEARCH, "generations": [0, 2, 2, 2]}
    clean = api.search_targets(net, x, y, search=search, seed=1, start=torch.zeros(12, 8, 7, 7))
    assert torch.equal(clean.reps[0], torch.zeros(12, 8, 7, 7)) and (clean.evaluations == 1 + 3 * 10 * 2 + 3).all()
    with torch.no_grad():
        own = stage_outputs(normalize_stages(net).eval(), x)[0]
    started = api.search_targets(net, x, y, search={**search, "generations": [3, 2, 2, 2]}, seed=1, start=own)
    assert (started.evaluations == 1 + 3 * 10 + 3 * 2 * 10 + 3).all()  # one starting member, then children
    assert started.curves[0][-1] < started.curves[0][0]  # and the search improves on it


@pytest.mark.subprocess
def test_non_finite_representations_stop_the_search_before_they_are_written(tmp_path):
    out = tmp_path / "run"
    sets = [x for s in [*THREE_POINTS, "data.subset=40", "model.name=user_models:overflowing"] for x in ("--set", s)]
    r = cli("search", "--preset", "quickstart", *sets, "--out", str(out), "--no-progress")
    assert r.returncode == 2 and "non-finite values at search point" in r.stderr and "Traceback" not in r.stderr
    assert not list((out / "cache" / "chunks").glob("*.json"))  # no chunk recorded as complete
