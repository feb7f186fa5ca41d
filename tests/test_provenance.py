"""A run names the code it ran even where the machine's copy of .git is stale (the lent GPU's):
`store.rundir.git_tree` hashes the files on disk into the tree id the commit that holds them has."""
import shutil
import subprocess

import pytest

from repsearch.store.rundir import git_tree

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(root, *args) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_the_tree_of_the_files_on_disk_is_their_commits_even_under_a_stale_head(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("data/\n")
    (tmp_path / "a.py").write_text("one\n")
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "run.sh").chmod(0o755)
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "first")
    first = git(tmp_path, "rev-parse", "HEAD")
    assert git_tree(str(tmp_path)) == git(tmp_path, "rev-parse", "HEAD^{tree}")
    (tmp_path / "a.py").write_text("two\n")
    (tmp_path / "b.py").write_text("new\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "second")
    second_tree = git(tmp_path, "rev-parse", "HEAD^{tree}")
    git(tmp_path, "reset", "-q", "--mixed", first)  # .git back at the first commit, the files the second's
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.npy").write_bytes(b"ignored")  # ignored files are not code
    assert git(tmp_path, "rev-parse", "HEAD") == first
    assert git_tree(str(tmp_path)) == second_tree
    objects = git(tmp_path, "count-objects")
    (tmp_path / "a.py").write_text("three\n")  # an edit anywhere changes the tree, and nothing is stored
    assert git_tree(str(tmp_path)) not in (second_tree, None)
    assert git(tmp_path, "count-objects") == objects


def test_outside_a_checkout_there_is_no_tree(tmp_path):
    assert git_tree(str(tmp_path)) is None
