"""The top-level commands: name → (the `medwss.cli` module that registers it, its one-line help).

`medwss.cli.main` reads this table to build only the parser of the command a command line names
(``medwss tile --help`` imports `medwss.cli.tile` and nothing of COIN's torch code) and stub parsers
for the command list of ``medwss --help``; each module takes its help line from here, so the two
cannot differ.
"""

from __future__ import annotations

COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("info", "describe a slide or a volume"),
    "manifest": ("manifest", "check or build manifests"),
    "phantom": ("phantom", "generate synthetic slides or volumes with ground truth"),
    "tile": ("tile", "detect tissue and tile every case of a manifest"),
    "embed": ("embed", "extract patch embeddings into HDF5 feature bags"),
    "encoder": ("encoder", "train encoders on your own tiles"),
    "mil": ("mil", "train and apply MIL aggregators (INSIGHT, ABMIL, ...)"),
    "pseudo": ("pseudo", "pseudo-labels from tags, boxes, scribbles, points"),
    "evaluate": ("evaluate", "score probability maps: Dice, HD95/ASSD/NSD, lesion AP/FROC, case AUROC"),
    "scribble": ("scribble", "scribble-supervised segmentation (lesions or structures) with size constraints"),
    "demo": ("demo", "run the end-to-end demo on phantoms (minutes on a CPU)"),
    "al": ("al", "active learning: select slices to annotate, ingest, retrain"),
    "coin": ("coin", "COIN counterfactual inpainting and attribution baselines"),
    "export": ("nnunet", "export datasets for other tools (nnU-Net)"),
}
"""In the order ``medwss --help`` lists them."""


def command_help(name: str) -> str:
    """The one-line help of the top-level command `name`."""
    return COMMANDS[name][1]
