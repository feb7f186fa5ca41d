"""Every hyperparameter in one visible place: the config's sections as dataclasses with their defaults.

How a run's config is assembled from them (presets, overlays, `--set`) is `resolve`'s business.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class DataConfig:
    name: str = "digits"
    root: str = ""  # "" -> $REPSEARCH_DATA, else ./data
    download: bool = False  # torchvision download (online users only)
    val_fraction: float = 0.08  # paper: 4,000 of 50,000 training images held out
    subset: int = 0  # 0 = every training image; N = a seeded subset of N (holdout included)
    digits_size: int = 16  # sklearn's 8x8 digits are upsampled to this side
    # Augmentation (`augment`, `run.augment_variants`) flips images left-right: label-preserving for
    # clothes and CIFAR, not for digits (a flipped 2 or 7 is no digit; the paper does not augment
    # MNIST). MNIST and digits refuse it unless this says otherwise.
    allow_digit_flips: bool = False


@dataclass
class ModelConfig:
    # "airbench" (the paper's network), "mlp", "resnet", or "MODULE:FACTORY" for your own staged
    # model (docs/method.md, "The model contract"). Built-in families take `widths` (one entry per
    # stage); the rest of this section is airbench's (mlp and resnet ignore it).
    name: str = "airbench"
    widths: list[int] = field(default_factory=lambda: [64, 64, 64])  # paper: 256/256/256
    whiten_patches: int = 5000  # training images whose 2x2 patches set the whitening filters
    whiten_eps: float = 5e-4
    bn_eps: float = 1e-12  # airbench
    bn_momentum: float = 0.6  # airbench's convention (PyTorch momentum = 1 - 0.6)
    bn_running_stats: bool = True  # False = the paper's "no running statistics" (batch stats at eval)
    head_scale: float = 1.0  # paper: 1.0 (airbench: 1/9)


@dataclass
class TrainConfig:
    """SGD with Nesterov in airbench's conventions: the loss is summed over the batch and
    `lr` is per 1,024 examples, so PyTorch's lr = lr / (1024 * (1 + 1/(1 - momentum)))."""
    epochs: int = 20
    batch_size: int = 500
    lr: float = 4.0
    momentum: float = 0.85
    weight_decay: float = 0.0153  # airbench's, per 1,024 examples, decoupled from lr
    bias_scaler: float = 64.0  # BatchNorm biases get lr * bias_scaler (airbench)
    warmup: float = 0.2  # fraction of steps with linear warm-up from 0.2x; then linear decay
    final_lr: float = 0.07  # lr at the end, as a fraction of the peak
    label_smoothing: float = 0.0  # paper disables it for fairness
    augment: bool = False  # random flip + random crop from 2-pixel padding
    fixed_batches: bool = True  # paper: batch composition fixed across epochs
    init: str = "dirac"  # "dirac" (airbench's partial Dirac) or "default" (PyTorch's)
    whiten_bias_epochs: int = 3
    eval_every: int = 1
    # Early stopping: stop after `patience` epochs without a better validation accuracy (0 = off);
    # the best epoch's weights are kept either way. The same rule for the learner and the baseline.
    patience: int = 0
    # ...only with at least this many validation images: fewer cannot tell epochs apart (at 80, one
    # image is 1.25 points; at 1,000 Fashion-MNIST images patience 4 cost the learner 2.7 points).
    patience_min_val: int = 1000
    # Which epoch's weights are kept: "best" by validation accuracy, "last", or "auto": the best
    # with >= select_min_val validation images, else the last (the lr has decayed to final_lr).
    select: str = "auto"
    select_min_val: int = 1000
    # Budget in optimizer steps: `epochs`, raised so that a small training set gets at least
    # `min_steps` steps and lowered so that a large one gets at most about `max_steps` (0 = off).
    min_steps: int = 0
    max_steps: int = 0
    # Speed only: "channels_last" or "contiguous" weights and activations ("auto":
    # channels_last on CUDA only), and the training step's forward+backward under torch.compile
    # (the first steps pay the compilation; benchmarks/RESULTS.md has what each is worth).
    memory_format: str = "auto"
    compile: bool = False
    # Forward and backward passes in full fp32, or under bfloat16 autocast ("bf16": faster on a
    # GPU). Not speed only: on an H200, cpu-mnist's SGD under bf16 reached 11-99% over 4 seeds
    # against 99.3-99.4% in fp32 (benchmarks/RESULTS.md, "First GPU"), so bf16 is opt-in.
    precision: str = "fp32"


@dataclass
class BaselineConfig(TrainConfig):
    depths: list[int] = field(default_factory=lambda: [1])  # groups per block to try; paper 1,2,3


