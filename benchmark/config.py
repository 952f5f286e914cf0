"""Typed configuration: dataclass sections, named profiles, ``--set section.key=value`` overrides.

Sections hold the settings the shared machinery reads (data, lung region, the two encoder families, the
pretraining loop, fine-tuning, runtime). Each method's own settings are a dataclass in its method file
(``Method.settings``), one section per method named after it (``--set byol.ema_base=0.996``).

A run's identity (run id, encoder cache key) is built from exactly what the run reads: ``identity`` below
says which fields of a section count, from metadata declared at the field. Sources: "T1" is the paper's
Table 1, "§x" a section of the paper, "protocol §x" a section of docs/protocol.md, "choice" a decision of ours.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, Literal, Optional

from benchmark.errors import ConfigError

MaskSource = Literal["gt", "classical", "prior", "sam", "none"]
MASK_SOURCES: tuple[str, ...] = typing.get_args(MaskSource)


def locator(default: Any) -> Any:
    """Where or how to find or compute something, not what is computed: left out of every run identity."""
    return field(default=default, metadata={"identity": False})


def vit_only(default: Any) -> Any:
    """Read only when the encoder is a ViT: part of ViT runs' identity only."""
    return field(default=default, metadata={"arch": "vit"})


def imagenet_only(default: Any) -> Any:
    """Read only by methods that start from ImageNet weights (Transfer, Cross)."""
    return field(default=default, metadata={"init": "imagenet"})


@dataclass
class DataConfig:
    """Which images. Their identity is the content fingerprint and the split digest, plus the size."""

    dataset: str = locator("auto")  # auto | phantom | covid-radiography | covid-qu-ex | folder
    root: Optional[str] = locator(None)  # None -> the embedded phantom
    image_size: int = 224  # T1/§4.1: 224 x 224 input
    split_seed: int = locator(0)  # choice: the paper's split seed is unknown; fixed, in the split digest
    test_fraction: float = locator(0.2)  # §4.1: random 80/20 split per class; in the split digest
    missing_masks: Literal["error", "skip", "allow"] = locator("error")  # choice: refuse silent "no region"
    images_dir: str = locator("images")  # folder layout: <root>/<class>/<images_dir>/*
    masks_dir: str = locator("masks")  # folder layout: <root>/<class>/<masks_dir>/*
    cache_dir: Optional[str] = locator(None)  # None -> $RGMIM_CACHE or ~/.cache/rgmim-bench
    split_file: Optional[str] = locator(None)  # None -> next to the cache, keyed by fingerprint, seed, test fraction
    phantom_count: int = locator(2000)  # choice: 1 % of the train pool still has >= 4 images per class
    phantom_seed: int = locator(0)
    phantom_native_size: int = locator(256)  # choice: generated once at this size, resized by the cache
    phantom_shortcut: bool = locator(False)  # class-correlated mark outside the lungs, off by default


@dataclass
class RegionConfig:
    """Where the lung region comes from and which patches count as lung (§3.1, protocol §2)."""

    source: MaskSource = "gt"  # §5: gt is the paper's expert masks; the others need none
    mask_dir: Optional[str] = None  # choice: the user's own masks, paired by file name; replaces gt's
    sam_checkpoint: Optional[str] = None  # §5: a Segment Anything checkpoint file the user supplies
    sam_model: str = "vit_b"  # choice: the smallest SAM (vit_b | vit_l | vit_h); must match the checkpoint
    min_overlap: float = 0.0  # protocol §2: a patch is lung if more than this share of its pixels is lung


@dataclass
class ViTConfig:
    name: str = "vit_base_patch16_224"  # §4.1: ViT-Base, L=12, D=768, 12 heads
    depth: Optional[int] = None  # choice: None keeps the timm model's depth; the cpu profile uses 6
    patch_size: int = 16  # §3.1 T = 16 (ViT-B/16); the grid region guidance selects patches on
    pool: Literal["ln_then_gap", "gap_then_ln"] = "ln_then_gap"  # Eq. 4: y = GAP(LN(z_L))
    weights: Optional[str] = imagenet_only(None)  # protocol §7: local ImageNet ViT file (Transfer)


