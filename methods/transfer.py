"""Transfer: supervised ImageNet weights (from a local file), fine-tuned; no pretext task."""

from methods.base import Method

METHOD = Method(
    name="transfer",
    display="Transfer",
    archs=("vit", "resnet"),
    pretext="none (supervised ImageNet initialisation)",
    reference="fine-tuning from ImageNet (paper §4.1, ref. [50])",
    init="imagenet",
)
