"""Layer-wise evolutionary search in representation space (paper Section 3.1, A.2, A.4).

Three pieces, kept apart as in evosax/EvoTorch:
  - `SearchProblem`: the untrained search network and the labels; scores candidates at a search
    point by running the rest of the network (`forward_from`) and taking the cross-entropy.
  - `LayerEvolution`: the strategy for one search point and a batch of images, as ask/tell.
  - `search_images`: the layer-by-layer loop over a chunk of images, with adaptive stopping.
Fitness is the negative cross-entropy; the code keeps the cross-entropy itself (lower = better).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import operators as ops
from .models import BatchNorm, Net, build_net, from_phases, sample_normalize, to_phases


def build_search_network(cfg, prep, device: str) -> Net:
    """The untrained, Dirac-initialized search network (1 ConvGroup per block), its whitening
    fitted on training images and, in `bn="calibrated"` mode, its BatchNorm statistics estimated
    on clean training images and then frozen, so that a candidate's fitness depends on it alone."""
    torch.manual_seed(cfg.seed)
    net = build_net(cfg.model, prep.dataset.shape, prep.dataset.num_classes, groups_per_block=1,
                    normalize_outputs=cfg.search.target_space == "normalized", init="dirac")
    x, _ = prep.images("train")
    x = x.cpu()
    net.whiten.fit(x[:cfg.model.whiten_patches], cfg.model.whiten_eps)
    for m in net.modules():
        if isinstance(m, BatchNorm):
            m.track_running_stats, m.momentum = True, None  # cumulative average over calibration batches
            m.reset_running_stats()
    net.train()
    with torch.no_grad():
        for i in range(0, min(len(x), cfg.search.calib_images), 500):
            net(x[i:min(i + 500, cfg.search.calib_images)])
    net.eval()
    return net.to(device)


def configure_search_mode(net: Net, cfg_search) -> None:
    """Set BN behaviour for search and flag identity convs for the fast path."""
    net.eval()
    if cfg_search.bn == "batch":  # the paper's BN without running stats: couples candidates
        for m in net.modules():
            if isinstance(m, BatchNorm):
                m.train()
                m.track_running_stats = False
    if cfg_search.fast:
        net.mark_identity_convs()
    else:
        net.clear_identity_convs()


class SearchProblem:
    """Scores candidate representations: CE of the logits that the rest of the network makes."""

    def __init__(self, net: Net, max_rows: int = 4096):
        self.net, self.max_rows = net, max_rows
        self.evaluations = 0

    @torch.no_grad()
    def cross_entropy(self, layer: int, cands: torch.Tensor, labels: torch.Tensor, phases: bool = False) -> torch.Tensor:
        """cands (B, M, *S), labels (B,) -> CE (B, M). `phases`: maps in pooling-phase pixel order."""
        b, m = cands.shape[:2]
        flat = cands.reshape(b * m, *cands.shape[2:])
        y = labels.repeat_interleave(m)
        out = torch.empty(b * m, device=cands.device)
        for i in range(0, b * m, self.max_rows):
            logits = self.net.forward_from(layer, flat[i:i + self.max_rows], phases).float()
            out[i:i + self.max_rows] = F.cross_entropy(logits, y[i:i + self.max_rows], reduction="none")
        self.evaluations += b * m
        return out.reshape(b, m)


@dataclass
class LayerSchedule:
    generations: int
    alpha: float
    boost: float
    blur: int

    @staticmethod
    def from_config(s, layer: int) -> "LayerSchedule":
        return LayerSchedule(s.generations[layer], s.alpha[layer], s.boost[layer], s.blur[layer])


