"""`repsearch report` and the report `repsearch run` writes: self-contained, every figure loads in
a real browser (headless Chromium, where installed), and a run with missing pieces still renders."""
import re
import shutil
import subprocess

import pytest

from .conftest import cli_in_process
from .test_search import TINY

RUN = ["--preset", "quickstart", "--no-progress", "--set", "data.subset=200", "--set", "learn.epochs=3",
       "--set", "baseline.epochs=2", "--set", "learn.batch_size=50", "--set", "baseline.batch_size=50",
       "--set", "learn.probe_images=100", *sum((["--set", t] for t in TINY if "subset" not in t), [])]


def cli(*args):
    return cli_in_process(*args)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    r = cli("run", *RUN, "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


def rendered_images(page) -> tuple[int, int]:
    """(images on the page, images that loaded with a size) after Chromium rendered `page`."""
    probe = page.with_name("probe-" + page.name)
    probe.write_text(page.read_text().replace("</body>", """<script>window.addEventListener('load', () => {
        const imgs = [...document.images];
        document.body.dataset.images = imgs.length;
        document.body.dataset.loaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;});</script></body>"""))
    r = subprocess.run([shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                        "--virtual-time-budget=10000", probe.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'data-images="(\d+)" data-loaded="(\d+)"', r.stdout)
    assert found, r.stderr[-2000:]
    return int(found[1]), int(found[2])


def test_run_writes_a_self_contained_report_with_every_figure(finished_run):
    page = (finished_run / "report.html").read_text()
    for section in ("Tables 1/2", "Search (", "Learning curves", "Learnability diagnostics", "Figure 5", "Figures 6-7",
                    "resolved config"):
        assert section in page, section
    assert "http://" not in page and "https://" not in page  # nothing to fetch: viewable offline
    srcs = re.findall(r'<img[^>]*src=["\']([^"\']+)', page)
    assert len(srcs) >= 5 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert (finished_run / "figure5_cosine_distance.png").exists()
    assert (finished_run / "figure6_7_collision_entropy.png").exists()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_every_figure_loads_in_chromium(finished_run):
    images, loaded = rendered_images(finished_run / "report.html")
    assert images >= 5 and loaded == images


def test_a_run_with_missing_pieces_still_renders_and_says_what_is_missing(tmp_path):
    search_only = tmp_path / "search"
    assert cli("search", *RUN, "--out", str(search_only)).returncode == 0
    partial = tmp_path / "partial"
    partial.mkdir()  # a run directory with nothing in it yet
    out = tmp_path / "report.html"
    r = cli("report", str(search_only), str(partial), "--out", str(out))
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    assert "no SGD baseline and no learning in this run" in page
    assert "no target cache in this run" in page and "has not finished" in page
    if shutil.which("chromium"):
        images, loaded = rendered_images(out)
        assert images >= 2 and loaded == images


def test_report_errors_are_one_line(tmp_path):
    r = cli("report", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html"))
    assert r.returncode == 2 and "is not a run directory" in r.stderr and "Traceback" not in r.stderr
    r = cli("report", str(tmp_path), "--out", str(tmp_path))
    assert r.returncode == 2 and "is a directory" in r.stderr


def test_a_sweeps_point_learners_are_learning_stages(tmp_path):
    """`repsearch sweep` learns each point in POINT/learn: the report must show those learners,
    not say the run has no learning (it did until 2026-12-01)."""
    from repsearch.report.html import learning_stages
    for d in ("pop-6/learn", "gen-x1/learn", "seed0/sgd-noaug", "seed0/learn-all-noaug", "pop-6/cache"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "metrics.jsonl").write_text("{}\n")
    found = {str(p.relative_to(tmp_path)) for p in learning_stages(tmp_path)}
    assert found == {"pop-6/learn", "gen-x1/learn", "seed0/sgd-noaug", "seed0/learn-all-noaug"}


def test_the_report_reads_like_the_paper_units_contents_captions(finished_run):
    """Percentages and SI units instead of raw fractions and FLOP counts, a contents list whose
    links all land, a caption under every figure, the paper's figure beside ours where it has the dataset."""
    page = (finished_run / "report.html").read_text()
    assert re.search(r"<td>\d+\.\d\d%</td>", page) and re.search(r"<td>[\d.]+ [kMGTP]?FLOP</td>", page)
    assert not re.search(r"<td>\d{8,}</td>", page)  # no bare FLOP counts
    assert "<td>wall time</td>" in page and "wall time s" not in page  # the value carries the unit
    anchors = set(re.findall(r"id='([^']+)'", page))
    links = re.findall(r"href='#([^']+)'", page)
    assert "<h2>Contents</h2>" in page and links and set(links) <= anchors
    images = len(re.findall(r"<img", page))
    assert page.count("<p class='note'>") >= images  # a sentence under each figure (and the page's note)
    from repsearch.report.paper import paper_figure
    assert paper_figure("cifar10-jpeg", "sgd") == "89.1 (the paper's CIFAR-10)" and paper_figure("digits", "sgd") == "–"
    assert paper_figure("mnist", "all") == "99.0" and paper_figure("cifar100", "skip0", augmented=True) == "69.2"
