"""The hyper-parameters of a training run: defaults, checks, and the stored form.

Imports neither TensorFlow nor Keras, so `geoloc train` can refuse bad options in a fraction of a
second; the backbone table is only consulted when a config is built or checked.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import ConfigError

DEFAULT_BACKBONE = "mobilenetv3small"  # trains from scratch on two CPU cores in reasonable time
# embedding size after the projection: 512 beat 256 on val Recall@1 at equal minutes on two CPU cores
# (benchmarks/README.md); a million halfvec(512) rows take 1 GB and a 2.2 GB HNSW build
DEFAULT_DIM = 512
DEFAULT_EPOCHS = 20  # without a time budget; with one, as many epochs as fit (see geoloc.model.schedule)
SCRATCH_BN_MOMENTUM = 0.9  # from scratch the running statistics must follow weights that change fast
PRETRAINED_BN_MOMENTUM = 0.99  # Keras' BatchNormalization default: pretrained statistics move slowly
# --augment scales data.Augment's mild default (1); at the most crops keep 10 % of the area and the
# contrast and saturation factors stay within 1 +- 0.5
MAX_AUGMENT = 2.5
LR_SCHEDULES = ("cosine", "constant")
BATCHES = ("random", "nearby", "similar")  # how a batch's places are chosen (geoloc.model.sampler)
SPLITS = ("train", "val", "test")
# multi-similarity loss (geoloc.model.loss): alpha and beta weigh the positive and negative pairs, base is
# the similarity both are measured from, margin the miner's; Wang et al.'s values (pytorch-metric-learning's
# defaults). GSV-Cities and MixVPR train with alpha 1 and base 0 (benchmarks/README.md compares them).
MS_ALPHA, MS_BETA, MS_BASE, MS_MARGIN = 2.0, 50.0, 0.5, 0.1


def check_batches(batches: str) -> None:
    """ConfigError unless BATCHES names a way of choosing a batch's places (BATCHES)."""
    if batches not in BATCHES:
        raise ConfigError(f"unknown batches '{batches}' (choose {', '.join(BATCHES[:-1])} or {BATCHES[-1]})")


def default_bn_momentum(weights: str) -> float:
    """BatchNorm momentum for a start from WEIGHTS: 0.9 from scratch ("none"), 0.99 from pretrained ones."""
    return SCRATCH_BN_MOMENTUM if str(weights) == "none" else PRETRAINED_BN_MOMENTUM


