"""Pseudo-label toolkit: six natural-image WSSS methods made weight-free for CT, MRI and slide tiles.

Convention: a pseudo-label map is an int array with 0 = background, 1..K-1 = classes and
`IGNORE` = -1 where the method abstains (the one label convention of `medwss.data.labels`; written
as int16 NIfTI with -1 = unlabelled on the source grid). Cases are cut into axial slices and the
results pasted back by the shared slicer (`medwss.data.slicer`); class maps come from
`medwss.data.labels.LABEL_SPECS`, weak labels from `medwss.data.weak`.

Components (one module each):

* `boxes`, `segmenters`, `sam`: box prompts → masks (random walker, Chan-Vese, Otsu, SAM/MedSAM).
* `dhr`: Sinkhorn rebalancing so minor classes survive; prototype heatmaps; class grouping.
* `fusion`: WSSS-BED foreground-prior fusion with an ignore band; `threshold_sweep`.
* `agmm`, `agmm_train`: Gaussian-mixture loss for sparse labels; offline GMM refiner.
* `cpal`: context prototypes and prototype-aware activation maps.
* `dupl`: dual-student training with a dynamic threshold and a loss-GMM noise filter.
* `par`: pixel-adaptive refinement of activation maps.
* `metrics`: per-class Dice/IoU, coverage, minor-class recall.
* `cams`, `nets`: weight-free activation maps, a tiny network.
* `volumes`, `outputs`, `workflow`: slicing cases, writing and reading pseudo-labels, one function per method.
* `frames`: 2D PNG/JPEG frames as one-slice cases, their labels as uint8 PNG (255 = unlabelled).
"""

from typing import TYPE_CHECKING

from medwss.lazy import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers
    from medwss.data.labels import IGNORE
    from medwss.pseudo.boxes import boxes_from_activation, boxes_from_labels, boxes_to_labels, load_boxes
    from medwss.pseudo.dhr import prototype_heatmaps, rebalance, sinkhorn, uniform_prior, volume_prior
    from medwss.pseudo.fusion import foreground_prior, fuse, threshold_sweep
    from medwss.pseudo.metrics import PseudoLabelMeter, pseudo_label_metrics
    from medwss.pseudo.par import PAR, refine_cams
    from medwss.pseudo.protocol import Box, PromptableSegmenter
    from medwss.pseudo.segmenters import BOX_SEGMENTERS, create_box_segmenter

_LAZY = {
    "IGNORE": "medwss.data.labels",
    "boxes_from_activation": "medwss.pseudo.boxes",
    "boxes_from_labels": "medwss.pseudo.boxes",
    "boxes_to_labels": "medwss.pseudo.boxes",
    "load_boxes": "medwss.pseudo.boxes",
    "prototype_heatmaps": "medwss.pseudo.dhr",
    "rebalance": "medwss.pseudo.dhr",
    "sinkhorn": "medwss.pseudo.dhr",
    "uniform_prior": "medwss.pseudo.dhr",
    "volume_prior": "medwss.pseudo.dhr",
    "foreground_prior": "medwss.pseudo.fusion",
    "fuse": "medwss.pseudo.fusion",
    "threshold_sweep": "medwss.pseudo.fusion",
    "PseudoLabelMeter": "medwss.pseudo.metrics",
    "pseudo_label_metrics": "medwss.pseudo.metrics",
    "PAR": "medwss.pseudo.par",
    "refine_cams": "medwss.pseudo.par",
    "Box": "medwss.pseudo.protocol",
    "PromptableSegmenter": "medwss.pseudo.protocol",
    "BOX_SEGMENTERS": "medwss.pseudo.segmenters",
    "create_box_segmenter": "medwss.pseudo.segmenters",
}
"""Where each re-exported name lives; imported on first use, so the CLI and configs do not load torch."""

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "BOX_SEGMENTERS",
    "IGNORE",
    "PAR",
    "Box",
    "PromptableSegmenter",
    "PseudoLabelMeter",
    "boxes_from_activation",
    "boxes_from_labels",
    "boxes_to_labels",
    "create_box_segmenter",
    "foreground_prior",
    "fuse",
    "load_boxes",
    "prototype_heatmaps",
    "pseudo_label_metrics",
    "rebalance",
    "refine_cams",
    "sinkhorn",
    "threshold_sweep",
    "uniform_prior",
    "volume_prior",
]
