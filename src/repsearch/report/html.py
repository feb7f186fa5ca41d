"""`repsearch report RUN_DIR... --out FILE.html`: one self-contained page per set of runs.

Figures are PNGs embedded as data URIs (no network, no side files), so the page can be mailed or
attached to a paper's supplement. Everything is read from what the runs wrote (config,
environment, summaries, metrics, the target cache); a piece a run lacks is named, not skipped
silently. `repsearch run` writes RUN/report.html at the end.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from repsearch.store import records

from . import figures
from .paper import SUMMARY_KEYS, paper_figure
from .plots import plt, point_title
from .tables import LABELS
from .units import label, readable

CAPTIONS = {
    "search": "Mean best and mean population cross-entropy per generation at each search point: the search "
              "lowers the CE at every point, each point starting from the previous point's best.",
    "ce_hist": "The searched cross-entropy of every image: the fitness the learner's targets reached.",
    "learning": "Validation accuracy per epoch of every training stage (SGD at each depth, the learners).",
    "f5": "Figure 5: how far each method's representations are from the held-out searched targets, per block "
          "and epoch (1 - cosine).",
    "f67": "Figures 6-7: within-class (solid) and between-class (dashed) collision entropy per block and epoch; "
           "lower is more alike.",
    "scaling_population.png": "Figure 2: the best CE reached at one block against population size.",
    "scaling_generations.png": "Figure 2: the best CE reached at one block against generations.",
    "diversity.png": "Figure 3: the effective number of distinct solutions (N_eff) against independent runs.",
    "sweep.png": "Figure 4: validation accuracy against search compute (population, generations).",
}


def _caption(key: str) -> str:
    return f"<p class='note'>{html.escape(CAPTIONS[key])}</p>"

STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:.5em 0}
.missing{color:#a33;font-style:italic}pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.85em}
.note{color:#555;font-size:.9em}nav li{margin:.15em 0}"""


def _img(fig) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _png_file(path: Path) -> str:
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'


def _table(header: list, rows: list[list]) -> str:
    cell = lambda v: html.escape(v if isinstance(v, str) else f"{v:,.4g}" if isinstance(v, float) else str(v))
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _missing(what: str) -> str:
    return f'<p class="missing">{html.escape(what)}</p>'


# --- sections ---------------------------------------------------------------------------------
def header(run: Path) -> str:
    cfg, env, summary = records.config(run), records.environment(run), records.summary(run)
    parts = [f"<h2 id='{_anchor(run)}'>{html.escape(str(run))}</h2>"]
    if cfg:
        overlays = ", ".join(cfg.get("overlays") or []) or "none"
        parts.append(f"<p>command <b>{html.escape(str(cfg.get('command', '?')))}</b>, preset "
                     f"<b>{html.escape(str(cfg.get('preset')))}</b>, overlays {html.escape(overlays)}, dataset "
                     f"<b>{html.escape(cfg['data']['name'])}</b>, seed {cfg.get('seed')}</p>")
    if env:
        dirty = {True: " (uncommitted changes)", False: "", None: ""}[env.get("dirty")]
        parts.append(f"<p class='note'>commit {html.escape(str(env.get('commit')))}{dirty}; {html.escape(env.get('device', '?'))}"
                     f"{' ' + html.escape(env['cuda_device']) if env.get('cuda_device') else ''}; torch {env.get('torch')}; "
                     f"{env.get('cpu_count')} CPUs; started {env.get('time')}</p>")
    if summary:
        dataset = (cfg or {}).get("data", {}).get("name", "")
        flat = [[label(k), readable(k, v), paper_figure(dataset, SUMMARY_KEYS[k]) if k in SUMMARY_KEYS else ""]
                for k, v in summary.items() if not isinstance(v, (list, dict))]
        parts.append(f"<h3 id='{_anchor(run, 'summary')}'>Summary</h3>" + _table(["figure", "value", "the paper (%)"], flat))
    else:
        parts.append(_missing("no summary.json: the run has not finished (or was not a repsearch run)"))
    return "".join(parts)


def tables(run: Path) -> str:
    """Tables 1/2 of a `run`: ours (mean ± std over seeds) beside the paper's for the dataset."""
    if not (run / "results.json").exists():
        return ""
    res = records.results(run)
    augs = [a for a in ("noaug", "aug") if any(a in cols for cols in res["table"].values())]
    header = ["method"] + [f"{'no augmentation' if a == 'noaug' else 'with augmentation'}: ours, the paper" for a in augs]
    rows = [[LABELS.get(m, m)] + [f"{100 * cols[a]['mean']:.2f} ± {100 * cols[a]['std']:.2f}, "
                                   f"{paper_figure(res['dataset'], m, a == 'aug')}" if a in cols else "–" for a in augs]
            for m, cols in sorted(res["table"].items(), key=lambda kv: list(LABELS).index(kv[0]) if kv[0] in LABELS else 9)]
    return (f"<h3 id='{_anchor(run, 'tables')}'>Tables 1/2: test accuracy (%), {res['seeds']} seed(s)</h3>"
            + _table(header, rows))