@dataclass
class ResNetConfig:
    name: str = "resnet50"  # §4.1: ResNet-50 for SKD, Cross, BYOL, SimSiam, Transfer/Scratch-R50
    weights: Optional[str] = imagenet_only(None)  # protocol §7: local ImageNet ResNet file (Transfer, Cross)


@dataclass
class PretrainConfig:
    """The pretraining loop every pretraining method shares; its optimizer is in the method's section."""

    epochs: int = 40  # T1
    batch_size: int = 256  # T1 (effective batch; see accum_steps)
    accum_steps: int = 1  # choice: raise when the batch does not fit; lr follows the effective batch
    max_steps: int = 0  # choice: 0 = full epochs; >0 stops early (tests, benchmarks)


@dataclass
class FinetuneConfig:
    epochs: int = 30  # T1
    batch_size: int = 256  # T1
    blr: float = 1.5e-4  # T1 applied to fine-tuning (protocol §8, the same for every method)
    weight_decay: float = 0.05  # T1
    betas: tuple[float, float] = (0.9, 0.95)  # T1
    warmup_epochs: float = 5.0  # protocol §8: MAE fine-tuning default
    min_lr: float = 1e-6  # protocol §8: MAE util/lr_sched.py
    drop_path: float = vit_only(0.1)  # protocol §8: MAE default
    layer_decay: float = vit_only(1.0)  # protocol §8: off; 0.75 reproduces MAE's layer-wise decay
    min_scale: float = 0.8  # protocol §8: mild RandomResizedCrop(scale=(0.8, 1))
    head_init_std: float = 2e-5  # protocol §8: MAE main_finetune.py
    eval_batch_size: int = locator(256)  # choice: evaluation only, no effect on any number
    max_steps: int = 0  # choice: 0 = full epochs; >0 caps the optimizer steps of the run (tests), as pretrain's
    # protocol §8: at least this many optimizer steps, cycling a small subset (Big Transfer sets fine-tuning
    # length in steps, MRM fixed steps per fraction); 0 keeps T1's 30 epochs, one step per epoch at 1 %
    min_steps: int = 0


PROBES = ("knn", "linear")  # the frozen-feature probes (engine/probes.py), as records name them
PROBE_METRICS = ("accuracy", "macro_f1", "macro_auroc")  # what a record keeps of each probe


@dataclass
class ProbeConfig:
    """Frozen-feature evaluation of the encoder every run starts fine-tuning from (protocol §8)."""

    enabled: bool = True  # choice: cheap (one pass over the data per encoder) and separates methods early
    knn_k: int = 20  # solo-learn solo/utils/knn.py: weighted kNN, k = 20
    knn_temperature: float = 0.07  # solo-learn: T = 0.07
    linear_steps: int = 500  # Big Transfer's hyper-rule: 500 steps for datasets under 20k images
    linear_batch_size: int = 256  # choice: MAE main_linprobe.py uses far more; features are cheap here
    linear_lr: float = 0.1  # choice: SGD on BatchNorm-standardised features (MAE's linear probe: lr 0.1)


@dataclass
class RuntimeConfig:
    """Where and how a step computes, never what (engine/fastpaths.py): no run identity reads it."""

    device: str = "auto"  # auto -> cuda when available, else cpu
    compile: bool = False  # choice: torch.compile each block; off, compile time outweighs short runs
    channels_last: bool = True  # choice: NHWC ResNet activations, the layout cuDNN/oneDNN convolve fastest
    cpu_onednn_linear: bool = (
        True  # choice: fp32 nn.Linear through oneDNN on AVX-512 CPUs where measured faster (2x MKL on AMD)
    )
    cpu_keep_freed_memory: bool = True  # choice: freed tensors stay in the heap, no page faults per step (fastpaths)
    tensorboard: Optional[str] = None  # choice: per-epoch scalars under this folder (engine/scalars.py); None: off


