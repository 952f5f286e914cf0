"""Segment Anything as a lung-mask source (§5): an optional package and a checkpoint the user supplies."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from benchmark.data.segmenter import segment_lungs, sides, template_field
from benchmark.errors import DataError

SAM_MODELS = ("vit_b", "vit_l", "vit_h")
SAM_PROMPT_VERSION = "1"  # bump whenever the SAM prompting below changes: it names cached masks

SAM_BOX_MARGIN = 0.04  # image widths around each classical lung box: it tends to miss the lung's rim
SAM_PACKAGE_HELP = "pip install segment-anything (the optional extra; it brings no weights)"


def check_sam_available(checkpoint: Optional[str], model: str) -> Path:
    """The checkpoint path, after checking the file and the package exist (nothing is ever downloaded)."""
    if checkpoint is None:
        raise DataError(
            f"--mask-source sam needs --sam-checkpoint PATH: a Segment Anything {model} checkpoint "
            f"file you downloaded yourself (e.g. sam_vit_b_01ec64.pth); rgmim-bench never "
            f"downloads weights"
        )
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise DataError(
            f"--sam-checkpoint {path}: no such file; expected a Segment Anything {model} checkpoint (.pth) on this machine"
        )
    try:
        import segment_anything  # noqa: F401  (only checked here; SamSegmenter loads it)
    except ImportError:
        raise DataError(f"--mask-source sam needs the optional package segment-anything: {SAM_PACKAGE_HELP}") from None
    return path


class SamSegmenter:
    """Segment Anything prompted with one box per lung: the classical segmenter's lung, widened by a margin
    (the built-in template's field where it found none). Runs on CUDA when available."""

    def __init__(self, checkpoint: Path, model: str):
        import torch
        from segment_anything import SamPredictor, sam_model_registry

        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many kinds for a file that is not a checkpoint
            raise DataError(
                f"--sam-checkpoint {checkpoint}: cannot be read as a PyTorch checkpoint "
                f"({type(error).__name__}: {str(error)[:200]}); expected a SAM .pth file"
            ) from None
        network = sam_model_registry[model]()
        try:
            network.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as error:
            raise DataError(
                f"--sam-checkpoint {checkpoint}: not a Segment Anything {model} checkpoint "
                f"({str(error).splitlines()[0][:200]}); set --set region.sam_model=vit_b|vit_l|vit_h "
                f"to the checkpoint's model"
            ) from None
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.predictor = SamPredictor(network.to(device).eval())

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import torch

        size = image.shape[-1]
        with torch.inference_mode():
            self.predictor.set_image(np.repeat(image[..., None], 3, axis=-1))  # SAM expects RGB
            lungs = np.zeros((size, size), bool)
            for box in lung_boxes(image):
                masks, _, _ = self.predictor.predict(box=np.asarray(box, float), multimask_output=False)
                inside = np.zeros_like(lungs)
                inside[box[1] : box[3], box[0] : box[2]] = True  # a box prompt means "this lung, not beyond"
                lungs |= masks[0] & inside
        return lungs.astype(np.uint8)


def lung_boxes(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) per lung in pixels, exclusive ends: the classical segmenter's lung per side, or the
    built-in template's field on a side where it found nothing; widened by SAM_BOX_MARGIN."""
    size = image.shape[-1]
    found, template = segment_lungs(image).astype(bool), template_field(size)
    margin = round(SAM_BOX_MARGIN * size)
    boxes = []
    for side in sides(size):
        region = found & side if (found & side).any() else template & side
        rows, columns = np.nonzero(region)
        boxes.append(
            (
                max(int(columns.min()) - margin, 0),
                max(int(rows.min()) - margin, 0),
                min(int(columns.max()) + 1 + margin, size),
                min(int(rows.max()) + 1 + margin, size),
            )
        )
    return boxes
