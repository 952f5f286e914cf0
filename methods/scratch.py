"""Scratch: random initialisation, fine-tuned; the lower bound of the comparison."""

from methods.base import Method

METHOD = Method(
    name="scratch",
    display="Scratch",
    archs=("vit", "resnet"),
    pretext="none (random initialisation)",
    reference="training from scratch (paper §4.1)",
)
