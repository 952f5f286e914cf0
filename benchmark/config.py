"""Typed configuration: dataclass sections, named profiles, ``--set section.key=value`` overrides.

Every hyperparameter carries its source: "T1" is the paper's Table 1, "§x" a section of the paper,
"spec §x" a section of the method spec (docs/methods.md in the README), "choice" a decision of ours.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, Literal, Optional


Recipe = Literal["adamw", "sgd"]  # pretraining optimizer: T1's AdamW (MIM) or spec §3's SGD (Siamese)


class ConfigError(ValueError):
    """A configuration value or override that cannot be used; the message says what was expected."""


@dataclass
class DataConfig:
    dataset: str = "auto"  # auto | phantom | covid-radiography | covid-qu-ex | folder
    root: Optional[str] = None  # None -> the embedded phantom
    image_size: int = 224  # T1/§4.1: 224 x 224 input
    split_seed: int = 0  # choice: the paper's split seed is unknown; fixed and recorded
    test_fraction: float = 0.2  # §4.1: random 80/20 split per class
    missing_masks: Literal["error", "skip", "allow"] = "error"  # choice: refuse silent "no region"
    images_dir: str = "images"  # folder layout: <root>/<class>/<images_dir>/*
    masks_dir: str = "masks"  # folder layout: <root>/<class>/<masks_dir>/*
    cache_dir: Optional[str] = None  # None -> $RGMIM_CACHE or ~/.cache/rgmim-bench
    split_file: Optional[str] = None  # None -> next to the cache, keyed by fingerprint, seed, test fraction
    phantom_count: int = 2000  # choice: 1 % of the train pool still has >= 4 images per class
    phantom_seed: int = 0
    phantom_native_size: int = 256  # choice: generated once at this size, resized by the cache
    phantom_shortcut: bool = False  # class-correlated mark outside the lungs, off by default
    num_workers: int = 0  # choice: batches come from an in-memory uint8 cache, no decoding
    # §5: where RGMIM's lung region comes from (benchmark/data/masks.py); gt is the paper's expert masks
    mask_source: Literal["gt", "classical", "prior", "sam", "none"] = "gt"
    mask_dir: Optional[str] = None  # choice: the user's own masks, paired by file name; replaces gt's
    sam_checkpoint: Optional[str] = None  # §5: a Segment Anything checkpoint file the user supplies
    sam_model: str = "vit_b"  # choice: the smallest SAM (vit_b | vit_l | vit_h); must match the checkpoint


@dataclass
class ModelConfig:
    vit: str = "vit_base_patch16_224"  # §4.1: ViT-Base, L=12, D=768, 12 heads
    vit_depth: Optional[int] = None  # choice: None keeps the timm model's depth; smoke uses 2
    patch_size: int = 16  # §3.1 T = 16 (ViT-B/16); the grid region guidance selects patches on
    resnet: str = "resnet50"  # §4.1: ResNet-50 for SKD, Cross, BYOL, SimSiam, Transfer/Scratch-R50
    decoder_dim: int = 512  # §4.1: decoder D = 512
    decoder_depth: int = 8  # §4.1: decoder L = 8
    decoder_heads: int = 16  # §4.1: decoder heads = 16
    pos_embed: Literal["sincos", "learn"] = "sincos"  # spec §2: Table 1 is MAE's, hence fixed sin-cos
    vit_pool: Literal["ln_then_gap", "gap_then_ln"] = "ln_then_gap"  # Eq. 4: y = GAP(LN(z_L))
    projector_hidden: int = 4096  # spec §3: BYOL projector 2048 -> 4096 -> 256
    projector_out: int = 256  # spec §3
    simsiam_dim: int = 2048  # spec §4: SimSiam projector output
    simsiam_pred_hidden: int = 512  # spec §4: SimSiam predictor bottleneck


@dataclass
class PretrainConfig:
    epochs: int = 40  # T1
    batch_size: int = 256  # T1 (effective batch; see accum_steps)
    accum_steps: int = 1  # choice: raise when the batch does not fit; lr follows the effective batch
    blr: float = 1.5e-4  # T1: base lr, lr = blr * batch / 256 (MAE main_pretrain.py)
    weight_decay: float = 0.05  # T1
    betas: tuple[float, float] = (0.9, 0.95)  # T1 / MAE main_pretrain.py
    warmup_epochs: float = 5.0  # choice (spec §1): MAE's 40 would equal the whole budget
    mask_ratio: float = 0.75  # T1: sigma = 75 %
    norm_pix_loss: bool = False  # spec §1: Eq. 5 compares original pixels
    min_overlap: float = 0.0  # spec §2: a patch is valid if any lung pixel falls in it
    min_scale: float = 0.2  # spec §1: RandomResizedCrop(scale=(0.2, 1.0)) for MIM
    ssl_blr: float = 0.05  # spec §3: SGD lr = 0.05 * batch / 256 (SimSiam recipe) for the SSL baselines
    ssl_momentum: float = 0.9  # spec §3
    ssl_weight_decay: float = 1e-4  # spec §3
    ema_base: float = 0.99  # spec §3: cosine 0.99 -> 1 (short schedule)
    skd_variant: Literal["cosine", "kl"] = "cosine"  # spec §5
    skd_weight: float = 1.0  # spec §5: BAKE --lamda default
    skd_omega: float = 0.5  # spec §5: BAKE propagation weight
    skd_tau: float = 0.1  # spec §5: affinity temperature (choice)
    skd_kl_temperature: float = 4.0  # spec §5: KD temperature of the "kl" variant
    max_steps: int = 0  # choice: 0 = full epochs; >0 stops early (tests, benchmarks)


@dataclass
class FinetuneConfig:
    epochs: int = 30  # T1
    batch_size: int = 256  # T1
    blr: float = 1.5e-4  # T1 applied to fine-tuning (spec §0.2 choice, same for every method)
    weight_decay: float = 0.05  # T1
    betas: tuple[float, float] = (0.9, 0.95)  # T1
    warmup_epochs: float = 5.0  # spec §0.2: MAE fine-tuning default
    min_lr: float = 1e-6  # spec §0.2: MAE lr_sched
    drop_path: float = 0.1  # spec §0.2: ViT only, MAE default
    layer_decay: float = 1.0  # spec §0.2: off; 0.75 reproduces MAE's layer-wise decay
    min_scale: float = 0.8  # spec §0.2: mild RandomResizedCrop(scale=(0.8, 1))
    head_init_std: float = 2e-5  # spec §0.2: MAE main_finetune.py
    eval_batch_size: int = 256  # choice: evaluation only
    max_steps: int = 0  # choice: 0 = full epochs; >0 caps optimizer steps per epoch (tests)


@dataclass
class Config:
    profile: str = "paper"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    seed: int = 0
    device: str = "auto"  # auto -> cuda when available, else cpu
    amp: Literal["auto", "bf16", "off"] = "auto"  # T1 is silent; bf16 autocast on CUDA (auto)
    # Speed only (engine/fastpaths.py; left out of run ids like `device`): how a step computes, not what.
    compile: bool = False  # choice: torch.compile each block (fastpaths.py); off, compile time outweighs short runs
    channels_last: bool = True  # choice: NHWC ResNet activations, the layout cuDNN/oneDNN convolve fastest
    cpu_onednn_linear: bool = True  # choice: fp32 nn.Linear through oneDNN on non-Intel AVX-512 CPUs, 2x MKL on AMD
    vit_weights: Optional[str] = None  # spec §7: local ImageNet ViT-B/16 file (Transfer)
    resnet_weights: Optional[str] = None  # spec §7: local ImageNet ResNet file (Transfer, Cross)


def paper() -> Config:
    """The paper's Table 1 / §4.1 settings."""
    return Config(profile="paper")