def search_section(cache_dir: Path) -> str:
    from repsearch.store.cache import TargetCache
    cache = TargetCache.open(cache_dir)
    summary = records.search_summary(cache.manifest.get("summary"))
    parts = [f"<h3 id='{_anchor(cache_dir)}'>Search ({html.escape(str(cache_dir))})</h3>"]
    curves = cache.curves()
    if curves:
        n = len(curves)
        fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3), squeeze=False)
        for point, ax in enumerate(axes[0]):
            c = curves.get(point)
            if c:
                ax.plot(c["best"], label="best")
                ax.plot(c["mean"], label="population mean", alpha=0.6)
            ax.set(title=point_title(point, n), xlabel="generation", yscale="log")
        axes[0][0].set_ylabel("cross-entropy (nats)")
        axes[0][0].legend(fontsize=7)
        parts.append(_img(fig) + _caption("search"))
    if cache.complete:  # a partial cache's unsearched rows are zeros, not CEs
        ce = cache.arrays()["ce"]
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.hist(np.log10(np.clip(ce, 1e-6, None)), bins=40, color="tab:purple")
        ax.set(xlabel="log10 searched CE (nats)", ylabel="images", title="Searched cross-entropy per image")
        parts.append(_img(fig) + _caption("ce_hist"))
    if summary:
        n = len(summary["points"])
        rows = [[point_title(p["point"], n), readable("ce", p["ce_start"]), readable("ce", p["ce_end"]),
                 readable("evaluations_per_s", p["evaluations_per_s"]), readable("seconds", p["seconds"])]
                for p in summary["points"]]
        parts.append(_table(["point", "mean best CE, first generation", "last generation", "speed", "time"], rows))
        parts.append(f"<p>searched accuracy {summary['searched_accuracy']:.2%}; CE mean {summary['searched_ce_mean']:.4g} "
                     f"nats, p90 {summary['searched_ce_p90']:.4g}; {summary['evaluations_per_image_mean']:,.0f} "
                     f"evaluations per image; {readable('flops', summary['flops_total'])} in all</p>")
    else:
        parts.append(_missing(f"the search is incomplete ({len(cache.done_chunks())}/{cache.manifest['num_chunks']} chunks)"))
    return "".join(parts)


def learning_stages(run: Path) -> list[Path]:
    """Directories under `run` whose metrics are an SGD or learning stage: `run`'s sgd-*/learn-*,
    a sweep point's or a round's `learn`, or `run` itself when it is a `baseline`/`train` run."""
    def is_stage(d: Path) -> bool:
        if d == run:
            return (records.config(run) or {}).get("command") in ("baseline", "train")
        return d.name == "learn" or d.name.startswith(("sgd-", "learn-"))
    return sorted(p.parent for p in run.glob("**/metrics.jsonl") if is_stage(p.parent))


def learning_section(run: Path) -> str:
    stages = learning_stages(run)
    if not stages:
        return _missing("no SGD baseline and no learning in this run")
    parts = [f"<h3 id='{_anchor(run, 'learning')}'>Learning curves (validation accuracy)</h3>"]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for stage in stages:
        recs = [r for r in records.epoch_records(stage) if "val_accuracy" in r]
        tags = sorted({r["tag"] for r in recs})
        for tag in tags:
            pts = [(r["epoch"], r["val_accuracy"]) for r in recs if r["tag"] == tag]
            ax.plot(*zip(*pts), label=f"{stage.relative_to(run) if stage != run else ''} {tag}".strip())
    ax.set(xlabel="epoch", ylabel="validation accuracy")
    ax.legend(fontsize=6)
    parts.append(_img(fig) + _caption("learning"))
    rows = []
    for stage in stages:
        s = records.summary(stage)
        if not s:
            rows.append([str(stage.relative_to(run)), "no summary.json (unfinished, or a sweep from before 2026-12-01)", "", "", "", "", ""])
            continue
        probes = "/".join(f"{s[k]:.3f}" for k in sorted(s) if k.startswith("probe_block"))
        control = "/".join(f"{s[k]:.3f}" for k in sorted(s) if k.startswith("untrained_probe_block"))
        cos = "/".join(f"{s[k]:.2f}" for k in sorted(s) if k.startswith("cos_block"))
        base = "/".join(f"{v['class_mean']:.2f}" for v in (s.get("target_baselines") or {}).values())
        rows.append([str(stage.relative_to(run)) if stage != run else ".", readable("accuracy", s.get("test_accuracy", float("nan"))),
                     readable("accuracy", s.get("val_accuracy", float("nan"))), probes, control,
                     f"{cos} (class-mean {base})" if cos else "", readable("wall_time_s", s.get("wall_time_s", float("nan")))])
    parts.append("<h3>Learnability diagnostics and wall time</h3>" + _table(
        ["stage", "test accuracy", "val accuracy", "linear probe per block", "untrained probe (control)",
         "cosine to held-out targets", "wall time"], rows))
    return "".join(parts)


