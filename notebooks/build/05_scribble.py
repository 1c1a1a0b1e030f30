"""Build notebooks/05_scribble_prostate.ipynb with nbformat (no outputs stored).

.venv/bin/python notebooks/build/05_scribble.py
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(__file__).resolve().parents[1] / "05_scribble_prostate.ipynb"

CELLS = [
    new_markdown_cell(
        "# Scribble-supervised prostate lesion segmentation with size constraints\n\n"
        "Annotators draw a circle inside each lesion instead of outlining it (Trombetta et al., 2024). A segmenter "
        "trained with partial cross-entropy on those few pixels alone marks far too much as lesion; a penalty on the "
        "soft size `s = Σ softmax` outside bounds `[a, b]`, `relu(s − b)² + relu(a − s)²` (Kervadec et al.), "
        "reins it in. This notebook simulates scribbles on multi-site bi-parametric MRI phantoms (T2, ADC, high-b "
        "DWI on different grids), trains, predicts lesion probability maps on the T2 grid, evaluates them, and "
        "compares weak vs full supervision, single models vs ensembles, in vs out of domain."
    ),
    new_code_cell(
        "OUT = 'runs/notebook_scribble'  # output folder\nN = 12  # cases per site pair (6 N cases over 3 sites)\n"
        "SEED = 0\nSCALE = 0.5  # phantom voxel scale",
        metadata={"tags": ["parameters"]},
    ),
    new_code_cell(
        "from pathlib import Path\n\nimport matplotlib.pyplot as plt\nimport numpy as np\nfrom IPython.display import HTML, Markdown, display\n\n"
        "import medwss\nfrom medwss.config import load_config\nfrom medwss.data.manifest import load_manifest, write_manifest\n"
        "from medwss.data.phantoms import generate\nfrom medwss.data.splits import split_cases\n"
        "from medwss.eval.runner import EvaluateConfig, evaluate_manifest, write_outputs\n"
        "from medwss.scribble.annotate import manifest_rows, write_weak_labels\nfrom medwss.scribble.config import ScribbleConfig\n"
        "from medwss.scribble.report import write_shift_report\nfrom medwss.scribble.shift import SHIFT_FRACTIONS, run_shift\n"
        "from medwss.scribble.workflow import predict_cases, select, train_model\n\n"
        "CONFIGS = Path(medwss.__file__).resolve().parents[1] / 'configs'  # the shipped YAML configs\n"
        "out = Path(OUT)\nTINY = N <= 4  # the notebook test runs with N=2: one epoch, ensembles of two\n"
        "EPOCHS, K = (1, 2) if TINY else (30, 3)\n"
        "m = load_manifest(generate('mri', out / 'phantom', n=6 * N, seed=SEED, scale=SCALE, progress=False))\n"
        "# patient-level split of site_a and site_b (train / val / test); site_c is kept unseen\n"
        "splits = split_cases(m.cases, SHIFT_FRACTIONS, seed=SEED, stratify=('site', 'label'), sites=['site_a', 'site_b'])\n"
        "rows = manifest_rows(m)\n"
        "for r in rows:\n    r['split'] = splits[r['case_id']]\n"
        "manifest = write_manifest(rows, out / 'manifest.csv')\nprint(manifest, len(rows), 'cases')"
    ),
    new_markdown_cell(
        "## 1. Weak labels\n`write_weak_labels` (what `medwss scribble make` calls) draws a circle inside each lesion (on every slice it crosses) and "
        "background marks (a ring around each lesion, a few strokes); -1 means unlabelled. Other kinds: "
        "`random_disk`, `centroid_disk`, `skeleton`, `box`."
    ),
    new_code_cell(
        "made = write_weak_labels(load_manifest(manifest), out / 'weak', 'circle', SEED, progress=False)\n"
        "print(f\"weak labels for {made['done']} case(s), {len(made['failed'])} failed\")\n"
        "wm = load_manifest(made['manifest'])\n"
        "from medwss.io import load_volume\ncase = next(c for c in wm.cases if c.label == 1)\n"
        "t2, mask, scr = (load_volume(p).array for p in (case.images['t2'], case.mask, case.scribble))\n"
        "z = int(np.argmax((mask > 0).sum((0, 1))))\nfig, ax = plt.subplots(1, 3, figsize=(10, 3.5))\n"
        "for a, img, title in zip(ax, (t2[..., z], mask[..., z], scr[..., z]), ('T2', 'lesion mask', 'weak label (-1 = unlabelled)')):\n"
        "    a.imshow(np.rot90(img), cmap='gray' if title == 'T2' else 'viridis'); a.set_title(title); a.axis('off')\nplt.show()"
    ),
    new_markdown_cell(
        "## 2. Train with the size constraint\nThe three channels are resampled onto a 56 mm prostate crop of the T2 "
        "grid (zone map `meta_zones`), z-scored per channel, and fed slice by slice to a 2D UNet. Bounds: a "
        "constant prior (10 to 150 mm² per scribbled slice), [0, 0] plus negative cross-entropy on lesion-free cases."
    ),
    new_code_cell(
        "def config(name):  # a shipped config with the notebook's epochs\n"
        "    return load_config(CONFIGS / f'scribble_{name}_2d.yaml', ScribbleConfig).model_copy(update={'epochs': EPOCHS})\n\n"
        "fit = train_model(wm, config('weak_size'), out / 'weak_size', select(wm.cases, ['train']), select(wm.cases, ['val']), progress=False)\n"
        "print({k: v for k, v in fit.items() if not isinstance(v, (list, dict))})"
    ),
    new_markdown_cell(
        "## 3. Predict and evaluate\nOne float32 lesion probability map per case on its T2 (mask) grid, zero outside "
        "the crop — what `medwss evaluate` reads (Dice, case AUROC, lesion AP, PI-CAI style)."
    ),
    new_code_cell(
        "test = select(wm.cases, ['test'])\n"
        "pred = predict_cases(wm, test, [out / 'weak_size' / 'model.pt'], out / 'pred', progress=False, device='auto')\n"
        "print(f\"predictions for {pred['done']} case(s), {len(pred['failed'])} failed\")\n"
        "ecfg = EvaluateConfig(split='test', group_by='site')\n"
        "rows, failures = evaluate_manifest(wm, out / 'pred' / 'predictions', ecfg, progress=False)\n"
        "write_outputs(out / 'eval', rows, failures, ecfg, len(rows) + len(failures))\n"
        "display(Markdown((out / 'eval' / 'summary.md').read_text()))"
    ),
    new_markdown_cell(
        "## 4. Domain shift and ensembles\n`run_shift` (what `medwss scribble shift` calls) trains K members per setting on site_a + site_b and "
        "tests in-domain and on site_c: weak + size, weak partial CE only, full masks."
    ),
    new_code_cell(
        "names = ('weak_size', 'full') if TINY else ('weak_size', 'weak_pce', 'full')  # the test run skips partial CE alone\n"
        "settings = {name: config(name) for name in names}\n"
        "record = run_shift(wm, settings, out / 'shift', ['site_a', 'site_b'], K, progress=False)\n"
        "html = write_shift_report(wm, record, out / 'shift')\n"
        "display(Markdown((out / 'shift' / 'report.md').read_text()))\nprint('HTML report:', html)"
    ),
]


def main() -> None:
    nb = new_notebook(
        cells=CELLS, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    nbformat.write(nb, OUT)
    print(OUT)


if __name__ == "__main__":
    main()
