"""Every attribution method: maps of the input's shape in [0, 1] that find a planted bright square."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medwss.counterfactual.attribution import ATTRIBUTIONS, attribute


class Toy(nn.Module):
    """Logit "abnormal" = mean of relu(x - 0.5) over the image, through a conv 'layer4'."""

    def __init__(self) -> None:
        super().__init__()
        self.layer4 = nn.Conv2d(1, 2, 1)
        with torch.no_grad():
            self.layer4.weight[:] = torch.tensor([[[[1.0]]], [[[0.0]]]])
            self.layer4.bias[:] = torch.tensor([-0.5, 0.0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.layer4(x))  # (B, 2, H, W)
        s = 40 * a[:, 0].mean((1, 2))  # (B,)
        return torch.stack([-s, s], 1)  # (B, 2)


@pytest.fixture(scope="module")
def planted() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = -0.5 + 0.1 * torch.rand(2, 1, 32, 32, generator=g)
    x[0, 0, 8:16, 18:26] = 1.0
    x[1, 0, 20:28, 4:12] = 1.0
    return x


@pytest.mark.parametrize("name", sorted(ATTRIBUTIONS))
def test_attribution_finds_planted_square(name, planted):
    kw = {"n_masks": 500} if name == "rise" else {}
    maps = attribute(name, Toy(), planted, **kw)
    assert maps.shape == (2, 32, 32) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1 and np.isfinite(maps).all()
    for b, (r, c) in enumerate(((slice(8, 16), slice(18, 26)), (slice(20, 28), slice(4, 12)))):
        inside = maps[b, r, c].mean()
        outside = (maps[b].sum() - maps[b, r, c].sum()) / (32 * 32 - 64)
        assert inside > 1.3 * outside, name  # RISE is the noisiest


def test_unknown_method_is_a_config_error(planted):
    from medwss.errors import ConfigError

    with pytest.raises(ConfigError):
        attribute("nope", Toy(), planted)
