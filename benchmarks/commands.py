"""How long each subcommand takes at `--preset quickstart` with its default flags, one after another
in fresh run directories (the README promises each finishes in under 3 minutes on 2 cores).

    python benchmarks/commands.py [--only run,rounds] [--limit 180]

Prints JSON: per command its wall seconds, exit code and whether it stayed under the limit; and
writes the record (benchmarks/common.emit). `train` learns from the cache `search` wrote.
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import emit  # noqa: E402

COMMANDS = {
    "search": [], "train": ["--cache", "{tmp}/search/cache"], "baseline": [], "run": [], "scaling": [], "diversity": [],
    "sweep": [], "neuroevolution": [], "neuroevolution-baseline": ["--part", "baseline"], "rounds": [], "ensemble": [],
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma-separated commands (default: all)")
    p.add_argument("--limit", type=float, default=180.0, help="seconds a command may take")
    a = p.parse_args()
    names = a.only.split(",") if a.only else list(COMMANDS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            command = name.split("-")[0]
            args = [x.format(tmp=tmp) for x in COMMANDS[name]]
            t0 = time.time()
            r = subprocess.run([sys.executable, "-m", "repsearch", command, "--preset", "quickstart", *args,
                                "--out", f"{tmp}/{name}", "--no-progress"], capture_output=True, text=True)
            seconds = time.time() - t0
            rows.append({"command": " ".join(["repsearch", command, "--preset", "quickstart", *COMMANDS[name]]),
                         "seconds": seconds, "returncode": r.returncode, "under_limit": seconds < a.limit})
            print(f"{name}: {seconds:.0f} s, exit {r.returncode}", file=sys.stderr, flush=True)
            if r.returncode:
                print(r.stderr[-1500:], file=sys.stderr)
    emit("commands", {"limit_s": a.limit, "all_under_limit": all(r["under_limit"] and not r["returncode"] for r in rows),
                      "rows": rows})


if __name__ == "__main__":
    main()