def cpu() -> Config:
    """Small siblings of the paper models for a 2-core laptop; every size is set here and only here."""
    return Config(
        profile="cpu",
        # choice: 64 px with 8-px patches keeps an 8 x 8 grid (region guidance stays meaningful) while
        # ResNets and the views cost a quarter of 128 px; the phantom's signal is calibrated at 64 px.
        data=DataConfig(image_size=64),
        model=ModelConfig(
            # choice: ViT-Tiny's width (D=192, 3 heads) at half its depth, 64 tokens: 12 blocks cost twice
            # as much and learned no better in the cpu budget
            vit="vit_tiny_patch16_224", vit_depth=6, patch_size=8,
            resnet="resnet18",  # choice: ResNet-50's small sibling
            decoder_dim=128, decoder_depth=2, decoder_heads=4,  # choice: spec §0.3b decoder 128 x 2
            projector_hidden=1024, projector_out=128,
            simsiam_dim=512, simsiam_pred_hidden=128,
        ),
        # choice: laptop budget. MIM lr: T1's rule at batch 64 gives 3.75e-5, which left the encoder near
        # its initialisation after 250 steps (fine-tuning then stayed at chance); blr 3e-3 gives 7.5e-4,
        # inside MAE's own range (its lr is 2.4e-3 at batch 4096) and measured to learn: 0.63 vs 0.25 at 100 %
        pretrain=PretrainConfig(epochs=10, batch_size=64, warmup_epochs=1.0, blr=3e-3),
        # spec §0.2 caveat: the batch-scaled T1 lr underfits small subsets; 2.5e-4 trained properly
        finetune=FinetuneConfig(epochs=10, batch_size=32, blr=2.5e-4 * 256 / 32, warmup_epochs=1.0),
    )


