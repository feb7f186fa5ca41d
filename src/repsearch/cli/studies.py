"""The experiment subcommands (paper Figures 2-4, neuroevolution): each resolves its config,
checks it against the model, and writes a run directory through `cli`'s helpers."""
from __future__ import annotations

import json

from repsearch.errors import UserError
from repsearch.store import distributed

from .setup import finish, set_up


def _experiment(args, command: str, fn, multi_process: bool = False, check=None, batches=(), **kw) -> int:
    """`multi_process`: the experiment is built from stages that take torchrun (search, learning,
    SGD), so under torchrun every rank joins the process group and rank 0 alone writes."""
    def configure(cfg):
        if cfg.learn.target_searches != 1:
            raise UserError(f"learn.target_searches = {cfg.learn.target_searches}: only 'repsearch run' and 'repsearch "
                            f"train' average several searches; '{command}' learns from one (leave it at 1)")

    c = set_up(args, command, multi_process=multi_process, batches=batches, check=check, configure=configure)
    result = fn(c.prep, c.cfg, out_dir=c.run.path, **kw)
    if distributed.is_main():
        print(json.dumps(result.get("blocks", result), indent=2, default=str)[:4000])
    finish(c, command, {"dataset": c.prep.dataset.name, **{k: v for k, v in result.items() if k != "blocks"}}, study=result)
    return 0


def cmd_scaling(args) -> int:
    from repsearch.studies.scaling import fitness_scaling
    if args.images < 1:
        raise UserError("--images must be >= 1")
    pops = tuple(int(v) for v in args.pop_sizes.split(","))
    gens = tuple(int(v) for v in args.generations.split(","))
    if min(pops) < 2 or min(gens) < 0:
        raise UserError("--pop-sizes must be >= 2 and --generations >= 0")
    return _experiment(args, "scaling", fitness_scaling, n_images=args.images, pop_sizes=pops, generations=gens)


def cmd_sweep(args) -> int:
    from repsearch.studies.sweep import sweep
    pops = tuple(int(v) for v in args.pop_sizes.split(","))
    scales = tuple(float(v) for v in args.generation_scales.split(","))
    return _experiment(args, "sweep", sweep, batches=("learn",), pop_sizes=pops, generation_scales=scales)


def cmd_neuroevolution(args) -> int:
    if args.part == "baseline":
        from repsearch.studies.param_search import ESParams, parameter_baseline
        es = ESParams(population=args.es_population, sigma=args.es_sigma, lr=args.es_lr, batch=args.es_batch)
        if es.population < 2 or es.population % 2 or es.sigma <= 0 or es.lr <= 0 or es.batch < 1 or args.budget_scale <= 0:
            raise UserError("--es-population must be even and >= 2; --es-sigma, --es-lr, --budget-scale > 0; "
                            "--es-batch >= 1")
        return _experiment(args, "neuroevolution", parameter_baseline, batches=("learn", "baseline"), es=es, budget_scale=args.budget_scale)
    from repsearch.studies.neuroevolution import alignment_experiment
    sigmas = tuple(float(v) for v in args.sigmas.split(","))
    pops = tuple(int(v) for v in args.populations.split(","))
    if min(sigmas) <= 0 or min(pops) < 1 or args.images < 1:
        raise UserError("--sigmas must be > 0, --populations >= 1 and --images >= 1")
    return _experiment(args, "neuroevolution", alignment_experiment, sigmas=sigmas, populations=pops, images=args.images)


def cmd_diversity(args) -> int:
    from repsearch.studies.diversity import diversity
    if args.images < 1 or args.runs < 1:
        raise UserError("--images and --runs must be >= 1")
    return _experiment(args, "diversity", diversity, n_images=args.images, runs=args.runs, keep=args.keep)



def cmd_rounds(args) -> int:
    from repsearch.studies.rounds import check_round0, later_config, rounds
    if args.rounds < 1:
        raise UserError("--rounds must be >= 1")
    learners = tuple(v.strip() for v in args.learners.split(",") if v.strip())

    def check(cfg, prep):
        later_config(cfg, args.rounds, args.carry, learners, args.later_set)
        if args.round0:
            check_round0(prep, cfg, *args.round0)
    return _experiment(args, "rounds", rounds, multi_process=True, check=check, batches=("learn", "baseline"), n_rounds=args.rounds,
                       carry=args.carry, learners=learners, later=args.later_set, round0=args.round0)


