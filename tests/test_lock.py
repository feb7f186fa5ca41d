"""One process per run directory (store.lock): a second command into a busy --out is refused in
one line naming the holder, and a killed holder never blocks the resume."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from repsearch.store.lock import holder, lock_run_dir, release_all

from .conftest import cli_in_process

SLOW_SEARCH = ["search", "--preset", "quickstart", "--set", "model.widths=[8,8,8]",
               "--set", "search.generations=[400,200,200,50]", "--no-progress"]


@pytest.mark.subprocess
def test_a_second_command_into_a_busy_run_directory_gets_one_line_and_a_killed_one_does_not_block(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "repsearch", *SLOW_SEARCH, "--out", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "config.json").exists():  # written once the lock is held
            assert first.poll() is None, first.stderr.read()
            assert time.time() < deadline, "the first search never started"
            time.sleep(0.2)
        config = (out / "config.json").read_text()
        second = subprocess.run([sys.executable, "-m", "repsearch", *SLOW_SEARCH, "--out", str(out)],
                                capture_output=True, text=True, timeout=120)
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert second.returncode == 2 and len(lines) == 1, second.stderr
        assert "is in use by another repsearch process" in lines[0] and f"pid {first.pid}" in lines[0]
        assert (out / "config.json").read_text() == config  # the second wrote nothing
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    lock_run_dir(out)  # the dead holder's lock is gone with it: a resume may take it
    try:
        assert json.loads((out / ".lock.holder").read_text())["pid"] == os.getpid()
    finally:
        release_all()


def _other_process_locks(out) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", f"from repsearch.store.lock import lock_run_dir; lock_run_dir({str(out)!r})"],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.subprocess
def test_a_command_holds_its_run_directory_while_it_runs_and_lets_go_when_it_ends(tmp_path):
    out = tmp_path / "run"
    lock_run_dir(out)
    try:
        probe = _other_process_locks(out)
        assert probe.returncode != 0 and "is in use by another repsearch process" in probe.stderr
        assert f"pid {os.getpid()}" in holder(out)
    finally:
        release_all()
    r = cli_in_process("search", "--preset", "quickstart", "--set", "model.widths=[8,8,8]", "--set",
                       "search.generations=[1,1,1,1]", "--set", "data.subset=40", "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert _other_process_locks(out).returncode == 0  # the finished command released it
