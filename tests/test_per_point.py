"""Per-point settings that fit any model (config.per_point): a preset's lists, written for its
network's points, applied by role to models with other numbers of stages; explicit lists win."""
import json
from pathlib import Path

import pytest

from repsearch.config import per_point, resolve
from repsearch.errors import UserError

from .conftest import cli_in_process, need

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("values, n, fitted", [
    ([20, 60, 60, 20], 4, [20, 60, 60, 20]),  # the preset's own network: unchanged
    ([20, 60, 60, 20], 3, [20, 60, 20]),  # 2 stages: first, last stage, logits
    ([20, 60, 60, 20], 6, [20, 60, 60, 60, 60, 20]),
    ([0.3, 0.2, 0.1, 0.1], 6, [0.3, 0.2, 0.2, 0.1, 0.1, 0.1]),  # other stages by relative depth
    ([0.3, 0.2, 0.1, 0.1], 3, [0.3, 0.1, 0.1]),
    ([5, 1, 1, 0], 2, [5, 0]),  # one stage: its first value, then the logits'
    ([7], 5, [7, 7, 7, 7, 7]),  # one value for all
    ([4, 9], 4, [4, 4, 4, 9]),  # a preset with a single stage: every stage takes it
])
def test_a_presets_lists_are_fitted_by_role(values, n, fitted):
    assert per_point.by_role(values, n) == fitted


def test_explicit_lists_are_used_as_given_or_refused_never_fitted():
    cfg = resolve("quickstart", ["search.generations=[4,2,2,2]", "search.alpha=[0.2]"])
    assert {"search.generations", "search.alpha"} <= cfg.explicit and "search.blur" not in cfg.explicit
    with pytest.raises(UserError, match=r"the model has 3 search points .* search.generations has another number"):
        per_point.fit(cfg.search, 3, cfg.explicit)
    fitted = per_point.fit(cfg.search, 4, cfg.explicit)
    assert fitted["generations"] == [4, 2, 2, 2] and fitted["alpha"] == [0.2] * 4
    one_item = resolve("quickstart", ["search.generations.0=9"])  # an item of the list makes the list explicit
    assert "search.generations" in one_item.explicit


def test_the_fitted_lists_are_said_once_and_recorded_in_the_config():
    cfg = resolve("cpu-mnist")
    before = per_point.lists(cfg.search)
    for key, values in per_point.fit(cfg.search, 3).items():
        setattr(cfg.search, key, values)
    note = per_point.describe(before, cfg.search)
    assert "3 search points (2 stages + logits;" in note and "search.generations [20, 60, 60, 20] -> [20, 60, 20]" in note
    assert per_point.describe(per_point.lists(cfg.search), cfg.search) == ""


CASES = [("quickstart", "make_net", 3), ("quickstart", "make_five", 6),
         pytest.param("cpu-mnist", "make_net", 3, marks=need("mnist")),
         pytest.param("cpu-mnist", "make_five", 6, marks=need("mnist"))]


@pytest.mark.slow
@pytest.mark.parametrize("preset, factory, points", CASES)
def test_outside_models_with_2_and_5_stages_run_through_the_presets_with_no_per_point_settings(
        tmp_path, monkeypatch, data_root, preset, factory, points):
    """No per-point --set: the preset's lists are fitted, said at the start, kept in config.json,
    and the searched CE falls at every point; both methods learn."""
    monkeypatch.chdir(FIXTURES)
    out = tmp_path / "run"
    subset = 400 if preset == "quickstart" else 1000  # cpu-mnist's batch of 500 needs 500 training images
    sets = [f"data.subset={subset}", "learn.epochs=8", "baseline.epochs=8", "learn.probe_images=100", f"model.name=user_models:{factory}"]
    r = cli_in_process("run", "--preset", preset, *sum((["--set", s] for s in sets), []), "--data-root", data_root,
                       "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert f"fitted by role to this model's {points} search points" in r.stdout
    config = json.loads((out / "config.json").read_text())
    preset_lists = resolve(preset).search
    for key in per_point.PER_POINT:
        assert config["search"][key] == per_point.by_role(getattr(preset_lists, key), points), key
    manifest = json.loads((out / "seed0" / "cache" / "manifest.json").read_text())
    assert len(manifest["shapes"]) == points
    for p in manifest["summary"]["points"]:
        assert p["ce_end"] < p["ce_start"], p
    summary = json.loads((out / "summary.json").read_text())
    print(f"\n{preset} {factory}: CE first -> last per point "  # the figures, for `pytest -s`
          + ", ".join(f"{p['ce_start']:.3g} -> {p['ce_end']:.3g}" for p in manifest["summary"]["points"])
          + f"; SGD {summary['sgd_test_accuracy']:.4f}, search-based {summary['search_test_accuracy']:.4f}")
    assert summary["search_test_accuracy"] > 0.5 and summary["sgd_test_accuracy"] > 0.2, summary