def cmd_ensemble(args) -> int:
    from repsearch.studies.ensemble import ensemble
    if args.members < 1 or args.diversity_images < 2:
        raise UserError("--members must be >= 1 and --diversity-images >= 2")
    return _experiment(args, "ensemble", ensemble, batches=("learn", "baseline"), members=args.members, diversity_images=args.diversity_images)


def ensemble_args(p):
    p.add_argument("--members", type=int, default=4, help="K: independent searches (and SGD seeds), seeds seed + 1000k")
    p.add_argument("--diversity-images", type=int, default=1000, help="test images for CKA and N_eff")


def rounds_args(p):
    from repsearch.studies.rounds import CARRY
    p.add_argument("--rounds", type=int, default=3, help="rounds of search + learning (round 0 is the paper's)")
    p.add_argument("--carry", choices=CARRY, default="warm",
                   help="which learner of a round searches in the next: warm-started (default) or from scratch")
    p.add_argument("--learners", default="scratch,warm",
                   help="learners that rounds >= 1 train: scratch,warm (default) or only the carried one")
    p.add_argument("--later-set", action="append", default=[], metavar="KEY=VALUE",
                   help="a search.*, learn.* or engine.* override for rounds >= 1 only (repeatable), e.g. fewer "
                        "generations for a search that starts near a solution")
    p.add_argument("--round0", nargs=2, metavar=("CACHE", "TRAIN_RUN"),
                   help="adopt a finished 'search' cache and the 'train' run directory that learned from it as "
                        "round 0 (checked to match this command's settings; the cache is linked, the run copied)")


def scaling_args(p):
    p.add_argument("--images", type=int, default=200, help="random training images (the paper's Figure 2: 1000)")
    p.add_argument("--pop-sizes", default="12,24,60,120", help="comma-separated population sizes (the paper's: up to 240)")
    p.add_argument("--generations", default="0,10,30", help="comma-separated generation counts (the paper's: up to 300)")


def sweep_args(p):
    p.add_argument("--pop-sizes", default="6,12,24", help="population sizes (generations at the config's; the "
                   "figure in docs/evidence.md adds 48)")
    p.add_argument("--generation-scales", default="0.25,0.5,1",
                   help="multipliers of the config's generations per point (population at the config's)")


def neuroevolution_args(p):
    p.add_argument("--part", choices=("alignment", "baseline"), default="alignment",
                   help="alignment: cosine of the mean accepted step with -grad; baseline: ES on the weights at "
                        "the search's FLOPs, against search + learning and SGD")
    p.add_argument("--sigmas", default="1e-3,1e-2,1e-1", help="alignment: mutation scales (docs/neuroevolution.md's "
                   "figure: 1e-4,1e-3,1e-2,1e-1)")
    p.add_argument("--populations", default="64,256", help="alignment: proposals per measurement (the figure: "
                   "256,1024,4096, about 9 minutes at --preset quickstart)")
    p.add_argument("--images", type=int, default=128, help="alignment: training images in the loss (the figure: 256)")
    p.add_argument("--es-population", type=int, default=64, help="baseline: ES candidates per generation (even)")
    p.add_argument("--es-sigma", type=float, default=0.01, help="baseline: ES perturbation scale")
    p.add_argument("--es-lr", type=float, default=0.01, help="baseline: Adam step size")
    p.add_argument("--es-batch", type=int, default=100, help="baseline: images in each generation's fitness")
    p.add_argument("--budget-scale", type=float, default=0.5, help="baseline: ES forward passes as a multiple of the "
                   "search's evaluations (the equal-compute comparison: 1, about 4 minutes at --preset quickstart)")


def diversity_args(p):
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--runs", type=int, default=8, help="independent searches (seeds seed, seed+1000, ...)")
    p.add_argument("--keep", choices=("final", "block"), default="final",
                   help="which solutions count: a run's (at every block) when its searched logits give p(correct) > 0.5 "
                        "(the paper's), or a block's when it alone, through the rest of the network, does")