@dataclass
class Config:
    profile: str = "paper"
    data: DataConfig = field(default_factory=DataConfig)
    region: RegionConfig = field(default_factory=RegionConfig)
    vit: ViTConfig = field(default_factory=ViTConfig)
    resnet: ResNetConfig = field(default_factory=ResNetConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    # one section per registered method with settings of its own (Method.settings), filled by build_config
    methods: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    amp: Literal["auto", "bf16", "off"] = "auto"  # T1 is silent; bf16 autocast on CUDA (auto)

    def family(self, arch: str) -> ViTConfig | ResNetConfig:
        """The model settings of one encoder family."""
        if arch not in ("vit", "resnet"):
            raise ConfigError(f"--arch {arch!r}: expected vit or resnet")
        return self.vit if arch == "vit" else self.resnet

    def method(self, name: str) -> Any:
        """The settings section of a registered method."""
        return self.methods[name]


def paper() -> Config:
    """The paper's Table 1 / §4.1 settings."""
    return Config(profile="paper")


def cpu() -> Config:
    """Small siblings of the paper models for a 2-core laptop; method sections set theirs in their files."""
    return Config(
        profile="cpu",
        # choice: 64 px with 8-px patches keeps an 8 x 8 grid (region guidance stays meaningful) while
        # ResNets and the views cost a quarter of 128 px; the phantom's signal is calibrated at 64 px.
        data=DataConfig(image_size=64),
        # choice: ViT-Tiny's width (D=192, 3 heads) at half its depth, 64 tokens: 12 blocks cost twice
        # as much and learned no better in the cpu budget
        vit=ViTConfig(name="vit_tiny_patch16_224", depth=6, patch_size=8),
        resnet=ResNetConfig(name="resnet18"),  # choice: ResNet-50's small sibling
        # protocol §9: measured frontier; 20 epochs (half of T1's 40) fit the README's 5-minute main command
        pretrain=PretrainConfig(epochs=20, batch_size=64),
        finetune=FinetuneConfig(
            epochs=10,
            batch_size=32,
            blr=2.5e-4 * 256 / 32,  # protocol §8: the batch-scaled T1 lr underfits small subsets; 2.5e-4 trains
            warmup_epochs=1.0,
            min_steps=300,  # protocol §8: measured at 1 % and 5 % (0 / 100 / 300 steps); 10 steps at 1 % without it
        ),
    )


def smoke() -> Config:
    """Seconds per run, for tests."""
    config = cpu()
    config.profile = "smoke"
    config.data = replace(config.data, image_size=32, phantom_count=120, phantom_native_size=64)
    config.vit = replace(config.vit, depth=2)
    config.pretrain = replace(config.pretrain, epochs=1, batch_size=16, max_steps=2)
    config.finetune = replace(
        config.finetune, epochs=1, batch_size=16, warmup_epochs=0.5, max_steps=2, min_steps=0, eval_batch_size=64
    )
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


def method_settings_for(settings_type: type, profile: str) -> Any:
    """A method's settings at a profile: its defaults (the paper's) with its ``PROFILES[profile]`` values."""
    return settings_type(**getattr(settings_type, "PROFILES", {}).get(profile, {}))


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


def section_names(config: Config) -> list[str]:
    return [f.name for f in fields(Config) if is_dataclass(getattr(config, f.name))] + list(config.methods)


def apply_override(config: Config, assignment: str) -> None:
    """Apply one ``section.key=value`` (or top-level ``key=value``) in place, with type checking."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected section.key=value, e.g. pretrain.epochs=5")
    key, value = assignment.split("=", 1)
    *path, name = key.strip().split(".")
    if len(path) > 1:
        raise ConfigError(f"--set {key}: expected section.key or key, e.g. pretrain.epochs")
    target: Any = config
    if path:
        section = path[0]
        target = config.methods.get(section) if section in config.methods else getattr(config, section, None)
        if not is_dataclass(target):
            raise ConfigError(f"--set {key}: unknown section {section!r}; sections: {', '.join(section_names(config))}")
    hints = {
        name: hint
        for name, hint in typing.get_type_hints(type(target)).items()
        if not (target is config and name == "methods") and typing.get_origin(hint) is not typing.ClassVar
    }
    if name not in hints or is_dataclass(getattr(target, name, None)):
        raise ConfigError(f"--set {key}: unknown key {name!r}; valid keys: {', '.join(sorted(hints))}")
    setattr(target, name, _coerce(value.strip(), hints[name], key))


def build_config(
    profile: str = "auto", overrides: tuple[str, ...] | list[str] = (), method_settings: dict[str, type] | None = None
) -> tuple[Config, str]:
    """Resolve a profile, add a section per method (``{name: settings dataclass}``, from the registry) and
    apply overrides; returns the config and a line saying why that profile."""
    name, reason = resolve_profile(profile)
    config = PROFILES[name]()
    config.methods = {method: method_settings_for(kind, name) for method, kind in (method_settings or {}).items()}
    for assignment in overrides:
        apply_override(config, assignment)
    validate(config)
    return config, f"profile {name} ({reason})"


def validate(config: Config) -> None:
    checks = [
        (
            config.data.image_size > 0 and config.data.image_size % config.vit.patch_size == 0,
            "data.image_size",
            f"a positive multiple of vit.patch_size ({config.vit.patch_size})",
        ),
        (config.seed >= 0, "seed", "a non-negative integer (--seed)"),
        (0.0 < config.data.test_fraction < 1.0, "data.test_fraction", "a number in (0, 1)"),
        (0.0 <= config.region.min_overlap < 1.0, "region.min_overlap", "a number in [0, 1)"),
        (
            config.pretrain.batch_size % config.pretrain.accum_steps == 0,
            "pretrain.batch_size",
            "a multiple of pretrain.accum_steps",
        ),
        (config.pretrain.epochs >= 1 and config.finetune.epochs >= 1, "epochs", "at least 1"),
        (0.0 < config.finetune.layer_decay <= 1.0, "finetune.layer_decay", "a number in (0, 1]"),
    ]
    for name, settings in config.methods.items():
        checks += [(ok, f"{name}.{key}", expected) for ok, key, expected in getattr(settings, "checks", list)()]
    for ok, key, expected in checks:
        if not ok:
            raise ConfigError(f"config {key}: expected {expected}")


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def counts_for(item: dataclasses.Field, arch: Optional[str], init: str) -> bool:
    """Whether a run on encoder ``arch`` starting from ``init`` weights reads the field and it changes what the
    run computes (``locator``, ``vit_only`` and ``imagenet_only`` say which do not)."""
    meta = item.metadata
    return meta.get("identity", True) and meta.get("arch", arch) == arch and meta.get("init", init) == init


def identity(section: Any, arch: Optional[str] = None, init: str = "random") -> dict:
    """The fields of a section that count for a run on ``arch`` from ``init`` weights (``counts_for``)."""
    chosen = {}
    for item in fields(section):
        if counts_for(item, arch, init):
            value = getattr(section, item.name)
            chosen[item.name] = dataclasses.asdict(value) if is_dataclass(value) else value
    return chosen


def describe_changes(config: Config) -> str:
    """One line: the profile and every setting that differs from it, printed at the start of each computing
    command (the run record keeps the whole resolved config)."""
    reference = PROFILES[config.profile]()
    changed = []
    for name in section_names(config):
        ours = config.methods[name] if name in config.methods else getattr(config, name)
        theirs = method_settings_for(type(ours), config.profile) if name in config.methods else getattr(reference, name)
        changed += [
            f"{name}.{item.name}={getattr(ours, item.name)!r}"
            for item in fields(ours)
            if getattr(ours, item.name) != getattr(theirs, item.name)
        ]
    changed += [f"{key}={getattr(config, key)!r}" for key in ("seed", "amp") if getattr(config, key) != getattr(reference, key)]
    return f"profile {config.profile}; set: {', '.join(changed) if changed else 'nothing else'}"