@dataclass
class TrainConfig:
    """Every hyper-parameter of a run; stored as the registry row's `hyperparams`.

    Defaults are the CPU setting measured best on two cores.
    """

    backbone: str = DEFAULT_BACKBONE
    input_size: int | None = None    # None: the backbone's default (224; 192 for the CPU default)
    embed_size: int | None = None    # inference side tried after training, kept if it validates better;
                                     # None: backbones.default_embed_size (320 for the CPU default's 192)
    dim: int = DEFAULT_DIM
    epochs: int | None = None        # None: DEFAULT_EPOCHS, or with a time budget as many as fit
    steps_per_epoch: int = 150
    places: int = 8
    per_place: int = 4
    batches: str = "nearby"          # how a batch's places are chosen (BATCHES, geoloc.model.sampler)
    lr: float = 2e-3
    lr_schedule: str = "cosine"      # "cosine" (linear warm-up, cosine decay to 1 %) or "constant"
    warmup_steps: int = 100
    weight_decay: float = 0.0        # > 0 switches Adam to AdamW
    ema: float = 0.998               # > 0: validate and keep an exponential moving average of the weights
    weights: str = "none"            # "none" | "imagenet" | path of a .keras / .weights.h5 file
    freeze: int = 0
    gem_p: float = 3.0
    trainable_p: bool = False
    bn_momentum: float | None = None  # None: default_bn_momentum(weights)
    augment: float = 1.0             # strength of crop + colour jitter: 0 none, 1 the mild default (data.Augment)
    seed: int = 0
    split: str = "train"
    val_split: str | None = "val"
    versions: list[str] | None = None  # image versions to train on; None = all (v1 and v2)
    include_queries: bool = True     # the newest image of each place too (what evaluation queries with)
    ms_alpha: float = MS_ALPHA
    ms_beta: float = MS_BETA
    ms_base: float = MS_BASE
    ms_margin: float = MS_MARGIN
    cells: str | None = None         # a cell partition: adds one classification head per level
    cells_partition_id: int | None = None  # the partition's id, recorded when the run starts
    ms_weight: float = 1.0           # loss = ms_weight * multi-similarity + cell_weight * cell cross-entropy
    cell_weight: float = 0.3
    whiten: bool = True              # learn a whitening on the training split, kept if it helps on val

    @property
    def batch(self) -> int:
        return self.places * self.per_place

    @property
    def max_steps(self) -> int | None:
        """The step count --epochs allows (None: no epoch count given)."""
        return None if self.epochs is None else self.epochs * self.steps_per_epoch

    @property
    def total_steps(self) -> int:
        """Steps of a run without a time budget."""
        return (self.epochs or DEFAULT_EPOCHS) * self.steps_per_epoch

    def __post_init__(self) -> None:
        from .backbones import BACKBONES, default_embed_size

        if self.backbone in BACKBONES:  # an unknown one fails in check()
            if self.input_size is None:
                self.input_size = BACKBONES[self.backbone].default_size
            if self.embed_size is None:
                self.embed_size = default_embed_size(self.backbone, self.input_size)
        if self.bn_momentum is None:
            self.bn_momentum = default_bn_momentum(self.weights)

    def check(self) -> None:
        from .backbones import MIN_INPUT_SIZE, backbone_spec

        backbone_spec(self.backbone)
        for name in ("input_size", "embed_size"):
            value = getattr(self, name)
            if value is not None and value < MIN_INPUT_SIZE:
                raise ConfigError(f"{name.replace('_', '-')} {value} is too small (at least {MIN_INPUT_SIZE} pixels)")
        for name in ("epochs", "steps_per_epoch", "places", "per_place", "ms_alpha", "ms_beta", "gem_p"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name.replace('_', '-')} must be positive (got {value})")
        for name in ("dim", "warmup_steps", "weight_decay", "freeze", "ms_weight", "cell_weight"):
            value = getattr(self, name)
            if value < 0:
                raise ConfigError(f"{name.replace('_', '-')} must not be negative (got {value})")
        if self.ms_weight == 0 and (self.cells is None or self.cell_weight == 0):
            raise ConfigError("ms-weight is 0 and no cell loss is on (--cells, --cell-weight): nothing to learn")
        check_batches(self.batches)
        if self.lr <= 0:
            raise ConfigError(f"learning rate must be positive (got {self.lr})")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown learning-rate schedule '{self.lr_schedule}' "
                              f"(choose {' or '.join(LR_SCHEDULES)})")
        if not 0.0 <= self.augment <= MAX_AUGMENT:
            raise ConfigError(f"augment must be in [0, {MAX_AUGMENT}] (got {self.augment})")
        if not -1.0 <= self.ms_base <= 1.0:
            raise ConfigError(f"ms-base is a cosine similarity: it must be in [-1, 1] (got {self.ms_base})")
        if not 0.0 <= self.ms_margin <= 2.0:
            raise ConfigError(f"ms-margin must be in [0, 2] (got {self.ms_margin})")
        for name in ("ema", "bn_momentum"):  # momenta of moving averages
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{name.replace('_', '-')} must be in [0, 1) (got {value})")
        if self.split not in SPLITS or self.val_split not in (None, *SPLITS):
            raise ConfigError(f"splits must be train, val or test (got '{self.split}' and '{self.val_split}')")
        if self.val_split is not None and self.val_split == self.split:
            raise ConfigError(f"validation split '{self.val_split}' must differ from the training split")

    @classmethod
    def from_hyperparams(cls, hp: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in hp.items() if k in names}
        if "whiten" in values:  # a finished run stores what it kept: the whitening (a dict) or False
            values["whiten"] = bool(values["whiten"])
        if isinstance(values.get("augment"), bool):  # runs recorded before the strength: on (1) or off (0)
            values["augment"] = float(values["augment"])
        values.setdefault("batches", "random")  # runs recorded before the option drew them at random
        values.setdefault("embed_size", values.get("input_size"))  # and embedded at the training side
        values.setdefault("ema", 0.0)  # and kept no moving average of the weights
        return cls(**values)
