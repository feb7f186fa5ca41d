"""Numbers a reader can re-derive: the README's results table is rendered from the committed run
records in results/ (`repsearch results results/ --out FILE`), and this test fails when a number
in it has no record or differs from its record."""
from pathlib import Path

import pytest

from repsearch.errors import UserError
from repsearch.report.results import BEGIN, END, stale_rows, table
from repsearch.store import record

ROOT = Path(__file__).parents[1]


def test_every_committed_record_is_valid_and_small():
    paths = record.find([ROOT / "results"])
    assert paths, "results/ holds no records"
    for path in paths:
        rec = record.read(path)
        assert path.stat().st_size < 100_000, path
        assert rec.environment.get("commit") and rec.environment.get("dirty") is False, f"{path}: not from a clean commit"


def test_the_readme_table_is_what_the_records_say(monkeypatch):
    monkeypatch.chdir(ROOT)  # record links are relative to the repository root
    assert stale_rows((ROOT / "README.md").read_text(), ["results"]) == []


def test_a_changed_number_or_a_row_without_a_record_is_caught(monkeypatch):
    monkeypatch.chdir(ROOT)
    rendered = table(["results"])
    first = rendered.splitlines()[2]
    changed = first.replace("%", "1%", 1)  # one digit more in the first percentage
    readme = f"{BEGIN}\n{rendered.replace(first, changed)}{END}\n"
    problems = stale_rows(readme, ["results"])
    assert f"not from any record: {changed}" in problems and f"missing: {first}" in problems
    assert stale_rows("no table here", ["results"]) == ["the document has no results table between the markers"]


def test_a_damaged_record_is_one_line(tmp_path):
    bad = tmp_path / "record.json"
    bad.write_text('{"schema_version": 1, "kind": "run"}')
    with pytest.raises(UserError, match="is not a valid record"):
        record.read(bad)
