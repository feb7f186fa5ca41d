"""`repsearch tables`: datasets as columns, methods as rows, mean ± std over seeds, Markdown and LaTeX."""
import json
import subprocess
import sys

import pytest

from repsearch.errors import UserError
from repsearch.report.tables import gather, latex, markdown


def fake_run(path, dataset, table, subset=0):
    """A finished run directory as `repsearch run` leaves it (results.json, config.json)."""
    path.mkdir(parents=True)
    seeds = len(next(iter(next(iter(table.values())).values())))
    cells = {m: {a: {"mean": sum(v) / len(v), "std": (max(v) - min(v)) / 2, "values": v} for a, v in by.items()}
             for m, by in table.items()}
    (path / "results.json").write_text(json.dumps({"dataset": dataset, "seeds": seeds, "table": cells}))
    (path / "config.json").write_text(json.dumps({"data": {"name": dataset, "subset": subset}}))
    return path


def test_tables_put_datasets_in_columns_and_methods_in_rows(tmp_path):
    mnist = fake_run(tmp_path / "m", "mnist", {"sgd": {"noaug": [0.991, 0.989, 0.990]},
                                               "all": {"noaug": [0.990, 0.988, 0.992]}})
    cifar = fake_run(tmp_path / "c", "cifar10-jpeg", {
        "sgd": {"noaug": [0.89, 0.88, 0.90], "aug": [0.93, 0.92, 0.94]},
        "all": {"noaug": [0.88, 0.87, 0.89], "aug": [0.90, 0.91, 0.92]},
        "skip0": {"aug": [0.92, 0.91, 0.93]}}, subset=10000)
    g = gather([mnist, cifar])
    assert [c[0] for c in g["columns"]] == ["MNIST", "cifar10-jpeg (10,000 images)"]
    md = markdown(g)
    table1, table2 = md.split("Table 2")
    assert "| SGD | 99.0 ± 0.1 | 89.0 ± 1.0 |" in table1
    assert "| Search-based (All layers) | 99.0 ± 0.2 | 88.0 ± 1.0 |" in table1
    assert "| Search-based (Skip block 0) | – | 92.0 ± 1.0 |" in table2  # MNIST has no augmented runs
    assert table2.index("Skip block 0") < table2.index("All layers")  # the paper's row order
    assert "CIFAR-10" not in md and "CIFAR-10" not in latex(g)  # the JPEG copy is named as such
    tex = latex(g)
    assert tex.count("\\begin{tabular}{lcc}") == 2 and "99.0 $\\pm$ 0.1" in tex and "\\toprule" in tex


@pytest.mark.subprocess
def test_one_seed_shows_no_spread_and_bad_directories_are_one_line(tmp_path):
    one = fake_run(tmp_path / "one", "digits", {"sgd": {"noaug": [0.97]}, "all": {"noaug": [0.95]}})
    assert "| SGD | 97.0 |" in markdown(gather([one]))
    with pytest.raises(UserError, match="has no results.json"):
        gather([tmp_path])
    r = subprocess.run([sys.executable, "-m", "repsearch", "tables", str(one), str(tmp_path / "nope"), "--out",
                        str(tmp_path / "t")], capture_output=True, text=True)
    assert r.returncode == 2 and "has no results.json" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "repsearch", "tables", str(one), "--out", str(tmp_path / "t")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and (tmp_path / "t.md").exists() and (tmp_path / "t.tex").exists()


def test_tables_from_committed_records_alone(tmp_path):
    """A run's record.json carries its Tables 1-2, so tables can be rebuilt from results/ without
    the run directory; a record without them is one line."""
    from repsearch.config import resolve
    from repsearch.errors import UserError
    from repsearch.report.tables import gather, markdown
    from repsearch.store import record
    cell = lambda m, s: {"mean": m, "std": s, "values": [m - s, m + s]}
    common = dict(kind="run", config=resolve("cpu-fashion").to_dict(), environment={}, seeds=[0, 1], dataset="fashion-mnist",
                  wall_seconds=1.0, headline={})
    record.write(tmp_path / "a" / "record.json", **common,
                 tables={"sgd": {"noaug": cell(0.9, 0.01), "aug": cell(0.91, 0.01)}, "all": {"noaug": cell(0.88, 0.02)}})
    g = gather([tmp_path / "a" / "record.json"])
    assert g["columns"] == [("Fashion-MNIST (30,000 images)", 2)]
    table1 = markdown(g).split("Table 2")[0]
    assert "| SGD | 90.0 ± 1.0 |" in table1 and "| Search-based (All layers) | 88.0 ± 2.0 |" in table1
    record.write(tmp_path / "b" / "record.json", **common)
    with pytest.raises(UserError, match="holds no Tables 1-2"):
        gather([tmp_path / "b"])
