"""Scikit-learn compatible Siamese (twin) network classifiers on PyTorch and skorch."""

from ._base import TrainingDivergedError
from ._classifier import SiameseClassifier

__version__ = "0.1.0.dev0"

__all__ = ["SiameseClassifier", "TrainingDivergedError", "__version__"]