@dataclass
class SearchConfig:
    pop_size: int = 240
    top_k: int = 20
    n_explore: int = 100
    n_refine: int = 120
    # Per search point: block 0, block 1, block 2, logits (paper A.2, CIFAR).
    generations: list[int] = field(default_factory=lambda: [300, 100, 100, 10])
    alpha: list[float] = field(default_factory=lambda: [0.3, 0.2, 0.1, 0.1])
    boost: list[float] = field(default_factory=lambda: [5.0, 3.0, 3.0, 1.0])
    blur: list[int] = field(default_factory=lambda: [5, 1, 1, 0])
    init_noise: float = 0.1  # initial population: input + noise of this x each channel's std
    smooth: str = "noise"  # "noise": blur the noise only; "child": blur the whole mutated tensor
    blur_border: str = "valid"  # "valid": border pixels average valid pixels; "zero": zero padding counts (paper, literally)
    target_space: str = "normalized"  # "normalized": every search point is per-sample normalized
    bn: str = "calibrated"  # "calibrated": BN stats from clean images, frozen; "batch": paper's
    calib_images: int = 2000
    # Adaptive compute, per search point: an image stops searching a point once its best CE there
    # is below target_ce (0 = off), and images still above it get up to `extra_generations` more.
    target_ce: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    extra_generations: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    dtype: str = "float16"  # cache storage dtype of stage outputs (logits are float32)
    # Noise source: "bank" = windows of one pre-drawn bank of normals at offsets from each image's
    # stream (the fast path; docs/performance.md), "fresh" = new normals for every child. They
    # are different random draws, so this is part of the search (and of the cache fingerprint).
    noise: str = "bank"
    # Which independent search of the same images, with the same network (0: the seed's own
    # streams). `learn.target_searches = K` searches streams s..s+K-1 and learns from their mean.
    stream: int = 0
    # Each image's random stream: "generator" (one torch.Generator per image, looped over in Python)
    # or "counter" (a counter-based hash of (seed, image, position): a fixed number of tensor ops per
    # draw whatever the number of images, the GPU path; other numbers, so another search).
    rng: str = "generator"
    # "bf16": candidates are scored under bfloat16 autocast (a GPU's fast path; per-sample statistics
    # and the cross-entropy in fp32). Rounding can flip which candidate wins, so it is part of the search.
    precision: str = "fp32"


@dataclass
class EngineConfig:
    """How fast the search runs, never what it finds (beyond float rounding): not part of the
    cache fingerprint, so a cache can be resumed under other engine settings."""
    chunk_images: int = 0  # images searched at once; 0 = sized from memory_gb (and caches with `fast`)
    memory_gb: float = 3.0
    fast: bool = True  # skip exactly-identity convs, smoothing as matrices, cache-sized chunks
    # Search points whose generations run as one torch.compile'd graph (CPU: needs a C++ compiler;
    # the first chunk pays ~10-30 s of compilation per point). Measured faster at airbench's three
    # blocks on CPU (not at the logits), so the CPU presets compile [0, 1, 2]; docs/performance.md.
    compile: list[int] = field(default_factory=list)
    # Keep a point's maps in pooling-phase pixel order where the model qualifies (airbench blocks
    # 0-1): scoring pools by a max over contiguous planes (exact; speed only).
    pool_phases: bool = True
    # Map points whose generations run fused: one Triton program per child builds it from its
    # parents and noise, writes it once and scores it through the rest of the network (a CUDA
    # device; on a CPU only under TRITON_INTERPRET=1). A point the kernel cannot score (not the
    # paper's network downstream, fresh noise, bf16) runs as it would without it (search/fused.py).
    fused: list[int] = field(default_factory=list)
    # The fused kernel's tiling, "CHANNELSxWARPS" (channels per program tile, warps per program);
    # "" = the kernel's default. Registers, hence occupancy, depend on it and on the Triton version:
    # benchmarks/fused_tiles.py times the choices on the GPU at hand.
    fused_tiling: str = ""


@dataclass
class LearnConfig(TrainConfig):
    groups_per_block: int = 2  # paper: 3 for CIFAR (6 convs per block), 2 for MNIST
    supervise: list[int] = field(default_factory=list)  # stages regressed to targets; [] = every stage
    kl_weight: float = 0.03  # paper's lambda
    head_lr_scale: float = 33.3  # head's lr multiplier: 1/lambda makes the head step lambda-free
    loss: str = "mse"  # "mse": per-element MSE; "class_weighted": elements weighted by class-explained variance
    # "mean": per-element mean, averaged over supervised blocks; "sum": the paper's equation, squared
    # L2 norms averaged over all blocks (x57,600 / 12,544 / 2,304 at width 256: docs/method.md)
    reduction: str = "mean"
    init: str = "default"
    probe_every: int = 0  # linear probes every N epochs (0: only at the end; they cost a few seconds)
    probe_images: int = 5000  # training images the probes are fitted on
    entropy_images: int = 1000  # validation images for the collision entropies (Figures 6-7; quadratic cost)
    # Figures 6-7's within-class collision entropy: "paper" counts each example's pair with itself
    # (the paper's H_coll on a class's Gram block), "offdiagonal" leaves those pairs out.
    entropy_estimator: str = "paper"
    # > 0: after learning, refit the head alone on the final features to the searched logits with
    # this L2 penalty (head_refit.py; not in the paper). 0: the head as learned (paper).
    head_refit_l2: float = 0.0
    # The learner's targets: the mean over this many independent searches of the same images with
    # the same network (`search.stream` s..s+K-1, s the config's own): block targets averaged, the
    # searched logits' softmax averaged. Under MSE and the head's KL this is the loss averaged over
    # the K searches (up to a constant), each search's own noise averaged out (not in the paper).
    target_searches: int = 1


@dataclass
class RunConfig:
    seeds: int = 1
    augment_variants: list[bool] = field(default_factory=lambda: [False])
    supervision_variants: list[str] = field(default_factory=lambda: ["all"])  # "all", "skip0"


@dataclass
class LogConfig:
    """Loggers beside metrics.jsonl (which every training stage writes), imported only when asked
    for: TensorBoard event files in STAGE/tensorboard, offline Weights & Biases runs in STAGE/wandb.
    Never part of what a run computes (a run resumes under other loggers)."""
    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "repsearch"


@dataclass
class Config:
    seed: int = 0
    device: str = "cpu"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    learn: LearnConfig = field(default_factory=LearnConfig)
    run: RunConfig = field(default_factory=RunConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
