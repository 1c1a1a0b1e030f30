"""The pseudo-label contract: label maps with `IGNORE`, boxes, and the method and promptable-segmenter protocols.

A pseudo-label map is an integer array on the image grid: ``0`` background, ``1..K-1`` classes,
and `IGNORE` (-1) where the method abstains (uncertain ring, overlapping boxes, the ignore band of
a threshold). It is the one label convention of `medwss.data.labels` (``IGNORE = -1``), written
as int16 NIfTI with -1 = unlabelled by `medwss.data.labels.save_label_map`.

`PseudoLabelMethod` is what a pseudo-label method is (every entry of
`medwss.pseudo.methods.PSEUDO_METHODS` gives one through ``create(cfg, opts)``); `PromptableSegmenter`
is what a box segmenter is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from medwss.pseudo.box import Box

if TYPE_CHECKING:
    from medwss.pseudo.config import PseudoConfig
    from medwss.pseudo.volumes import SliceCase


@runtime_checkable
class PromptableSegmenter(Protocol):
    """Anything that turns an image and a box prompt into a foreground probability map.

    ``segment(image, box)`` takes a 2D (or, where the method allows, 3D) intensity array and a
    `Box` on its grid, and returns a float array of the image's shape in [0, 1] (zero far
    outside the box). Classical segmenters, SAM and MedSAM all satisfy it.
    """

    name: str

    def segment(self, image: np.ndarray, box: Box) -> np.ndarray: ...


@runtime_checkable
class PseudoLabelMethod(Protocol):
    """A pseudo-label method bound to its settings: ``fit(cases)`` on all the cases, then ``predict(case)``.

    The methods are transductive: a tag classifier, a class prior, context prototypes or a fusion
    threshold is computed over every case (the threshold sweep and priors on the ``val`` split),
    so ``fit`` does the work for the cases it is given and ``predict`` returns a fitted case's
    maps: per slice of the case (`SliceCase`), an integer map of the slice's shape with values in
    ``{IGNORE, 0, ..., K-1}`` (K classes of the label spec, background 0), or None for a case that
    failed inside an active `medwss.jobs.Job` (`medwss.pseudo.workflow.per_case`). Same config and
    seed, same maps.

    Attributes:
        name: The method's registry name (``medwss pseudo <name>``).
        config: Its settings: an instance of the method's own config class (a subclass of
            `medwss.pseudo.config.PseudoConfig` with exactly the fields the method reads; the
            registry entry's ``config``).
        extra: Figures of the last ``fit`` worth recording (``tau`` of fusion, ...).
    """

    name: str
    config: PseudoConfig
    extra: dict[str, Any]

    def fit(self, cases: Sequence[SliceCase]) -> PseudoLabelMethod: ...

    def predict(self, case: SliceCase) -> list[np.ndarray] | None: ...
