"""medwss: weakly-supervised medical image analysis for CT, MRI and whole-slide images."""

__version__ = "0.1.0"

from medwss.errors import MedwssError  # noqa: E402

__all__ = ["MedwssError", "__version__"]
