"""Scikit-learn compatible Siamese (twin) network classifiers on PyTorch and skorch."""

import importlib

__version__ = "0.1.0.dev0"

# Public names and the modules that define them. They are imported on first
# use (PEP 562), so that ``import sksiamese`` and the command line's
# ``--help`` do not pay for importing torch.
_PUBLIC = {
    "SiameseClassifier": "._classifier",
    "SiamesePairClassifier": "._pair_classifier",
    "TrainingDivergedError": "._training",
    "load": "._persistence",
}

# The estimator classes register themselves with ``load`` when their modules
# are imported (see ``_persistence.register``).
_ESTIMATORS = ("SiameseClassifier", "SiamesePairClassifier")

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name):
    if name in _PUBLIC:
        if name == "load":
            for estimator in _ESTIMATORS:
                __getattr__(estimator)
        value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_PUBLIC})
