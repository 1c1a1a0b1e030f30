"""CPAL: prototype bank, context prototypes, prototype-aware maps, fusion and L1 consistency."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medwss.pseudo.cpal import PrototypeBank, consistency_l1, cpal_maps, fuse_cam_pam, prototype_activation


def _scene(rng):
    feats = rng.normal(0, 0.1, (4, 16, 16)).astype(np.float32)
    feats[0, :, :8] += 1.0  # class 1 region, two contexts (top/bottom)
    feats[1, :8, :8] += 1.0
    feats[2, :, 8:] += 1.0  # class 2 region
    cams = np.zeros((2, 16, 16), np.float32)
    cams[0, 2:6, 2:6] = 1.0  # CAM covers only part of class 1 (top context)
    cams[0, 10:12, 2:4] = 0.8  # and a little of the bottom context
    cams[1, 4:12, 10:14] = 1.0
    return feats, cams


def test_bank_and_context_prototypes(rng):
    feats, cams = _scene(rng)
    bank = PrototypeBank(2, 4, size=50)
    bank.update(feats, cams, threshold=0.7)
    assert len(bank.store[0]) == 16 + 4 and len(bank.store[1]) == 32
    for _ in range(3):
        bank.update(feats, cams)
    assert len(bank.store[1]) == 50  # FIFO cap
    protos = bank.context_prototypes(n_contexts=2)
    assert [p.shape for p in protos] == [(2, 4), (2, 4)]
    empty = PrototypeBank(1, 4).context_prototypes()
    assert empty[0].shape == (0, 4)


def test_pam_completes_cam(rng):
    feats, cams = _scene(rng)
    bank = PrototypeBank(2, 4)
    bank.update(feats, cams)
    protos = bank.context_prototypes(2)
    pam = prototype_activation(torch.from_numpy(feats), [torch.from_numpy(p) for p in protos])
    assert pam.shape == (2, 16, 16)
    assert pam[0, :, :8].mean() > pam[0, :, 8:].mean() + 0.2  # whole class-1 region, not only the CAM
    fused = cpal_maps(feats, cams, protos, tags=np.array([1.0, 0.0]))
    assert (fused[1] == 0).all() and fused[0, 12:16, 0:8].mean() > cams[0, 12:16, 0:8].mean()


def test_fuse_and_consistency():
    cam, pam = torch.tensor([0.0, 1.0, 0.5]), torch.tensor([1.0, 1.0, 0.0])
    assert torch.allclose(fuse_cam_pam(cam, pam, 0.25), torch.tensor([0.25, 1.0, 0.375]))
    assert float(consistency_l1(cam, pam)) == pytest.approx(0.5)
