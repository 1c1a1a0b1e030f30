"""H&E stain jitter in haematoxylin–eosin–DAB optical-density space (Tellez et al., 2018), in torch.

`hed_jitter` is the maths, for one tile or a whole batch on any device; `RandHEStaind` is the same
as a MONAI dictionary transform for `Compose` pipelines. Each stain's concentration is multiplied
by ``alpha`` and shifted by ``beta``: ``rgb' = exp(-((od @ M⁻¹) · alpha + beta) @ M)`` with
``od = -log(rgb)`` and ``M`` = `RGB_FROM_HED`, computed as one 3 × 3 matrix per tile,
``od @ (M⁻¹ diag(alpha) M) + beta @ M``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.transforms import MapTransform, RandomizableTransform

from medwss.errors import InvalidDataError

RGB_FROM_HED = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
"""Optical density of unit haematoxylin, eosin and DAB (rows; Ruifrok & Johnston 2001)."""


def hed_jitter(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, channel_dim: int = 0) -> torch.Tensor:
    """RGB in [0, 1] with each stain's concentration scaled by `alpha` and shifted by `beta`.

    Args:
        x: RGB with 3 channels at `channel_dim`: ``(3, *S)`` (0) or a batch ``(B, 3, *S)`` (1).
        alpha: ``(3,)``, or ``(B, 3)`` for a batch: concentration factors (1 = unchanged).
        beta: Same shape as `alpha`: concentration shifts in optical density (0 = unchanged).

    Returns:
        The jittered RGB, same shape as `x` (not clipped: values stay in (0, 1] for mild jitter).
    """
    if x.shape[channel_dim] != 3:
        raise InvalidDataError(f"the H&E stain jitter needs 3 (RGB) channels, got shape {tuple(x.shape)}")
    m = RGB_FROM_HED.to(x.device, x.dtype)
    a, b = alpha.to(x.device, x.dtype), beta.to(x.device, x.dtype)
    t = torch.linalg.inv(m) @ (a[..., :, None] * m)  # (..., 3, 3) = M⁻¹ diag(alpha) M: one matrix per tile
    rgb = x.movedim(channel_dim, -1)  # (..., *S, 3)
    od = -torch.log(rgb.clamp(min=1 / 255)).reshape(*a.shape[:-1], -1, 3)  # (..., N, 3) optical density
    out = torch.exp(-(od @ t + (b @ m)[..., None, :]))  # (..., N, 3)
    return out.reshape(rgb.shape).movedim(-1, channel_dim)


class RandHEStaind(RandomizableTransform, MapTransform):
    """Random H&E stain jitter of channel-first RGB tiles ``(3, *S)`` in [0, 1] (MONAI dictionary transform).

    Args:
        keys: Image keys.
        prob: Probability of jittering a sample.
        scale: Each stain's concentration multiplied by a factor uniform in 1 ± `scale`.
        shift: Each stain's concentration shifted by an offset uniform in ± `shift`.
        allow_missing_keys: Skip keys the sample lacks.
    """

    def __init__(
        self,
        keys: str | tuple[str, ...],
        prob: float = 0.5,
        scale: float = 0.05,
        shift: float = 0.02,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.scale = scale
        self.shift = shift
        self.alpha = torch.ones(3)
        self.beta = torch.zeros(3)

    def randomize(self, data: object = None) -> None:
        """Draw whether to jitter and the factors and shifts of the three stains."""
        super().randomize(None)
        self.alpha = torch.as_tensor(1 + self.R.uniform(-self.scale, self.scale, 3), dtype=torch.float32)
        self.beta = torch.as_tensor(self.R.uniform(-self.shift, self.shift, 3), dtype=torch.float32)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            x = d[key]
            x = x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)  # no MetaTensor: 3× faster
            d[key] = hed_jitter(x, self.alpha, self.beta)  # (3, *S)
        return d