class LayerEvolution:
    """The evolution strategy at one search point for a batch of images (ask/tell).

    Each generation, per image: the top-k by fitness are parents, kept with their fitness (never
    recomputed); `n_explore` explorers are bred from the parents at alpha x boost; `n_refine`
    refiners from parents and explorers at alpha. `ask` returns the children to score, `tell`
    takes their cross-entropies and forms the next population = parents + children.
    `step` does ask, scoring and tell at once; with `compiled` it runs them as one compiled graph
    (the fast path's fused generation, see docs/performance.md). With `phases` the population's
    maps keep their pixels in pooling-phase order (`models.pool_phase_order`) and so does the noise.
    """

    def __init__(self, pop: torch.Tensor, ce: torch.Tensor, sched: LayerSchedule, top_k: int, n_explore: int,
                 n_refine: int, smooth_target: str, rng: ops.PerImageRNG, fast: bool = True,
                 bank: ops.NoiseBank | None = None, phases: bool = False):
        self.pop, self.ce = pop, ce  # (B, P, *S), (B, P)
        self.sched, self.top_k, self.n_explore, self.n_refine = sched, top_k, n_explore, n_refine
        self.smooth_target, self.rng, self.fast, self.bank = smooth_target, rng, fast, bank
        self.phases = phases
        self._parents = None

    def draw(self) -> tuple:
        """This generation's random numbers, from each image's own stream: (noise or bank offsets,
        explorer parent picks (B, 2, E), refiner parent picks (B, 2, R))."""
        k = min(self.top_k, self.pop.shape[1])
        shape = (self.n_explore + self.n_refine, *self.pop.shape[2:])
        if self.bank is not None:
            noise = self.bank.offsets(self.rng, shape, self._bank_blur())
        else:
            noise = self.rng.randn(shape)
        return noise, self.rng.randint(k, (2, self.n_explore)), self.rng.randint(k + self.n_explore, (2, self.n_refine))

    def _bank_blur(self) -> int:
        """Blur baked into the bank (noise-only smoothing of conv maps is pre-applied there)."""
        return self.sched.blur if self.smooth_target == "noise" and self.pop.dim() == 5 else 0

    def _hyper(self) -> dict:
        s = self.sched
        return dict(top_k=self.top_k, n_explore=self.n_explore, alpha=s.alpha, boost=s.boost,
                    blur=s.blur - (self._bank_blur() if self.bank is not None else 0),
                    smooth_target=self.smooth_target, fast=self.fast)

    def _noise(self, draws):
        if self.bank is None:
            return draws[0], None
        shape = (self.n_explore + self.n_refine, *self.pop.shape[2:])
        return self.bank.source(shape, self._bank_blur(), self.phases), draws[0]

    def ask(self) -> torch.Tensor:
        draws = self.draw()
        noise, offsets = self._noise(draws)
        parents, parent_ce, children = breed(self.pop, self.ce, noise, offsets, draws[1], draws[2], **self._hyper())
        self._parents = (parents, parent_ce)
        return children

    def tell(self, children: torch.Tensor, children_ce: torch.Tensor) -> None:
        parents, parent_ce = self._parents
        self.pop = torch.cat([parents, children], dim=1)
        self.ce = torch.cat([parent_ce, children_ce], dim=1)
        self._parents = None

    def step(self, problem: "SearchProblem", layer: int, labels: torch.Tensor, compiled: bool = False) -> int:
        """One generation: ask, score with the rest of the network, tell. With `compiled`, the whole
        generation runs as one compiled graph. Returns the children scored per image."""
        if not compiled:
            children = self.ask()
            self.tell(children, problem.cross_entropy(layer, children, labels, self.phases))
            return children.shape[1]
        draws = self.draw()
        noise, offsets = self._noise(draws)
        self.pop, self.ce = _compiled_generation(problem.net, layer)(self.pop, self.ce, labels, noise, offsets,
                                                                     draws[1], draws[2], phases=self.phases,
                                                                     **self._hyper())
        problem.evaluations += labels.shape[0] * (self.n_explore + self.n_refine)
        return self.n_explore + self.n_refine

    def best(self) -> tuple[torch.Tensor, torch.Tensor]:
        i = self.ce.argmin(dim=1)
        rows = torch.arange(len(i), device=i.device)
        return self.pop[rows, i], self.ce[rows, i]


def breed(pop, ce, noise, offsets, picks_explore, picks_refine, *, top_k, n_explore, alpha, boost, blur,
          smooth_target, fast):
    """Select the top-k parents and breed explorers then refiners from them (pure: the random
    numbers come in). `noise` is (B, M, *S) normals, or with `offsets` (B, M) the flat bank that
    each child's noise is a window of. Returns parents, their CE, and the children (B, M, *S)."""
    k = min(top_k, pop.shape[1])
    order = ce.topk(k, dim=1, largest=False).indices
    parents, parent_ce = ops.gather(pop, order), ops.gather(ce, order)
    parent_std = ops.member_std(parents)
    if offsets is not None:
        noise = ops.windows(noise, offsets, (offsets.shape[1], *pop.shape[2:]))
    explorers = ops.mutate(parents, parent_std, picks_explore[:, 0], picks_explore[:, 1], noise[:, :n_explore],
                           alpha * boost, blur, smooth_target, fast)
    pool = torch.cat([parents, explorers], dim=1)
    pool_std = torch.cat([parent_std, ops.member_std(explorers)], dim=1)
    refiners = ops.mutate(pool, pool_std, picks_refine[:, 0], picks_refine[:, 1], noise[:, n_explore:], alpha, blur,
                          smooth_target, fast)
    return parents, parent_ce, torch.cat([explorers, refiners], dim=1)


