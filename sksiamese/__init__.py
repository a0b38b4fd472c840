"""Scikit-learn compatible Siamese (twin) network classifiers on PyTorch and skorch."""

from ._base import TrainingDivergedError
from ._classifier import SiameseClassifier
from ._pair_classifier import SiamesePairClassifier
from ._persistence import load

__version__ = "0.1.0.dev0"

__all__ = [
    "SiameseClassifier",
    "SiamesePairClassifier",
    "TrainingDivergedError",
    "__version__",
    "load",
]
