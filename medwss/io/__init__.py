"""Reading and writing images: volumes (NIfTI, NRRD/MHA, DICOM) and whole-slide images."""

from medwss.io.info import describe, kind_of
from medwss.io.slide import Slide, open_slide
from medwss.io.volume import Volume
from medwss.io.volumes import load_volume, save_nifti

__all__ = ["Slide", "Volume", "describe", "kind_of", "load_volume", "open_slide", "save_nifti"]