def generation(net, layer, pop, ce, labels, noise, offsets, picks_explore, picks_refine, phases=False, **hyper):
    """A whole generation as one pure function (what the fast path compiles): breed, score the
    children with the rest of the network, and form the next population."""
    parents, parent_ce, children = breed(pop, ce, noise, offsets, picks_explore, picks_refine, **hyper)
    b, m = children.shape[:2]
    logits = net.forward_from(layer, children.reshape(b * m, *children.shape[2:]), phases).float()
    children_ce = F.cross_entropy(logits, labels.repeat_interleave(m), reduction="none").reshape(b, m)
    return torch.cat([parents, children], dim=1), torch.cat([parent_ce, children_ce], dim=1)


_COMPILED: dict = {}


def _compiled_generation(net: Net, layer: int):
    """`generation` at one search point of `net` under torch.compile, built once per process.

    The network and the search point are closed over (the graph specializes on them; guards stay
    cheap) and shapes are static: dynamic-shape kernels measured 25% slower, so each batch size
    compiles its own graph (the recompile limit is raised to cover them)."""
    key = (id(net), layer)
    if key not in _COMPILED:
        import torch._dynamo
        for name in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, max(64, getattr(torch._dynamo.config, name)))

        def at_layer(pop, ce, labels, noise, offsets, picks_explore, picks_refine, phases=False, **hyper):
            return generation(net, layer, pop, ce, labels, noise, offsets, picks_explore, picks_refine, phases, **hyper)

        _COMPILED[key] = torch.compile(at_layer, dynamic=False)
    return _COMPILED[key]


@dataclass
class ChunkResult:
    reps: list[torch.Tensor]  # best representation per search point, (B, *S) each
    ce: torch.Tensor  # final best CE per image (B,)
    evaluations: torch.Tensor  # candidate evaluations spent per image (B,)
    curves: dict = field(default_factory=dict)  # per layer: best/mean CE sums per generation
    layer_seconds: list = field(default_factory=list)
    layer_evaluations: list = field(default_factory=list)


def initial_population(net: Net, x: torch.Tensor, n_pop: int, noise_scale: float, rng: ops.PerImageRNG):
    """n_pop noisy variants of each input image (noise per element, scaled by each image's channel
    std), forwarded to block 0. Returns (B, n_pop, *S0)."""
    b = x.shape[0]
    std = x.flatten(2).std(dim=2, unbiased=False)  # (B, C)
    noise = rng.randn((n_pop, *x.shape[1:]))
    noisy = x[:, None] + noise * (noise_scale * std)[:, None, :, None, None]
    with torch.no_grad():
        h = net.stages[0](net.stem(noisy.reshape(b * n_pop, *x.shape[1:])))
    return h.reshape(b, n_pop, *h.shape[1:])


