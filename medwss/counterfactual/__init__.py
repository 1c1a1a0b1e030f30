"""COIN counterfactual inpainting (Shvetsov et al., 2024) and attribution baselines on 2D slices.

A frozen classifier says which slices are abnormal; a generator learns to *remove* what makes them
abnormal; the segmentation is where the image changed, ``|x − x_cf|``. Modules:

    slices      COIN slice sets from manifests of volumes (shared slicer, named window, label spec)
    synth       synthetic tumours inserted into the kidneys of a real CT
    classifier  the normal/abnormal slice classifier (MONAI ResNet)
    generator   the counterfactual generator (MONAI UNet, residual output)
    discriminator  class-conditioned patch discriminator
    losses      LSGAN, KL flip, reconstruction, cycle, total variation
    train       COIN training loop
    segment     difference maps, thresholds, morphology, volumes
    attribution Grad-CAM, LayerCAM, ScoreCAM, RISE, occlusion (registry by name)
    metrics     counterfactual validity, realism (Fréchet distance, MMD); IoU/Dice: medwss.eval.overlap
    evaluate    scores against ground truth, threshold sweeps, bootstrap intervals
    overlays    PNG panels (image, counterfactual, difference, mask)
    workflow    the manifest-level steps behind `medwss coin`
"""