def paper_figures(run: Path) -> str:
    parts = []
    methods = figures.method_records(run)
    if len(methods) == 2:
        for title, fn, name in (("Figure 5: cosine distance to the searched targets", figures.plot_cosine_distance, "f5"),
                                ("Figures 6-7: collision entropy", figures.plot_collision_entropy, "f67")):
            buf = io.BytesIO()
            if fn(methods, buf):
                parts.append(f"<h3>{title}</h3><img alt='{name}' src='data:image/png;base64,"
                             f"{base64.b64encode(buf.getvalue()).decode()}'>" + _caption(name))
            else:
                parts.append(_missing(f"{title}: not logged by this run (made before the per-epoch diagnostics)"))
    elif (run / "results.json").exists():
        parts.append(_missing("Figures 5-7 need both an SGD baseline and search-based learning without augmentation"))
    for png, title in (("scaling_population.png", "Figure 2: fitness vs population"),
                       ("scaling_generations.png", "Figure 2: fitness vs generations"),
                       ("diversity.png", "Figure 3: diversity"), ("sweep.png", "Figure 4: accuracy vs search compute")):
        if (run / png).exists():
            parts.append(f"<h3>{title}</h3>" + _png_file(run / png) + _caption(png))
    return "".join(parts)


def config_section(run: Path) -> str:
    cfg = records.config(run)
    if not cfg:
        return ""
    return f"<details><summary>resolved config</summary><pre>{html.escape(json.dumps(cfg, indent=2))}</pre></details>"


def _anchor(path: Path, part: str = "") -> str:
    return "r" + "".join(c if c.isalnum() else "-" for c in f"{path}-{part}".strip("-"))


def contents(runs: list[Path]) -> str:
    """A contents list: each run and its sections (the report can be long)."""
    items = []
    for run in map(Path, runs):
        caches = sorted({p.parent for p in run.glob("**/manifest.json") if p.parent.name == "cache"})
        subs = [("summary", "summary")] + ([("tables", "Tables 1/2")] if (run / "results.json").exists() else [])
        links = [f"<a href='#{_anchor(run, a)}'>{t}</a>" for a, t in subs]
        links += [f"<a href='#{_anchor(c)}'>search {html.escape(str(c.relative_to(run)))}</a>" for c in caches]
        links.append(f"<a href='#{_anchor(run, 'learning')}'>learning</a>")
        items.append(f"<li><a href='#{_anchor(run)}'>{html.escape(str(run))}</a>: {', '.join(links)}</li>")
    return "<nav><h2>Contents</h2><ul>" + "".join(items) + "</ul></nav>"


def run_html(run: Path) -> str:
    run = Path(run)
    caches = sorted({p.parent for p in run.glob("**/manifest.json") if p.parent.name == "cache"})
    parts = [header(run), tables(run)]
    parts += [search_section(c) for c in caches] or [_missing("no target cache in this run (no search)")]
    parts += [learning_section(run), paper_figures(run), config_section(run)]
    return "<section>" + "".join(parts) + "</section>"


def write_report(runs: list[Path], out: Path) -> Path:
    from repsearch.store.atomic import atomic_write_text
    body = "".join(run_html(Path(r)) for r in runs)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>repsearch report</title><style>{STYLE}</style>"
            f"</head><body><h1>repsearch report</h1><p class='note'>{len(runs)} run(s). Accuracies in percent, "
            f"cross-entropies in nats, FLOPs and rates with SI prefixes; 'the paper' is Vegesna &amp; Dahal (2025), "
            f"Tables 1-2, where it has the dataset.</p>{contents(runs)}{body}</body></html>")
    atomic_write_text(Path(out), page)
    return Path(out)