def smoke() -> Config:
    """Seconds per run, for tests."""
    config = cpu()
    config.profile = "smoke"
    config.data = replace(config.data, image_size=32, phantom_count=120, phantom_native_size=64)
    config.model = replace(
        config.model, vit_depth=2, decoder_dim=32, decoder_depth=1, decoder_heads=2,
        projector_hidden=64, projector_out=32, simsiam_dim=64, simsiam_pred_hidden=16,
    )
    config.pretrain = replace(config.pretrain, epochs=1, batch_size=16, warmup_epochs=0.5, max_steps=2)
    config.finetune = replace(config.finetune, epochs=1, batch_size=16, warmup_epochs=0.5, max_steps=2,
                              eval_batch_size=64)
    return config


PROFILES = {"paper": paper, "cpu": cpu, "smoke": smoke}


def resolve_profile(name: str) -> tuple[str, str]:
    """Map ``auto`` to ``paper`` on a CUDA machine and ``cpu`` elsewhere; returns (profile, reason)."""
    if name == "auto":
        import torch

        if torch.cuda.is_available():
            return "paper", "auto: a CUDA GPU is present"
        return "cpu", "auto: no CUDA GPU found"
    if name not in PROFILES:
        raise ConfigError(f"--profile {name!r}: expected one of auto, {', '.join(PROFILES)}")
    return name, "requested"


def _coerce(value: str, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union and type(None) in args:
        if value.lower() in ("none", "null", ""):
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"--set {key}={value}: expected one of {', '.join(map(str, args))}")
        return value
    if origin is tuple:
        parts = [p for p in value.strip("()[] ").split(",") if p.strip()]
        if len(parts) != len(args):
            raise ConfigError(f"--set {key}={value}: expected {len(args)} comma-separated values")
        return tuple(_coerce(p.strip(), a, key) for p, a in zip(parts, args))
    if annotation is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"--set {key}={value}: expected true or false")
    if annotation in (int, float, str):
        try:
            return annotation(value)
        except ValueError:
            raise ConfigError(f"--set {key}={value}: expected {annotation.__name__}") from None
    raise ConfigError(f"--set {key}: cannot set a field of type {annotation}")


