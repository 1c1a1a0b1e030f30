"""Build notebooks/04_coin_counterfactuals.ipynb with nbformat (no outputs stored).

.venv/bin/python notebooks/build/04_coin.py
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(__file__).resolve().parents[1] / "04_coin_counterfactuals.ipynb"

CELLS = [
    new_markdown_cell(
        "# COIN: tumour masks from image-level labels by counterfactual inpainting\n\n"
        "A classifier learns which CT slices hold a kidney tumour. A generator then learns to *remove* whatever "
        'makes the classifier say "abnormal", changing the slice as little as it can; where it changed the '
        "slice, `|x − x_cf|`, is the tumour mask (Shvetsov et al., 2024). This notebook runs the three steps "
        "(`medwss.counterfactual.workflow`, what `medwss coin ...` calls) on phantom CT, then looks at synthetic "
        "tumours in the kidneys of a real CT and at the attribution baselines."
    ),
    new_code_cell(
        "OUT = 'runs/notebook_coin'  # output folder\nN = 24  # phantom CT scans\nSEED = 0\nSCALE = 1.0  # phantom voxel scale",
        metadata={"tags": ["parameters"]},
    ),
    new_code_cell(
        "from pathlib import Path\n\nimport numpy as np\nfrom IPython.display import Image, display\n\n"
        "from medwss.counterfactual import workflow as coin\nfrom medwss.counterfactual.classifier import ClassifierConfig\n"
        "from medwss.counterfactual.segment import MaskSettings\nfrom medwss.counterfactual.slices import SliceSpec\n"
        "from medwss.counterfactual.train import CoinConfig\nfrom medwss.data.manifest import load_manifest\n"
        "from medwss.data.phantoms import generate\n\n"
        "out = Path(OUT)\nTINY = N <= 4  # the notebook test runs with N=2: few epochs and iterations\n"
        "EPOCHS, ITERS = (2, 10) if TINY else (10, 800)\n"
        "manifest = generate('ct', out / 'phantom', n=N, seed=SEED, scale=SCALE, progress=False)\n"
        "cases = load_manifest(manifest).cases\n"
        "split = 'all' if TINY else 'train'  # train on every case, or on the train split\nprint(manifest, len(cases), 'cases')"
    ),
    new_markdown_cell(
        "## 1. Slice classifier\nAxial slices through the kidneys (label 2 and 3), CT window −160…240 HU, 64×64 pixels; "
        "a slice is abnormal when it holds tumour voxels (label 4)."
    ),
    new_code_cell(
        "spec = SliceSpec(labels={'kidney': [2, 3], 'tumour': [4]}, lesion='tumour', roi='kidney', window=(-160.0, 240.0))\n"
        "clf = coin.classifier_step(cases, spec, ClassifierConfig(epochs=EPOCHS, seed=SEED), out / 'clf', False, split)\n"
        "print(f\"classifier on {clf['n_slices']} slices ({clf['n_abnormal']} abnormal); model: {out / 'clf' / 'classifier.pt'}\")"
    ),
    new_markdown_cell(
        "## 2. Counterfactual generator\nLSGAN + KL flip toward normal + L1 reconstruction and cycle + total variation "
        "(weights in `configs/coin.yaml`)."
    ),
    new_code_cell(
        "gen = coin.coin_step(cases, out / 'clf' / 'classifier.pt', CoinConfig(iterations=ITERS, seed=SEED), out / 'coin', False, split)\n"
        "print(f\"generator: {out / 'coin' / 'generator.pt'} (trained on {gen['n_slices']} slices)\")"
    ),
    new_markdown_cell(
        "## 3. Segment\nOne NIfTI mask per scan (source affine) and a PNG per scan: image, counterfactual, difference, mask."
    ),
    new_code_cell(
        "seg = coin.segment_step(cases, out / 'clf' / 'classifier.pt', out / 'coin' / 'generator.pt',\n"
        "                        MaskSettings(threshold=0.25), out / 'seg', False)\n"
        "print({k: v for k, v in seg.items() if k in ('n_cases', 'n_slices', 'iou', 'validity')})\n"
        "pngs = sorted((out / 'seg' / 'overlays').glob('*.png'))\nfor p in pngs[:3]:\n    display(Image(filename=str(p)))"
    ),
    new_markdown_cell(
        "## 4. Baselines under the same protocol\nGrad-CAM (MONAI) and occlusion here; the benchmark runs all five."
    ),
    new_code_cell(
        "base = coin.baselines_step(cases, out / 'clf' / 'classifier.pt', ['gradcam', 'occlusion'], MaskSettings(), out / 'base', False)\n"
        "import json\nprint(json.dumps(base['methods'], indent=1))"
    ),
    new_markdown_cell(
        "## 5. Synthetic tumours in a real CT\nThe 23 kidney slices of the example CT, augmented, with blob tumours "
        "of random size, outline and contrast (the benchmark `benchmarks/coin_kidney.py` trains on thousands of these)."
    ),
    new_code_cell(
        "import matplotlib.pyplot as plt\n\nfrom medwss.counterfactual.slices import SliceSpec\n"
        "from medwss.counterfactual.synth import load_kidney_source, make_kidney_slices\nfrom medwss.io.volumes import load_volume\n\n"
        "real = Path('../shared/data/real/volumes') if Path('../shared/data/real/volumes').exists() else Path('/work/shared/data/real/volumes')\n"
        "if (real / 'example_ct_sm.nii.gz').exists():\n"
        "    src = load_kidney_source(load_volume(real / 'example_ct_sm.nii.gz'), load_volume(real / 'example_seg.nii.gz'), SliceSpec())\n"
        "    s = make_kidney_slices(src, 8, seed=SEED)\n"
        "    fig, axes = plt.subplots(1, 8, figsize=(16, 2.4))\n"
        "    for ax, img, m, y in zip(axes, s.images[:, 0], s.masks, s.labels):\n"
        "        ax.imshow(img.T, cmap='gray', vmin=-1, vmax=1, origin='lower')\n"
        "        if m.any():\n            ax.contour(m.T.astype(float), [0.5], colors='r', origin='lower')\n"
        "        ax.set_title('abnormal' if y else 'normal'); ax.axis('off')\n    plt.show()\n"
        "else:\n    print('real CT not found; skipped')"
    ),
]


def build() -> Path:
    nb = new_notebook(
        cells=CELLS, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    nbformat.write(nb, OUT)
    return OUT


if __name__ == "__main__":
    print(build())