@torch.no_grad()
def search_images(net: Net, x: torch.Tensor, y: torch.Tensor, image_ids, cfg_search, seed: int,
                  progress=None, max_rows: int = 4096, pad_to: int = 0) -> ChunkResult:
    """Search one chunk of images through all four search points; returns the best per point.

    `pad_to`: with compiled search points, a short chunk (the last one) is padded to this many
    rows (copies of its first image on throwaway random streams) so that it reuses the graphs
    compiled for full chunks instead of compiling its own; padding rows are dropped from the result."""
    s = cfg_search
    device = x.device
    real = x.shape[0]
    pad = max(0, pad_to - real) if s.compile else 0
    if pad:
        x, y = torch.cat([x, x[:1].expand(pad, *x.shape[1:])]), torch.cat([y, y[:1].expand(pad)])
    b = x.shape[0]
    rng = ops.PerImageRNG(seed, image_ids, device, pad=pad)
    bank = ops.NoiseBank.shared(seed, device) if s.fast else None
    problem = SearchProblem(net, max_rows)
    evals = torch.zeros(b, dtype=torch.int64, device=device)
    result = ChunkResult([], None, evals)
    normalized = s.target_space == "normalized"
    pop = initial_population(net, x, s.pop_size, s.init_noise, rng)
    fixed = None  # the best representation at the previous search point, (B, *S)
    for layer in range(4):
        t0, e0 = time.time(), evals[:real].sum().item()
        sched = LayerSchedule.from_config(s, layer)
        if layer > 0:  # layer l starts from the forward of the best individual at l-1
            nxt = net.stages[layer](fixed) if layer < 3 else net.head(fixed)
            pop = nxt[:, None]
        elif normalized:
            pop = sample_normalize(pop.flatten(0, 1)).reshape(pop.shape)
        phases = use_pool_phases(net, layer, s, sched, bank)
        if phases:
            pop = to_phases(pop)
        ce = problem.cross_entropy(layer, pop, y, phases)
        evals += pop.shape[1]
        evo = LayerEvolution(pop, ce, sched, s.top_k, s.n_explore, s.n_refine, s.smooth, rng, s.fast, bank, phases)
        best_curve, mean_curve = [evo.ce[:real].min(1).values.sum().item()], [evo.ce[:real].mean(1).sum().item()]
        target = s.target_ce[layer]
        budget = sched.generations + (s.patience[layer] if target > 0 else 0)
        compiled = layer in s.compile
        for gen in range(budget):
            best_ce = evo.ce.min(1).values
            active = (best_ce > target) if target > 0 else torch.ones(b, dtype=torch.bool, device=device)
            if not bool(active[:real].any()):
                break
            if bool(active.all()):
                n_children = evo.step(problem, layer, y, compiled)
            else:
                rows = active.nonzero().squeeze(1)
                padded = _pad_to_bucket(rows, b) if compiled else rows
                sub = LayerEvolution(evo.pop[padded], evo.ce[padded], sched, s.top_k, s.n_explore, s.n_refine,
                                     s.smooth, rng.subset(rows, pad=len(padded) - len(rows)), s.fast, bank, phases)
                n_children = sub.step(problem, layer, y[padded], compiled)
                n = len(rows)
                evo.pop, evo.ce = _scatter_population(evo.pop, evo.ce, rows, sub.pop[:n], sub.ce[:n])
            evals += active.long() * n_children
            best_curve.append(evo.ce[:real].min(1).values.sum().item())
            mean_curve.append(evo.ce[:real].mean(1).sum().item())
            if progress is not None:
                progress(layer, gen, int(active[:real].sum()) * n_children)
        fixed, best_ce = evo.best()
        if phases:
            fixed = from_phases(fixed)
        result.reps.append(fixed[:real])
        result.curves[layer] = {"best_sum": best_curve, "mean_sum": mean_curve, "count": real}
        result.layer_seconds.append(time.time() - t0)
        result.layer_evaluations.append(evals[:real].sum().item() - e0)  # real images' evaluations only
    result.ce, result.evaluations = best_ce[:real], evals[:real]
    return result


def use_pool_phases(net: Net, layer: int, cfg_search, sched: LayerSchedule, bank) -> bool:
    """Whether search point `layer` keeps its population in pooling-phase pixel order: exact (the
    same search up to float summation order) whenever the mutation does no spatial work of its own,
    i.e. its noise comes pre-smoothed from the bank at map-aligned windows, and the next stage opens
    with an identity conv and a pool. Speed only (`search.pool_phases`)."""
    s = cfg_search
    return (s.pool_phases and bank is not None and s.smooth == "noise" and sched.blur > 0
            and layer < 2 and net.phases_allowed(layer))


