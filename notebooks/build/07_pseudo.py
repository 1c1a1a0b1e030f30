"""Build notebooks/07_pseudo_labels.ipynb (run: python notebooks/build/07_pseudo.py); outputs are not stored."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    (
        "md",
        """# 07 · Pseudo-labels from cheap labels (box prompts, DHR, WSSS-BED, AGMM, CPAL, DuPL, PAR)

Six weakly-supervised segmentation ideas from natural images, made weight-free for CT. We derive
cheap labels (slice tags, points, scribbles, boxes) from phantom organ maps, turn them into
pseudo-label maps with each method (`-1` = ignore), and score them against the ground truth:
Dice/mIoU on the labelled pixels, coverage, and minor-class recall.""",
    ),
    (
        "code",
        """OUT = "runs/notebook_07"
N = 4
SEED = 0
SCALE = 0.5""",
        ["parameters"],
    ),
    (
        "code",
        """from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from medwss.data.manifest import load_manifest
from medwss.data.phantoms import generate
from medwss.pseudo import workflow as wf
from medwss.pseudo.methods import PSEUDO_METHODS, config_for
from medwss.pseudo.outputs import evaluate

out = Path(OUT)
manifest = generate("ct", out / "ct", n=N, seed=SEED, scale=SCALE, progress=False)
# every method has its own config class (PSEUDO_METHODS.get(name).config); each takes the settings it reads
settings = {"labels": "ct_phantom", "iterations": 20, "seed": SEED}
cfgs = {name: config_for(name, settings, only_read=True) for name in PSEUDO_METHODS}
cfg = cfgs["cam"]  # the shared part (label spec, slicing, seed) is the same in every method's config
cases, failed = wf.load_cases(load_manifest(manifest), cfg)
print(len(cases), "cases,", sum(len(c.images) for c in cases), "slices; classes:", cfg.classes())""",
    ),
    (
        "md",
        """## Activation maps and the plain threshold

Weight-free activation maps: for every class, intensity likelihood (HU statistics of three
points per class) times closeness to the points. Thresholding them at 0.5 is the baseline.""",
    ),
    (
        "code",
        """cams, feats = wf.compute_cams(cases, cfgs["cam"])  # the CAM settings are shared: one set of maps
labels = {"cam": wf.cam_baseline(cams, cfgs["cam"])}
labels["box"] = wf.run_box(cases, cfgs["box"].model_copy(update={"segmenter": "box", "ring": 0}))
labels["box+random_walker"] = wf.run_box(cases, cfgs["box"])
labels["dhr"] = wf.run_dhr(cases, cams, cfgs["dhr"])
labels["fuse"], tau = wf.run_fuse(cases, cams, cfgs["fuse"])
labels["par"] = wf.run_par(cases, cams, cfgs["par"])
labels["cpal"] = wf.run_cpal(cases, cams, feats, cfgs["cpal"])
labels["agmm_refine"] = wf.run_agmm(cases, cfgs["agmm"], offline=True)
labels["dupl"], history = wf.run_dupl(cases, cams, cfgs["dupl"])
print(f"fusion threshold from the val sweep: {tau:.2f}; DuPL threshold at the end: {history[-1]['tau']:.2f}")""",
    ),
    (
        "code",
        """print(f"{'method':<20}{'Dice':>7}{'mIoU':>7}{'cover':>7}{'minor':>7}")
for name, labs in labels.items():
    m = evaluate(cases, labs, cfg)["pooled"]
    print(f"{name:<20}{m['mean_dice']:7.3f}{m['miou']:7.3f}{m['coverage']:7.3f}{m['minor_recall']:7.3f}")""",
    ),
    ("md", """## One slice, side by side (grey = ignore)"""),
    (
        "code",
        """c = cases[0]
k = int(np.argmax([(g > 0).sum() for g in c.gts]))
show = ["cam", "box+random_walker", "dhr", "fuse", "par", "dupl"]
fig, axes = plt.subplots(1, len(show) + 2, figsize=(2.2 * (len(show) + 2), 2.6))
axes[0].imshow(c.images[k][0].T, cmap="gray", origin="lower"); axes[0].set_title("CT")
axes[1].imshow(c.gts[k].T, cmap="tab10", vmin=-1, vmax=9, origin="lower"); axes[1].set_title("truth")
for ax, name in zip(axes[2:], show):
    ax.imshow(labels[name][0][k].T, cmap="tab10", vmin=-1, vmax=9, origin="lower"); ax.set_title(name)
for ax in axes:
    ax.axis("off")
plt.tight_layout()""",
    ),
    (
        "md",
        """## A method by name, and its files

Every registered method runs by name: `create_method(name, cfg, opts)` binds it to its config
(`fit(cases)` runs it over all cases, `predict(case)` gives a case's maps; `run_method` does both,
as each `medwss pseudo <method>` subcommand does); `write_outputs` writes int16 NIfTI labels on the
source grid, PNG previews and metrics.""",
    ),
    (
        "code",
        """from medwss.pseudo.methods import MethodOptions, create_method
from medwss.pseudo.outputs import write_outputs

method = create_method("dhr", cfgs["dhr"], MethodOptions(out_dir=out / "dhr")).fit(cases)
dhr = [method.predict(c) for c in cases]
metrics = write_outputs(cases, dhr, out / "dhr", cfgs["dhr"])
print(sorted(p.name for p in (out / "dhr").iterdir()), f"Dice {metrics['pooled']['mean_dice']:.3f}")""",
    ),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook()
    for kind, src, *tags in CELLS:
        cell = new_markdown_cell(src) if kind == "md" else new_code_cell(src)
        if tags:
            cell.metadata["tags"] = tags[0]
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


if __name__ == "__main__":
    path = Path(__file__).resolve().parents[1] / "07_pseudo_labels.ipynb"
    nbformat.write(build(), path)
    print(f"wrote {path}")
