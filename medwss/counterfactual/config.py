"""COIN's settings, apart from the torch code that uses them (``medwss coin --help`` stays light).

`ClassifierConfig` (configs/coin_classifier.yaml) trains the normal/abnormal slice classifier of
`medwss.counterfactual.classifier`; `CoinConfig` (configs/coin.yaml) the generator and
discriminator of `medwss.counterfactual.train`. Both modules re-export their config.
"""

from __future__ import annotations

from pydantic import Field

from medwss.config import StrictConfig


class ClassifierConfig(StrictConfig):
    """Classifier training settings (configs/coin_classifier.yaml)."""

    channels: tuple[int, int, int, int] = (16, 32, 64, 128)
    """MONAI ResNet block widths (one basic block per stage)."""
    stem_stride: int = 2
    """Stride of the 3×3 stem (2: 64-px slices give 4×4 last-stage features)."""
    epochs: int = 8
    """Passes over the training slices."""
    batch_size: int = 32
    """Slices per step."""
    lr: float = 1e-3
    """Peak learning rate (one-cycle schedule, AdamW)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    augment: bool = True
    """Left–right flips, gain and Gaussian noise (`PRESETS["classifier"]`), on the device. The noise makes the
    classifier less sensitive to faint, image-wide perturbations, the cheapest (and wrong) way for a
    counterfactual generator to flip its decision."""
    seed: int = 0
    """Seed of the weights, the batch order and the augmentations."""
    device: str = "auto"
    """Where training runs (``auto``: the GPU when there is one); the model is returned on the CPU."""
    amp: bool = True
    """bfloat16 autocast on CUDA (no effect on the CPU)."""


class CoinConfig(StrictConfig):
    """COIN settings (configs/coin.yaml); paper: λ_adv 1, λ_kl 1–5, λ_rec 1, λ_tv 5e-5–0.05, Adam 2e-4, betas (0, 0.999)."""

    iterations: int = Field(500, ge=1)
    eval_every: int = Field(25, ge=1)
    """Iterations per round: a history row (losses averaged over the round) and a checkpoint each round."""
    batch_size: int = 16
    """Abnormal and normal slices drawn per step (each)."""
    lr: float = 5e-4
    """Adam learning rate of generator and discriminator."""
    betas: tuple[float, float] = (0.0, 0.999)
    """Adam betas."""
    lambda_adv: float = 1.0
    """Weight of the LSGAN generator loss (the counterfactual looks like a real normal slice)."""
    lambda_kl: float = 2.0
    """Weight of the KL term flipping the frozen classifier's decision to normal."""
    lambda_rec: float = 100.0
    """Weight of the L1 distance between the slice and its counterfactual (change as little as possible)."""
    lambda_cyc: float = 5.0
    """Weight of the cycle L1 terms (a counterfactual or a normal slice passes unchanged)."""
    lambda_tv: float = 1.0
    """Weight of the total variation of the change |x − x_cf|."""
    d_steps: int = 1
    """Discriminator updates per iteration."""
    g_steps: int = 1
    """Generator updates per iteration."""
    decision_threshold: float = 0.5
    """Classifier probability at which a training slice counts as abnormal (forms the two pools)."""
    gen_channels: tuple[int, ...] = (8, 16, 32, 64)
    """Generator U-Net widths per level."""
    gen_res_units: int = 1
    """Residual units per generator level."""
    smooth_sigma: float = 1.0
    """Standard deviation (pixels) of the Gaussian low-pass on the perturbation; 0: none."""
    disc_channels: tuple[int, ...] = (16, 32, 64)
    """Patch discriminator widths."""
    seed: int = 0
    """Seed of the weights and the batches."""
    device: str = "auto"
    """Where training runs (``auto``: the GPU when there is one); the generator is returned on the CPU."""
    amp: bool = False
    """bfloat16 autocast on CUDA (no effect on the CPU); off by default: the L1 and TV terms of small
    perturbations are weighted by 100 and lose precision in bfloat16."""