def _pad_to_bucket(rows: torch.Tensor, chunk: int) -> torch.Tensor:
    """Active rows padded (repeating the first) up to a multiple of a quarter chunk: a compiled
    generation then sees at most four batch sizes instead of one per count of active images."""
    quarter = max(1, -(-chunk // 4))
    size = min(chunk, -(-len(rows) // quarter) * quarter)
    return torch.cat([rows, rows[:1].expand(size - len(rows))])


def _scatter_population(pop, ce, rows, sub_pop, sub_ce):
    """Write an active subset's new population back, in place (the population is the search's own
    tensor); inactive images keep theirs, padded by repeating their best when the population grows
    (a layer's first generation) so every image has the same population size."""
    if sub_pop.shape[1] != pop.shape[1]:
        grow = sub_pop.shape[1] - pop.shape[1]
        best = ce.argmin(1)
        r = torch.arange(len(best), device=ce.device)
        pop = torch.cat([pop, pop[r, best][:, None].expand(-1, grow, *pop.shape[2:])], dim=1)
        ce = torch.cat([ce, ce[r, best][:, None].expand(-1, grow)], dim=1)
    pop[rows], ce[rows] = sub_pop, sub_ce
    return pop, ce


def bytes_per_image(net: Net, cfg_search) -> int:
    """Rough peak working memory of one image's generation (population, children, noise, and the
    downstream activations of the children), the basis of chunk sizing."""
    s = cfg_search
    pop = s.top_k + s.n_explore + s.n_refine
    worst = 0
    for layer, shape in enumerate(net.shapes):
        size = math.prod(shape)
        downstream = sum(math.prod(sh) for sh in net.shapes[layer + 1:]) * 4  # pool/BN/GELU temporaries
        worst = max(worst, (pop * 3 + (s.n_explore + s.n_refine) * 4) * size + (s.n_explore + s.n_refine) * downstream)
    first = math.prod(net.shapes[0]) * s.pop_size * 4
    return 4 * max(worst, first)


WORKING_SET_BYTES = 16 * 2 ** 20  # children per chunk sized to stay near the CPU's caches


def chunk_size(net: Net, cfg_search) -> int:
    """Images searched at once: as many as the memory budget allows, and on the fast path no more
    than keep one generation's children within ~16 MiB (measured: on 2 cores, chunks of ~16 MNIST
    images run 3x more evaluations/s than chunks of 256; see docs/performance.md)."""
    if cfg_search.chunk_images > 0:
        return cfg_search.chunk_images
    by_memory = max(1, min(1024, int(cfg_search.memory_gb * 2 ** 30 // bytes_per_image(net, cfg_search))))
    if not cfg_search.fast:
        return by_memory
    children = (cfg_search.n_explore + cfg_search.n_refine) * max(math.prod(s) for s in net.shapes) * 4
    return max(1, min(by_memory, WORKING_SET_BYTES // children))


def _pad_curves(curves: dict, budgets: list[int]) -> dict:
    """Chunks that stopped early (adaptive) repeat their last value, so chunks can be summed."""
    out = {}
    for layer, c in curves.items():
        n = budgets[layer] + 1
        out[str(layer)] = {k: (v + [v[-1]] * (n - len(v)) if isinstance(v, list) else v) for k, v in c.items()}
    return out


def run_search(prep, cfg, cache_path, limit: int = 0, progress: bool = True, log=None):
    """Search every image of the pool (train + validation), or the first `limit`, into a target
    cache at `cache_path`; resumes a matching partial cache; returns (cache, summary)."""
    from tqdm import tqdm
    from .cache import TargetCache, accepted_fingerprints
    s, dev = cfg.search, prep.device
    pool = prep.split.pool
    if limit:
        pool = pool[:limit]
    fps = accepted_fingerprints(cfg, prep.dataset.fingerprint(), f"-limit{limit}" if limit else "")
    fp = fps[0]
    cache_path = Path(cache_path)
    if (cache_path / "manifest.json").exists():
        cache = TargetCache.open(cache_path, fps)
        net = build_net(cfg.model, prep.dataset.shape, prep.dataset.num_classes, groups_per_block=1,
                        normalize_outputs=s.target_space == "normalized", init="dirac")
        net.load_state_dict(torch.load(cache_path / "network.pt", weights_only=True))
        net = net.to(dev)
    else:
        net = build_search_network(cfg, prep, dev)
        cache = TargetCache.create(
            cache_path, config=cfg.to_dict(), fingerprint=fp, dataset=prep.dataset.name, indices=pool.numpy(),
            labels=prep.dataset.train_y[pool].numpy(), shapes=net.shapes, dtype=s.dtype,
            chunk_images=chunk_size(net, s), network_state={k: v.cpu() for k, v in net.state_dict().items()})
    configure_search_mode(net, s)
    chunk = cache.manifest["chunk_images"]
    todo = [c for c in range(cache.manifest["num_chunks"]) if c not in cache.done_chunks()]
    budgets = [g + (p if t > 0 else 0) for g, t, p in zip(s.generations, s.target_ce, s.patience)]
    evals_per_image = s.pop_size + sum(budgets) * (s.n_explore + s.n_refine) + 3
    total_evals = evals_per_image * sum(cache.chunk_rows(c)[1] - cache.chunk_rows(c)[0] for c in todo)
    bar = tqdm(total=total_evals, desc="search", unit="eval", unit_scale=True, disable=not progress, dynamic_ncols=True)
    t_start = time.time()
    for c in todo:
        a, b = cache.chunk_rows(c)
        rows = pool[a:b]
        x, y = (t.to(dev) for t in _images_for(prep, rows))

        def tick(layer, gen, n, _bar=bar):
            _bar.set_description(f"search chunk {c + 1}/{cache.manifest['num_chunks']} layer {layer} gen {gen + 1}")
            _bar.update(n)

        res = search_images(net, x, y, rows.tolist(), s, cfg.seed, progress=tick, pad_to=chunk)
        record = {"curves": _pad_curves(res.curves, budgets), "layer_seconds": res.layer_seconds,
                  "layer_evaluations": res.layer_evaluations,
                  "ce_mean": res.ce.mean().item(), "accuracy": (res.reps[3].argmax(1) == y).float().mean().item()}
        cache.write_chunk(c, res.reps, res.ce, res.evaluations, record)
        if log:
            log({"tag": "search-chunk", "chunk": c, "images": b - a, **{k: v for k, v in record.items() if k != "curves"}})
    bar.close()
    summary = summarize_cache(cache, net, prep)
    summary["search_wall_time_s_this_call"] = time.time() - t_start
    cache.finalize({"summary": summary})
    return cache, summary


def _images_for(prep, dataset_rows):
    from .data import normalize
    d = prep.dataset
    return normalize(d.train_x[dataset_rows], prep.mean, prep.std), d.train_y[dataset_rows]


def summarize_cache(cache, net, prep) -> dict:
    """Headline figures of a complete cache: CE per layer (start -> end), evaluations, FLOPs, speed."""
    import numpy as np
    from .models import forward_flops
    recs = [json.loads(p.read_text()) for p in sorted((cache.path / "chunks").glob("*.json"))]
    arr = cache.arrays()
    curves = cache.curves()
    layer_evals = [sum(r["layer_evaluations"][l] for r in recs) for l in range(4)]
    layer_secs = [sum(r["layer_seconds"][l] for r in recs) for l in range(4)]
    flops = [_flops_from(net, l) for l in range(4)]
    labels = arr["labels"]
    return {
        "dataset": cache.manifest["dataset"], "images": int(len(labels)),
        "searched_ce_mean": float(np.mean(arr["ce"])),
        "searched_ce_p90": float(np.quantile(arr["ce"], 0.9)), "searched_ce_max": float(np.max(arr["ce"])),
        "searched_accuracy": float(np.mean(np.argmax(arr["logits"], 1) == labels)),
        "searched_ce_p50": float(np.quantile(arr["ce"], 0.5)), "searched_ce_p99": float(np.quantile(arr["ce"], 0.99)),
        "searched_ce_fraction_at_most_0.01": float(np.mean(arr["ce"] <= 0.01)),
        "evaluations_per_image_mean": float(np.mean(arr["evals"])),
        "evaluations_per_image_p10_p50_p90": [float(q) for q in np.quantile(arr["evals"], [0.1, 0.5, 0.9])],
        "evaluations_total": int(sum(layer_evals)),
        "layers": [{"layer": l, "ce_start": curves[l]["best"][0], "ce_end": curves[l]["best"][-1],
                    "evaluations": layer_evals[l], "seconds": layer_secs[l],
                    "evaluations_per_s": layer_evals[l] / max(1e-9, layer_secs[l]),
                    "flops_per_evaluation": flops[l]} for l in range(4)],
        "flops_total": int(sum(e * f for e, f in zip(layer_evals, flops))),
    }


def _flops_from(net: Net, layer: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    dev = next(net.parameters()).device
    h = torch.zeros(1, *net.shapes[layer], device=dev)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net.forward_from(layer, h)
    return int(counter.get_total_flops())