def apply_override(config: Config, assignment: str) -> None:
    """Apply one ``section.key=value`` (or top-level ``key=value``) in place, with type checking."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected section.key=value, e.g. pretrain.epochs=5")
    key, value = assignment.split("=", 1)
    *path, name = key.strip().split(".")
    target: Any = config
    for part in path:
        if not hasattr(target, part) or not is_dataclass(getattr(target, part)):
            sections = [f.name for f in fields(Config) if is_dataclass(getattr(config, f.name))]
            raise ConfigError(f"--set {key}: unknown section {part!r}; sections: {', '.join(sections)}")
        target = getattr(target, part)
    hints = typing.get_type_hints(type(target))
    if name not in hints:
        raise ConfigError(f"--set {key}: unknown key {name!r}; valid keys: {', '.join(sorted(hints))}")
    setattr(target, name, _coerce(value.strip(), hints[name], key))


def build_config(profile: str = "auto", overrides: tuple[str, ...] | list[str] = ()) -> tuple[Config, str]:
    """Resolve a profile and apply overrides; returns the config and a line saying why that profile."""
    name, reason = resolve_profile(profile)
    config = PROFILES[name]()
    for assignment in overrides:
        apply_override(config, assignment)
    validate(config)
    return config, f"profile {name} ({reason})"


def validate(config: Config) -> None:
    checks = [
        (config.data.image_size > 0 and config.data.image_size % config.model.patch_size == 0,
         "data.image_size", f"a positive multiple of model.patch_size ({config.model.patch_size})"),
        (0.0 < config.data.test_fraction < 1.0, "data.test_fraction", "a number in (0, 1)"),
        (0.0 < config.pretrain.mask_ratio < 1.0, "pretrain.mask_ratio", "a number in (0, 1)"),
        (config.pretrain.batch_size % config.pretrain.accum_steps == 0, "pretrain.batch_size",
         "a multiple of pretrain.accum_steps"),
        (config.pretrain.epochs >= 1 and config.finetune.epochs >= 1, "epochs", "at least 1"),
        (0.0 < config.finetune.layer_decay <= 1.0, "finetune.layer_decay", "a number in (0, 1]"),
    ]
    for ok, key, expected in checks:
        if not ok:
            raise ConfigError(f"config {key}: expected {expected}")


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def stable_hash(payload: Any, length: int = 10) -> str:
    """Short deterministic hash of JSON-able data (run ids, cache keys)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# Settings that only one encoder family or one pretraining recipe reads. Run ids and encoder cache keys
# leave out what a run never reads, so retuning the ViT recipe keeps every ResNet run valid (and back).
READ_ONLY_BY: dict[str, tuple[str, ...]] = {
    "vit": ("model.vit", "model.vit_depth", "model.patch_size", "model.decoder_dim", "model.decoder_depth",
            "model.decoder_heads", "model.pos_embed", "model.vit_pool", "finetune.drop_path",
            "finetune.layer_decay", "vit_weights"),
    "resnet": ("model.resnet", "model.projector_hidden", "model.projector_out", "model.simsiam_dim",
               "model.simsiam_pred_hidden", "resnet_weights"),
    "adamw": ("pretrain.blr", "pretrain.weight_decay", "pretrain.betas", "pretrain.warmup_epochs",
              "pretrain.mask_ratio", "pretrain.norm_pix_loss", "pretrain.min_overlap", "pretrain.min_scale"),
    "sgd": ("pretrain.ssl_blr", "pretrain.ssl_momentum", "pretrain.ssl_weight_decay", "pretrain.ema_base",
            "pretrain.skd_variant", "pretrain.skd_weight", "pretrain.skd_omega", "pretrain.skd_tau",
            "pretrain.skd_kl_temperature"),
}


def settings_read_by(config: Config, arch: str, recipe: Optional[str]) -> dict:
    """The config as a dict without the settings of the other encoder family and pretraining recipe;
    without a recipe (no pretraining stage) the pretrain section goes altogether."""
    settings = to_dict(config)
    if recipe is None:
        settings.pop("pretrain")
    for family, keys in READ_ONLY_BY.items():
        if family in (arch, recipe):
            continue
        for key in keys:
            *path, name = key.split(".")
            section = settings
            for part in path:
                section = section.get(part, {})
            section.pop(name, None)
    return settings


def describe(config: Config) -> str:
    """The resolved config as indented JSON, printed at the start of every computing command."""
    return json.dumps(to_dict(config), indent=2, default=str)
