"""SAM / MedSAM as a promptable segmenter, from a *local* checkpoint, when `segment_anything` is installed.

Nothing is downloaded. The package is imported only when a predictor is built; without it, or
without the checkpoint file, a one-line `MedwssError` says which is missing. MedSAM uses SAM's
ViT-B architecture with its own weights, so both go through `SamPredictor`.

Example:
    >>> seg = SamSegmenter(checkpoint="medsam_vit_b.pth", flavour="medsam")  # doctest: +SKIP
    >>> prob = seg.segment(ct_slice, Box((20, 30), (50, 70)))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from medwss.errors import FileNotFound, InvalidDataError, MedwssError
from medwss.pseudo.protocol import Box
from medwss.transforms.intensity import Window, normalise

DEFAULT_WINDOWS: dict[str, Window] = {"sam": None, "medsam": "soft_tissue"}
"""Intensity window per flavour (MedSAM: the soft-tissue CT window; SAM: percentiles)."""


def build_sam_predictor(checkpoint: str | Path | None, model_type: str = "vit_b", device: str = "cpu") -> Any:
    """A `segment_anything.SamPredictor` for a local checkpoint.

    Raises:
        MedwssError: `segment_anything` is not installed, or no checkpoint was given.
        FileNotFound: The checkpoint file does not exist.
    """
    try:
        from segment_anything import SamPredictor, sam_model_registry  # type: ignore[import-not-found]
    except ImportError as exc:
        raise MedwssError(
            "SAM/MedSAM box prompts need the optional package 'segment_anything' "
            "(pip install segment-anything) and a local checkpoint file; none is downloaded"
        ) from exc
    if checkpoint is None:
        raise MedwssError("SAM/MedSAM needs a local checkpoint file (e.g. sam_vit_b_01ec64.pth or medsam_vit_b.pth)")
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFound("SAM/MedSAM checkpoint not found", path)
    model = sam_model_registry[model_type](checkpoint=str(path))
    model.to(device)
    return SamPredictor(model)


class SamSegmenter:
    """Box prompts through a SAM-style predictor (`set_image`, `predict(box=..., return_logits=True)`).

    Args:
        checkpoint: Local SAM or MedSAM weights; ignored when `predictor` is given.
        flavour: ``sam`` or ``medsam`` (sets the default intensity window).
        model_type: SAM registry key, ``vit_b`` for MedSAM.
        predictor: An object with SAM's predictor interface (for tests or custom models).
        window: Intensity window (``(low, high)`` or a name of `CT_WINDOWS`) mapped to 0-255 before the RGB image is given to the predictor.
        device: Torch device for the model.
    """

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        flavour: str = "sam",
        model_type: str = "vit_b",
        predictor: Any = None,
        window: Window = None,
        device: str = "cpu",
    ) -> None:
        if flavour not in DEFAULT_WINDOWS:
            raise MedwssError(f"unknown SAM flavour '{flavour}': choose sam or medsam")
        self.name = flavour
        self.checkpoint = checkpoint
        self.model_type = model_type
        self.window = window if window is not None else DEFAULT_WINDOWS[flavour]
        self.device = device
        self._predictor = predictor if predictor is not None else build_sam_predictor(checkpoint, model_type, device)
        self._image_key: str | None = None

    def to_rgb(self, image: np.ndarray) -> np.ndarray:
        """The (H, W, 3) uint8 image the predictor sees.

        A grey (H, W) image is windowed to 0-255 and repeated on three channels; an (H, W, 3) colour
        image (channels last, e.g. an endoscopy frame) is passed as it is when uint8, else scaled
        from [0, 1] (or by its maximum when above 1).
        """
        if image.ndim == 3 and image.shape[-1] == 3:
            if image.dtype == np.uint8:
                return np.ascontiguousarray(image)
            a = np.asarray(image, dtype=np.float64)
            top = float(a.max()) if a.size else 1.0
            return (np.clip(a / top if top > 1.0 else a, 0.0, 1.0) * 255.0).round().astype(np.uint8)
        if image.ndim != 2:
            raise InvalidDataError(f"SAM takes 2D images; got shape {image.shape} (segment slice by slice)")
        gray = (normalise(image, "window", self.window) * 255.0).round().astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)

    def segment(self, image: np.ndarray, box: Box) -> np.ndarray:
        """Foreground probability (sigmoid of SAM's best mask logits) for one box on a 2D grey or RGB image."""
        if len(box.lo) != 2:
            raise InvalidDataError(f"SAM takes 2D images and boxes; got a {len(box.lo)}D box (segment slice by slice)")
        rgb = self.to_rgb(image)
        key = hashlib.sha1(rgb.tobytes()).hexdigest() + str(rgb.shape)
        if key != self._image_key:  # embed each image once, however many boxes it has
            self._predictor.set_image(rgb)
            self._image_key = key
        b = box.clip(tuple(rgb.shape[:2]))
        xyxy = np.array([b.lo[1], b.lo[0], b.hi[1] - 1, b.hi[0] - 1], dtype=np.float32)  # SAM: x=column, y=row
        masks, scores, _ = self._predictor.predict(box=xyxy, multimask_output=False, return_logits=True)
        logits = np.asarray(masks[int(np.argmax(scores))], dtype=np.float64)
        return (1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))).astype(np.float32)
