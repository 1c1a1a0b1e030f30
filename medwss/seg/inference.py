"""Sliding-window inference: one function for every dense prediction of a whole volume or slice.

A network trained on patches (3D segmenters on crop grids, the COIN generator on ``size`` ×
``size`` slices) is applied to an image of any size by MONAI's `sliding_window_inference`: windows
of the training patch size (`roi_size`), overlapping by `overlap` (fraction of the window),
blended with a Gaussian importance map (``sigma_scale`` 0.125, as nnU-Net does), so window borders,
where a convolutional network sees zero padding, weigh little. The windows run on the model's
device (``sw_device``); the image and the stitched output stay in host memory (``device="cpu"``),
so only ``sw_batch_size`` windows are ever on the GPU and a 512×512×300 CT needs about three
float32 copies of the volume in RAM (input, blended output, weight map) instead of every network
activation at full size. An image smaller than the window is zero-padded (centred) to one window
and cropped back. With a window at least as large as the image there is one window and the
result equals whole-image inference on the centred, padded image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

__all__ = ["padded_size", "resolve_roi", "segment_probs", "sliding_window"]


def padded_size(size: int, multiple: int) -> int:
    """`size` rounded up to a multiple of `multiple` (at least one multiple)."""
    return max(multiple, -(-int(size) // multiple) * multiple)


def resolve_roi(
    roi_size: Sequence[int | None] | int | None, spatial_shape: Sequence[int], multiple: int = 1
) -> tuple[int, ...]:
    """The window size: `roi_size` per axis (None or ≤ 0: the whole axis), rounded up to `multiple`.

    Args:
        roi_size: Window size (one int for every axis, or one per axis); None: the whole image.
        spatial_shape: The image's spatial shape.
        multiple: Every window side is a multiple of it (a U-Net with L levels needs ``2 ** (L - 1)``).
    """
    n = len(spatial_shape)
    if roi_size is None:
        sizes: list[int | None] = [None] * n
    elif isinstance(roi_size, int):
        sizes = [roi_size] * n
    else:
        sizes = list(roi_size)
        if len(sizes) != n:
            raise ValueError(f"roi_size {tuple(roi_size)} has {len(sizes)} axes, the image {n}")
    out = []
    for r, s in zip(sizes, spatial_shape, strict=True):
        side = int(s) if r is None or int(r) <= 0 else int(r)
        out.append(padded_size(side, multiple))
    return tuple(out)


def sliding_window(
    predictor: Callable[..., torch.Tensor],
    inputs: torch.Tensor,
    roi_size: Sequence[int],
    overlap: float = 0.25,
    *,
    sw_device: torch.device | str = "cpu",
    sw_batch_size: int = 1,
    mode: str = "gaussian",
    with_coord: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """MONAI's sliding-window inference with the windows on `sw_device` and the output on the host.

    Args:
        predictor: Maps windows (N, C, *roi) to outputs (N, K, *roi); with `with_coord` it is called
            as ``predictor(windows, slices)`` where ``slices[i][0]`` is the window's batch index.
        inputs: (B, C, *S) on the host (any device works; it is not moved as a whole).
        roi_size: Window size per spatial axis (see `resolve_roi`).
        overlap: Overlap between neighbouring windows, a fraction in [0, 1).
        sw_device: Where the windows (and the network) run.
        sw_batch_size: Windows per network call.
        mode: ``gaussian`` (default) or ``constant`` blending.

    Returns:
        (B, K, *S) float32 on the CPU.
    """
    from monai.inferers import sliding_window_inference

    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    out = sliding_window_inference(
        inputs,
        tuple(int(r) for r in roi_size),
        sw_batch_size,
        predictor,
        overlap=overlap,
        mode=mode,
        sw_device=torch.device(sw_device),
        device=torch.device("cpu"),
        progress=progress,
        with_coord=with_coord,
    )
    return torch.as_tensor(out).float()


def _model_device(model: torch.nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def segment_probs(
    model: torch.nn.Module,
    image: np.ndarray,
    roi_size: Sequence[int | None] | int | None,
    overlap: float = 0.25,
    *,
    multiple: int = 1,
    device: torch.device | str | None = None,
    sw_batch_size: int = 1,
    mode: str = "gaussian",
) -> np.ndarray:
    """Class probabilities (K, *S) of a segmenter on one image (C, *S), by sliding windows.

    The softmax of each window is blended (Gaussian weights), the image stays in host memory and the
    result is a host array.

    Args:
        model: Maps (N, C, *roi) to logits (N, K, *roi); put in eval mode.
        image: (C, *S) float array.
        roi_size: The training patch size (see `resolve_roi`; None: one window over the whole image).
        overlap: Window overlap fraction.
        multiple: Window sides are rounded up to it (`medwss.seg.networks.size_multiple`).
        device: Where the windows run (default: the model's device; the model is moved there).
        sw_batch_size: Windows per network call.
        mode: Blending, ``gaussian`` or ``constant``.
    """
    arr = np.asarray(image, dtype=np.float32)
    dev = _model_device(model) if device is None else torch.device(device)
    model = model.to(dev).eval()
    roi = resolve_roi(roi_size, arr.shape[1:], multiple)

    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(x).float(), 1)

    x = torch.from_numpy(arr)[None]
    probs = sliding_window(predict, x, roi, overlap, sw_device=dev, sw_batch_size=sw_batch_size, mode=mode)
    return probs[0].numpy()
