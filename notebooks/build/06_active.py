"""Build notebooks/06_active_learning.ipynb with nbformat (no outputs stored).

.venv/bin/python notebooks/build/06_active.py
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(__file__).resolve().parents[1] / "06_active_learning.ipynb"

CELLS = [
    new_markdown_cell(
        "# Slice-based active learning with a contrastive-metric Coreset\n\n"
        "Annotating a whole CT volume takes hours; annotating a few well-chosen *slices* takes minutes. Following "
        "Vepa et al. (NeurIPS 2024), `medwss al` learns a slice metric with NT-Xent whose positives also include other "
        "slices of the same volume (weight 0.35) and of the same patient (0.05), then picks slices by k-center greedy "
        "(Coreset) in that metric. This notebook runs the rounds an annotation team runs — init, select, annotate "
        "(here a script plays the annotator), ingest, train, select again — and then a small simulated learning curve."
    ),
    new_code_cell(
        "OUT = 'runs/notebook_active'  # output folder\nN = 8  # phantom CT cases (the pool is their train/val slices)\n"
        "SEED = 0\nSCALE = 0.5  # phantom voxel scale (0.5: 48×48×24 volumes)",
        metadata={"tags": ["parameters"]},
    ),
    new_code_cell(
        "import csv\nfrom pathlib import Path\n\nimport matplotlib.pyplot as plt\nimport numpy as np\n"
        "from IPython.display import Image, display\n\n"
        "from medwss.active.pool import SliceReader\n"
        "from medwss.active.rounds import ingest_annotations, init_project, project_status, select_round, train_model\n"
        "from medwss.active.simulate import SimulateConfig, simulate_from_manifest\nfrom medwss.active.state import ALConfig, ALState\n"
        "from medwss.data.labels import save_label_map\nfrom medwss.data.phantoms import generate\nfrom medwss.io import load_volume\n\n"
        "out = Path(OUT)\nTINY = N <= 4  # the notebook test runs with N=2: one-epoch trainings\n"
        "manifest = generate('ct', out / 'phantom', n=max(N, 4), seed=SEED, scale=SCALE, progress=False)\n"
        "CLASSES = [[1], [2, 3], [7]]  # liver, kidneys (right + left), spleen\n"
        "cfg = {'classes': CLASSES, 'num_classes': 4, 'window': [-100.0, 150.0], 'thumb_size': 32 if TINY else 48, 'seed': SEED,\n"
        "       'metric': {'epochs': 1 if TINY else 20, 'batch_size': 64},\n"
        "       'seg': {'channels': [8, 16, 32], 'dropout': 0.1, 'epochs': 1 if TINY else 10, 'batch_size': 4, 'lr': 0.01, 'augment': False},\n"
        "       'min_steps': 0 if TINY else 150}\n"
        "cfg = ALConfig.model_validate(cfg)  # the keys of configs/al.yaml\nstate = out / 'state'\nprint(manifest)"
    ),
    new_markdown_cell(
        "## 1. Start a project\n`init_project` (`medwss al init`) cuts the manifest's train/val volumes into axial slices (the pool), "
        "keeping patient, volume and slice index, and writes a state folder. Everything the project knows lives there."
    ),
    new_code_cell(
        "import shutil\nshutil.rmtree(state, ignore_errors=True)\n"
        "project, skipped = init_project(manifest, state, cfg, progress=False)\n"
        "print(f'pool: {len(project.pool)} slices of {len({r.volume for r in project.pool.refs})} volumes; skipped: {skipped}')"
    ),
    new_markdown_cell(
        "## 2. Select slices to annotate\n`select_round` (`medwss al select`) trains the contrastive metric once (cached in "
        "`state/features/`), runs k-center greedy in it and exports the chosen slices as 2D NIfTI that keep their "
        "position in the scanner (they open over the full volume in ITK-SNAP or 3D Slicer), with PNG previews, a CSV "
        "and instructions."
    ),
    new_code_cell(
        "rec = select_round(project, '3%', progress=False)\n"
        "print(f\"round {rec['round']}: {len(rec['selected'])} slices by {rec['strategy']}\")\n"
        "export = Path(rec['export'])\nrows = list(csv.DictReader(open(export / 'selection.csv')))\n"
        "print((export / 'README.txt').read_text())\n"
        "fig, axes = plt.subplots(1, len(rows), figsize=(2.5 * len(rows), 2.7))\n"
        "for ax, r in zip(np.atleast_1d(axes), rows):\n"
        "    ax.imshow(plt.imread(export / 'previews' / f\"{r['slice_id']}.png\")); ax.set_title(r['slice_id'], fontsize=8); ax.axis('off')\n"
        "plt.show()"
    ),
    new_markdown_cell(
        "## 3. Annotate (a script plays the annotator) and ingest\nHere the annotator copies the phantom's ground truth "
        "onto each exported slice and saves it on the slice's grid as `<slice_id>_label.nii.gz`. For one slice it "
        "draws scribbles instead (-1 = unlabelled; a uint8 file may use 255). Label files are written the way medwss "
        "writes every label map: int16 NIfTI, -1 = unlabelled. A file saved on the wrong grid is rejected with a "
        "message that names it; the good ones are ingested."
    ),
    new_code_cell(
        "ann = out / 'annotations_round1'\nproject = ALState(state)\npool = {r.slice_id: r for r in project.pool.refs}\n"
        "reader = SliceReader(None, project.config.label_spec)  # ground truth, axial slices, classes mapped\n"
        "for i, r in enumerate(rows):\n"
        "    img = load_volume(export / 'images' / f\"{r['slice_id']}.nii.gz\")\n"
        "    ref = pool[r['slice_id']]\n"
        "    lab = reader.label(ref)\n"
        "    if i == 0:  # scribble: keep every fourth row of the mask, the rest unlabelled\n"
        "        lab[np.arange(lab.shape[0]) % 4 != 0] = -1\n"
        "    save_label_map(lab[:, :, None], ann / f\"{r['slice_id']}_label.nii.gz\", img.affine)\n"
        "moved = img.affine.copy(); moved[2, 3] += 6.0  # saved one slice too high\n"
        "save_label_map(lab[:, :, None], out / 'wrong' / f\"{r['slice_id']}_label.nii.gz\", moved)\n"
        "for folder in (out / 'wrong', ann):\n"
        "    ids, rejected = ingest_annotations(project, folder)\n"
        "    print(f'{folder.name}: ingested {len(ids)}, rejected {len(rejected)}', *rejected, sep='\\n  ')"
    ),
    new_markdown_cell(
        "## 4. Train, and select the next round\n`train_model` (`medwss al train`) uses CE + Dice on full masks, and partial CE + the size "
        "penalty as soon as scribbles are present. It checkpoints every epoch and resumes if interrupted. Uncertainty "
        "strategies (entropy, margin, BALD) use this model from round two on."
    ),
    new_code_cell(
        "fit = train_model(project, progress=False)\nprint(f\"trained on {fit['annotated']} slices ({', '.join(fit['kinds'])})\")\n"
        "rec = select_round(project, '2', 'bald', progress=False)\nprint(f\"round {rec['round']}: {len(rec['selected'])} slices by {rec['strategy']}\")\n"
        "st = project_status(project)\n"
        "print(f\"rounds {st['rounds']}; selected {st['selected']}; annotated {st['annotated']} ({st['annotated_percent']:.1f}%); \"\n"
        "      f\"pending {len(st['pending'])}; kinds {', '.join(st['kinds'])}; model {st['model']}\")"
    ),
    new_markdown_cell(
        "## 5. Simulated learning curves\n`simulate_from_manifest` (`medwss al simulate`) repeats rounds with an oracle (the ground truth, or "
        "scribbles drawn from it) and scores each round's model by 3D Dice on held-out test volumes. The full "
        "comparison (7 strategies, 3 seeds, full and scribble annotations, and the real CT) is "
        "`benchmarks/al_curves.py`; its results are in the README."
    ),
    new_code_cell(
        "sim = {'strategies': ['random', 'coreset', 'contrastive_coreset'], 'seeds': [SEED] if TINY else [SEED, SEED + 1, SEED + 2],\n"
        "       'modes': ['full'], 'rounds': 2 if TINY else 4, 'budget': '1%', 'al': cfg}\n"
        "result = simulate_from_manifest(manifest, SimulateConfig.model_validate(sim), out / 'simulate', progress=False)\n"
        "for row in result['summary']:\n"
        "    print(f\"{row['mode']:8s} {row['strategy']:20s}\", *(f'{p:.1f}%:{d:.3f}' for p, d in zip(row['percent'], row['dice_mean'])))\n"
        "display(Image(filename=str(result['plot'])))"
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
