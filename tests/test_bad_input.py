"""Bad input, odd data and broken user modules: a clear error, or a documented
success with valid outputs.

Every case names the estimator (fresh parameters, or one of the fitted models
below), the method and its input, and what must happen: an exception type with
a message matching a regular expression, or ``None`` for a success whose
outputs are then checked (finite, probabilities in [0, 1] summing to 1, labels
from ``classes_``). The ``sksiamese compare`` command has its own table: bad
files give one line on stderr and exit status 2, never a traceback.
"""

import copy
import re
from dataclasses import dataclass, field

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn.utils.validation
import torch
from sklearn.exceptions import NotFittedError

from sksiamese import SiameseClassifier, SiamesePairClassifier, TrainingDivergedError

FAST = dict(
    hidden_layer_sizes=(8,),
    embedding_dim=4,
    max_epochs=2,
    batch_size=16,
    random_state=0,
)

_rng = np.random.RandomState(0)
X = _rng.normal(size=(30, 3))
y = np.repeat([0, 1, 2], 10)

# Pairs (n_pairs, 2, n_features), and the same side by side; same = 1.
same = np.tile([0, 1], 20)
pairs = _rng.normal(size=(40, 2, 3))
pairs[same == 1, 1] = pairs[same == 1, 0] + 0.1 * _rng.normal(size=(20, 3))
flat = pairs.reshape(40, 6)


def _with(values, rows, column, value):
    out = np.array(values, dtype=float)
    out[rows, column] = value
    return out


# -- user modules ---------------------------------------------------------------


class FlatOutput(torch.nn.Module):
    """Returns one number per sample instead of an embedding."""

    def forward(self, x):
        return x.sum(1)


class Raises(torch.nn.Module):
    def forward(self, x):
        raise RuntimeError("boom")


class Linear3(torch.nn.Module):
    """A linear embedding of 3 inputs; ``n_inputs`` must be 3 for X here."""

    def __init__(self, n_inputs=3):
        super().__init__()
        self.layer = torch.nn.Linear(n_inputs, 2)

    def forward(self, x):
        return self.layer(x)


class NaNOutput(Linear3):
    def forward(self, x):
        return self.layer(x) * float("nan")


class NaNAbove100(Linear3):
    """Embeds normally, but returns NaN for rows holding a value above 100."""

    def forward(self, x):
        out = self.layer(x)
        far = (x.abs() > 100).any(1, keepdim=True)
        return torch.where(far, torch.full_like(out, float("nan")), out)


class Frozen(Linear3):
    def __init__(self):
        super().__init__()
        self.layer.requires_grad_(False)


class Detached(Linear3):
    def forward(self, x):
        return self.layer(x).detach()


class IntegerOutput(Linear3):
    def forward(self, x):
        return torch.round(self.layer(x) * 10).long()


class NoParameters(torch.nn.Module):
    def forward(self, x):
        return 2 * x


# Fitted models, built once per module, keyed by name.
FITTED = {
    "mlp": dict(FAST),
    "mlp_standard": dict(FAST, scaling="standard"),
    "binary": dict(FAST),
    "nan_above_100": dict(FAST, encoder=NaNAbove100(), scaling=None),
    "pairs": dict(FAST),
    "pairs_nan_above_100": dict(FAST, encoder=NaNAbove100(), scaling=None),
}


@dataclass
class Case:
    """One row of the table.

    ``estimator`` is a dict of parameters (a fresh ``cls``) or the name of a
    model in FITTED (a copy of it is used).
    """

    id: str
    estimator: object
    method: str
    args: tuple
    error: type | None
    match: str | None = None
    marks: list = field(default_factory=list)
    cls: type = SiameseClassifier


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available")
PARAM = "The {!r} parameter of SiameseClassifier must be"

CASES = [
    # -- the data given to fit --------------------------------------------------
    Case("empty-X", {}, "fit", (np.empty((0, 3)), []), ValueError, r"0 sample\(s\)"),
    Case(
        "one-sample",
        {},
        "fit",
        (X[:1], y[:1]),
        ValueError,
        r"1 sample\(s\) .* minimum of 2 is required",
    ),
    Case(
        "one-class",
        {},
        "fit",
        (X, np.zeros(30)),
        ValueError,
        r"needs samples of at least 2 classes .* got 1 class: \[0\.0\]",
    ),
    Case(
        "class-with-one-sample",
        {},
        "fit",
        (X[:21], y[:21]),
        ValueError,
        r"these classes have only 1: \[2\]",
    ),
    Case(
        "labels-with-NaN",
        {},
        "fit",
        (X, np.r_[y[:-1], np.nan]),
        ValueError,
        "Input y contains NaN",
    ),
    Case(
        "labels-with-None",
        {},
        "fit",
        (X, np.array([*y[:-1], None], dtype=object)),
        ValueError,
        "Unknown label type",
    ),
    Case(
        "continuous-labels",
        {},
        "fit",
        (X, _rng.normal(size=30)),
        ValueError,
        "Unknown label type: continuous",
    ),
    Case(
        "2-D-labels",
        {},
        "fit",
        (X, np.c_[y, y]),
        ValueError,
        r"y should be a 1d array, got an array of shape \(30, 2\)",
    ),
    Case(
        "X-y-lengths-differ",
        {},
        "fit",
        (X, y[:-1]),
        ValueError,
        r"inconsistent numbers of samples: \[30, 29\]",
    ),
    Case(
        "X-with-inf",
        {},
        "fit",
        (_with(X, 4, 1, np.inf), y),
        ValueError,
        "Input X contains infinity",
    ),
    Case(
        "X-with-minus-inf",
        {},
        "fit",
        (_with(X, 0, 0, -np.inf), y),
        ValueError,
        "Input X contains infinity",
    ),
    Case(
        "X-with-words",
        {},
        "fit",
        (np.array([["a", "b", "c"]] * 30, dtype=object), y),
        ValueError,
        "could not convert string to float: 'a'",
    ),
    Case(
        "X-complex",
        {},
        "fit",
        (X + 1j, y),
        ValueError,
        "Complex data not supported",
    ),
    Case(
        "X-sparse",
        {},
        "fit",
        (sp.csr_matrix(X), y),
        TypeError,
        "Sparse data was passed for X, but dense data is required",
    ),
    Case(
        "X-1-D",
        {},
        "fit",
        (X[:, 0], y),
        ValueError,
        "Expected 2D array, got 1D array instead",
    ),
    Case(
        "X-3-D-for-mlp",
        {},
        "fit",
        (X.reshape(30, 3, 1), y),
        ValueError,
        "Found array with dim 3",
    ),
    Case(
        "X-no-features",
        {},
        "fit",
        (np.empty((30, 0)), y),
        ValueError,
        r"0 feature\(s\)",
    ),
    Case(
        "image-shape-does-not-fit",
        {"image_shape": (2, 2)},
        "fit",
        (X, y),
        ValueError,
        r"image_shape=\(2, 2\) does not match X with 3 features",
    ),
    Case(
        "augment-without-images",
        {"augment": True},
        "fit",
        (X, y),
        ValueError,
        "augment=True distorts images",
    ),
    # -- parameters ---------------------------------------------------------------
    Case(
        "batch_size-zero",
        {"batch_size": 0},
        "fit",
        (X, y),
        ValueError,
        re.escape(PARAM.format("batch_size"))
        + r".*range \[4, inf\) or a str among \{'auto'\}. Got 0",
    ),
    Case(
        "batch_size-unknown-string",
        {"batch_size": "large"},
        "fit",
        (X, y),
        ValueError,
        re.escape(PARAM.format("batch_size")) + ".* Got 'large'",
    ),
    Case(
        "batch_size-negative",
        {"batch_size": -8},
        "fit",
        (X, y),
        ValueError,
        re.escape(PARAM.format("batch_size")) + ".* Got -8",
    ),
    Case(
        "max_epochs-zero",
        {"max_epochs": 0},
        "fit",
        (X, y),
        ValueError,
        re.escape(PARAM.format("max_epochs")) + ".* Got 0",
    ),
    Case(
        "unknown-loss",
        {"loss": "hinge"},
        "fit",
        (X, y),
        ValueError,
        re.escape(PARAM.format("loss")) + ".* Got 'hinge'",
    ),
    Case(
        "unknown-distance",
        {"distance": "chebyshev"},
        "fit",
        (X, y),
        ValueError,
        re.escape(PARAM.format("distance")) + ".* Got 'chebyshev'",
    ),
    Case(
        "unknown-encoder",
        {"encoder": "rnn"},
        "fit",
        (X, y),
        ValueError,
        re.escape(PARAM.format("encoder")) + ".* Got 'rnn'",
    ),
    Case(
        "unknown-device",
        {"device": "tpu"},
        "fit",
        (X, y),
        ValueError,
        re.escape("device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got 'tpu'"),
    ),
    Case(
        "unsupported-torch-device",
        {"device": "meta"},
        "fit",
        (X, y),
        ValueError,
        re.escape("device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got 'meta'"),
    ),
    Case(
        "cuda-without-a-GPU",
        {"device": "cuda"},
        "fit",
        (X, y),
        ValueError,
        "device='cuda' was requested but CUDA is not available",
        marks=[NO_CUDA],
    ),
    Case(
        "infinite-margin",
        {"margin": float("inf")},
        "fit",
        (X, y),
        ValueError,
        re.escape(PARAM.format("margin")),
    ),
    Case(
        "NaN-lr",
        {"lr": float("nan")},
        "fit",
        (X, y),
        ValueError,
        re.escape(PARAM.format("lr")),
    ),
    Case(
        "validation_fraction-one",
        {"validation_fraction": 1.0},
        "fit",
        (X, y),
        ValueError,
        re.escape(PARAM.format("validation_fraction")),
    ),
    Case(
        "n_neighbors-zero",
        {"n_neighbors": 0},
        "fit",
        (X, y),
        ValueError,
        re.escape(PARAM.format("n_neighbors")),
    ),
    Case(
        "lr-beyond-float",
        {"lr": 10**400},
        "fit",
        (X, y),
        ValueError,
        re.escape("lr must be a finite float32 number (at most 3.4e38); got 1000"),
    ),
    Case(
        "lr-beyond-float32",
        {"lr": 1e300},
        "fit",
        (X, y),
        ValueError,
        re.escape("lr must be a finite float32 number (at most 3.4e38); got 1e+300"),
    ),
    Case(
        "margin-so-large-the-loss-overflows",
        {"loss": "contrastive", "margin": 1e20},
        "fit",
        (X, y),
        TrainingDivergedError,
        r"Training diverged: .*lower `lr`.*scale the inputs.*smaller `margin`",
    ),
    Case(
        "hidden_layer_sizes-zero-width",
        {"hidden_layer_sizes": (8, 0)},
        "fit",
        (X, y),
        ValueError,
        r"hidden_layer_sizes must be a sequence of positive ints; got \(8, 0\)",
    ),
    Case(
        "hidden_layer_sizes-not-ints",
        {"hidden_layer_sizes": (2.5,)},
        "fit",
        (X, y),
        ValueError,
        "hidden_layer_sizes must be a sequence of positive ints",
    ),
    Case(
        "image_shape-negative",
        {"image_shape": (-1, -3)},
        "fit",
        (X, y),
        ValueError,
        r"image_shape=\(-1, -3\) does not match X with 3 features .* positive",
    ),
    Case(
        "compile-mode-not-a-mode",
        {"compile": {"mode": 3}},
        "fit",
        (X, y),
        ValueError,
        r"compile=\{'mode': 3\} was refused by torch.compile: .*mode=3",
    ),
    Case(
        "references-bool",
        {"references": True},
        "fit",
        (X, y),
        ValueError,
        r"references must be 'all', 'prototypes' or a number of centres per "
        r"class \(an int >= 1\); got True",
    ),
    Case(
        "image_shape-not-whole",
        {"image_shape": (1, 3.7)},
        "fit",
        (X, y),
        ValueError,
        r"image_shape=\(1, 3.7\) does not match X with 3 features .* integers",
    ),
    Case(
        "callbacks-not-callbacks",
        {"callbacks": ["early_stopping"]},
        "fit",
        (X, y),
        TypeError,
        r"callbacks must hold skorch callbacks or \(name, callback\) tuples; got 'e",
    ),
    # -- user modules ------------------------------------------------------------
    Case(
        "module-output-has-wrong-shape",
        {"encoder": FlatOutput()},
        "fit",
        (X, y),
        ValueError,
        r"must return a 2-D tensor .* input of shape \(2, 3\) it returned \(2,\)",
    ),
    Case(
        "module-raises",
        {"encoder": Raises()},
        "fit",
        (X, y),
        ValueError,
        r"The encoder failed on a batch of shape \(2, 3\): boom",
    ),
    Case(
        "module-expects-other-width",
        {"encoder": Linear3(5)},
        "fit",
        (X, y),
        ValueError,
        r"The encoder failed on a batch of shape \(2, 3\)",
    ),
    Case(
        "encoder_params-do-not-fit",
        {"encoder": Linear3, "encoder_params": {"width": 2}},
        "fit",
        (X, y),
        TypeError,
        r"encoder_params=\{'width': 2\} do not fit Linear3",
    ),
    Case(
        "module-outputs-integers",
        {"encoder": IntegerOutput()},
        "fit",
        (X, y),
        ValueError,
        r"must return floating-point embeddings, .* of shape \(2, 3\) it "
        r"returned torch\.int64",
    ),
    *(
        Case(
            f"module-has-no-trainable-parameters-{kind}",
            {"encoder": encoder},
            "fit",
            (X, y),
            ValueError,
            rf"encoder={name} has no parameters to train \(none, or none with "
            r"requires_grad=True\)",
        )
        for kind, name, encoder in [
            ("frozen", "Frozen", Frozen()),
            ("frozen-class", "Frozen", Frozen),
            ("none", "NoParameters", NoParameters()),
        ]
    ),
    # Trainable weights the embeddings do not depend on: with a pair head,
    # only the head would train, silently; without one, backward() fails.
    *(
        Case(
            f"module-detaches-its-output-{loss}",
            {"encoder": Detached(), "loss": loss},
            "fit",
            (X, y),
            ValueError,
            r"encoder=Detached returns embeddings that do not depend on its "
            r"trainable parameters",
        )
        for loss in ("contrastive", "bce")
    ),
    # A frozen encoder under a pair head: the head trains.
    Case(
        "module-frozen-with-a-head",
        {"encoder": Frozen(), "loss": "bce"},
        "fit",
        (X, y),
        None,
    ),
    Case(
        "module-outputs-NaN",
        {"encoder": NaNOutput()},
        "fit",
        (X, y),
        TrainingDivergedError,
        "Training diverged: the loss became nan",
    ),
    # -- odd data that must work ---------------------------------------------------
    Case("huge-margin", {"margin": 1e6}, "fit", (X, y), None),
    Case("all-NaN-column", {}, "fit", (_with(X, slice(None), 1, np.nan), y), None),
    Case("all-blank-X", {}, "fit", (np.full((30, 3), np.nan), y), None),
    Case("constant-features", {}, "fit", (np.ones((30, 3)), y), None),
    Case("one-constant-feature", {}, "fit", (_with(X, slice(None), 0, 7.0), y), None),
    Case("duplicate-rows", {}, "fit", (np.repeat(X[:3], 10, axis=0), y), None),
    Case("values-1e30", {}, "fit", (X * 1e30, y), None),
    Case("values-1e300", {}, "fit", (X * 1e300, y), None),
    Case("float32-values-1e30", {}, "fit", ((X * 1e30).astype(np.float32), y), None),
    Case("one-column-1e30", {}, "fit", (X * [1.0, 1.0, 1e30], y), None),
    Case("numeric-strings", {}, "fit", (X.astype(str).astype(object), y), None),
    Case("boolean-X", {}, "fit", (X > 0, y), None),
    Case("string-labels", {}, "fit", (X, np.array(["a", "b", "c"])[y]), None),
    Case(
        # The rare class rounds to no held-out sample at validation_fraction=0.1.
        "rare-class-2-of-22",
        {},
        "fit",
        (X[:22], np.r_[0, 0, np.ones(20, dtype=int)]),
        None,
    ),
    Case(
        "two-samples-per-class", {}, "fit", (X[[0, 1, 10, 11]], y[[0, 1, 10, 11]]), None
    ),
    # -- a fitted model ------------------------------------------------------------
    Case(
        "predict-before-fit",
        {},
        "predict",
        (X,),
        NotFittedError,
        "This SiameseClassifier instance is not fitted yet",
    ),
    Case(
        "predict-other-n_features",
        "mlp",
        "predict",
        (X[:, :2],),
        ValueError,
        "X has 2 features, but SiameseClassifier is expecting 3 features",
    ),
    Case(
        "predict-1-D",
        "mlp",
        "predict",
        (X[0],),
        ValueError,
        "Expected 2D array, got 1D array instead",
    ),
    Case(
        "predict-3-D",
        "mlp",
        "predict_proba",
        (X.reshape(30, 3, 1),),
        ValueError,
        "Found array with dim 3",
    ),
    Case(
        "predict-empty",
        "mlp",
        "predict",
        (np.empty((0, 3)),),
        ValueError,
        r"0 sample\(s\)",
    ),
    Case(
        "predict-inf",
        "mlp",
        "decision_function",
        (_with(X, 2, 2, np.inf),),
        ValueError,
        "Input X contains infinity",
    ),
    # Prediction leaves infinity to the scaling of the rows, which raises
    # scikit-learn's error for it, with either scaling, beside blanks and in
    # float32 (test_preprocessing: in a later block, and on a GPU).
    Case(
        "transform-minus-inf-standard-scaling",
        "mlp_standard",
        "transform",
        (_with(X, 29, 0, -np.inf),),
        ValueError,
        r"Input X contains infinity or a value too large for dtype\('float64'\)",
    ),
    Case(
        "predict_proba-inf-beside-blanks",
        "mlp",
        "predict_proba",
        (_with(_with(X, 3, 0, np.nan), 5, 1, np.inf),),
        ValueError,
        "Input X contains infinity",
    ),
    Case(
        "predict-inf-float32",
        "mlp",
        "predict",
        (_with(X, 1, 1, np.inf).astype(np.float32),),
        ValueError,
        r"Input X contains infinity or a value too large for dtype\('float32'\)",
    ),
    Case(
        "pair_score-inf",
        "mlp",
        "pair_score",
        (X, _with(X, 0, 2, np.inf)),
        ValueError,
        "Input X contains infinity",
    ),
    Case(
        "score-inf",
        "mlp",
        "score",
        (_with(X, 7, 0, np.inf), y),
        ValueError,
        "Input X contains infinity",
    ),
    Case(
        "partial_fit-inf-after-fit",
        "mlp",
        "partial_fit",
        (_with(X, 4, 2, np.inf), y),
        ValueError,
        "Input X contains infinity",
    ),
    Case(
        "fit_references-inf",
        "mlp",
        "fit_references",
        (_with(X[:4], 1, 0, np.inf), [0, 1, 0, 1]),
        ValueError,
        "Input X contains infinity",
    ),
    Case(
        "predict-beyond-float32-after-standard-scaling",
        "mlp_standard",
        "predict",
        (X * 1e300,),
        ValueError,
        "X holds values too large to scale for float32 computation",
    ),
    # The default robust scaling clips far values smoothly towards +-3.
    Case(
        "predict-beyond-float32-after-robust-scaling",
        "mlp",
        "predict",
        (X * 1e300,),
        None,
    ),
    Case(
        "predict-sparse",
        "mlp",
        "predict",
        (sp.csr_matrix(X),),
        TypeError,
        "Sparse data was passed for X",
    ),
    Case(
        "transform-words",
        "mlp",
        "transform",
        (np.array([["a", "b", "c"]], dtype=object),),
        ValueError,
        "could not convert string to float",
    ),
    Case(
        "module-NaN-at-predict",
        "nan_above_100",
        "predict_proba",
        (np.r_[X[:2], [[500.0, 0.0, 0.0]]],),
        ValueError,
        r"NaN or infinite embeddings for 1 of 3 samples \(the first is row 2\)",
    ),
    Case(
        "module-NaN-in-pair_distance",
        "nan_above_100",
        "pair_distance",
        (np.full((1, 3), 500.0), X[:1]),
        ValueError,
        "NaN or infinite embeddings",
    ),
    Case(
        "pair_distance-rows-differ",
        "mlp",
        "pair_distance",
        (X[:3], X[:4]),
        ValueError,
        "X1 and X2 must have the same number of rows; got 3 and 4",
    ),
    Case(
        "pair_score-rows-differ",
        "mlp",
        "pair_score",
        (X[:5], X[:2]),
        ValueError,
        "X1 and X2 must have the same number of rows; got 5 and 2",
    ),
    Case(
        "fit_references-one-class",
        "mlp",
        "fit_references",
        (X[:3], [4, 4, 4]),
        ValueError,
        r"fit_references needs samples of at least 2 classes for predictions to "
        r"choose from; got 1 class: \[4\]",
    ),
    Case(
        "fit_references-lengths-differ",
        "mlp",
        "fit_references",
        (X[:4], [0, 1, 0]),
        ValueError,
        "X and y have different numbers of samples: 4 and 3",
    ),
    Case(
        "fit_references-NaN-label",
        "mlp",
        "fit_references",
        (X[:4], [0.0, 1.0, np.nan, 1.0]),
        ValueError,
        "Input y contains NaN",
        # scikit-learn's label-type check casts the labels to int on the way.
        marks=[pytest.mark.filterwarnings("ignore:invalid value encountered in cast")],
    ),
    Case(
        "fit_references-other-n_features",
        "mlp",
        "fit_references",
        (X[:4, :2], [0, 1, 0, 1]),
        ValueError,
        "X has 2 features, but SiameseClassifier is expecting 3 features",
    ),
    Case(
        "calibrate_threshold-multiclass",
        "mlp",
        "calibrate_threshold",
        (X, y),
        ValueError,
        "calibrate_threshold is for binary problems; this classifier has 3 classes",
    ),
    Case(
        "calibrate_threshold-unknown-label",
        "binary",
        "calibrate_threshold",
        (X[:6], [0, 1, 7, 0, 1, 0]),
        ValueError,
        r"y contains labels not in classes_: \[7\]",
    ),
    Case(
        "partial_fit-without-classes",
        {},
        "partial_fit",
        (X, y),
        ValueError,
        "classes must be passed on the first call to partial_fit",
    ),
    # -- a fitted model on odd queries: valid outputs ---------------------------
    Case(
        "predict-all-blank-rows",
        "mlp",
        "predict_proba",
        (np.full((2, 3), np.nan),),
        None,
    ),
    Case("predict-far-away-1e30", "mlp", "predict_proba", (X * 1e30,), None),
    Case("pair_distance-far-away-1e30", "mlp", "pair_distance", (X * 1e30, X), None),
    Case("pair_score-far-away-1e30", "mlp", "pair_score", (X * 1e30, X), None),
    Case("predict-int8", "mlp", "predict", (np.rint(X).astype(np.int8),), None),
    Case(
        "fit_references-one-sample-per-class",
        "mlp",
        "fit_references",
        (X[[0, 10, 20]], ["x", "y", "z"]),
        None,
    ),
]


def Pair(*args, **kwargs):
    return Case(*args, **kwargs, cls=SiamesePairClassifier)


SAME_OR_NOT = "y must be 1 \\(or True\\) for pairs of the same kind and 0"
PAIR_CASES = [
    Pair(
        "pairs-middle-axis-3",
        {},
        "fit",
        (_rng.normal(size=(40, 3, 3)), same),
        ValueError,
        r"X of shape \(40, 3, 3\) is not a set of pairs: its second axis must",
    ),
    Pair(
        "pairs-axes-swapped",
        {},
        "fit",
        (pairs.transpose(0, 2, 1), same),
        ValueError,
        r"X of shape \(40, 3, 2\) is not a set of pairs",
    ),
    Pair(
        "pairs-odd-width",
        {},
        "fit",
        (flat[:, :5], same),
        ValueError,
        r"X has 5 feature\(s\) per row, an odd number",
    ),
    *(
        Pair(
            f"pairs-y-{name}",
            {},
            "fit",
            (pairs, np.where(np.arange(len(same)) == 3, bad, same)),
            ValueError,
            f"Input y contains {name}",
            # scikit-learn's message, before any cast of y warns.
            marks=[pytest.mark.filterwarnings("error::RuntimeWarning")],
        )
        for name, bad in [("infinity", np.inf), ("NaN", np.nan)]
    ),
    Pair("pairs-y-0-2", {}, "fit", (pairs, same * 2), ValueError, SAME_OR_NOT),
    Pair(
        "pairs-y-minus-1-1", {}, "fit", (pairs, same * 2 - 1), ValueError, SAME_OR_NOT
    ),
    Pair(
        "pairs-y-words",
        {},
        "fit",
        (pairs, np.array(["no", "yes"])[same]),
        ValueError,
        SAME_OR_NOT + r".* got labels \['no', 'yes'\]",
    ),
    Pair(
        "pairs-y-three-classes",
        {},
        "fit",
        (pairs, np.arange(40) % 3),
        ValueError,
        "Only binary classification is supported: .* got a multiclass target",
    ),
    Pair(
        "pairs-y-one-class",
        {},
        "fit",
        (pairs, np.ones(40)),
        ValueError,
        r"needs both same \(1\) and different \(0\) pairs in y; got only one class",
    ),
    Pair(
        "pairs-y-continuous",
        {},
        "fit",
        (pairs, np.linspace(0, 1, 40)),
        ValueError,
        "Unknown label type: continuous",
    ),
    Pair(
        "pairs-y-NaN",
        {},
        "fit",
        (pairs, np.r_[same[:-1], np.nan]),
        ValueError,
        "Input y contains NaN",
        marks=[pytest.mark.filterwarnings("ignore:invalid value encountered in cast")],
    ),
    Pair(
        "pairs-empty",
        {},
        "fit",
        (np.empty((0, 2, 3)), []),
        ValueError,
        r"0 sample\(s\)",
    ),
    Pair(
        "pairs-of-images-for-mlp",
        {},
        "fit",
        (_rng.normal(size=(40, 2, 3, 3)), same),
        ValueError,
        r"holds pairs of images: use encoder='cnn'",
    ),
    Pair(
        "pairs-unknown-loss",
        {"loss": "triplet"},
        "fit",
        (pairs, same),
        ValueError,
        "The 'loss' parameter of SiamesePairClassifier must be",
    ),
    Pair(
        "pairs-divergence",
        {"lr": 1e6},
        "fit",
        (pairs, same),
        TrainingDivergedError,
        "Training diverged: .*lower `lr`",
    ),
    Pair(
        "pairs-predict-other-width",
        "pairs",
        "predict",
        (flat[:, :4],),
        ValueError,
        "X has 4 features, but SiamesePairClassifier is expecting 6 features",
    ),
    Pair(
        "pairs-predict-middle-axis-3",
        "pairs",
        "predict_proba",
        (_rng.normal(size=(5, 3, 3)),),
        ValueError,
        "is not a set of pairs",
    ),
    Pair(
        "pairs-transform-width-neither",
        "pairs",
        "transform",
        (flat[:, :4],),
        ValueError,
        r"expecting 6 features as input \(pairs side by side\), or 3 \(single",
    ),
    Pair(
        "pairs-calibrate-one-class",
        "pairs",
        "calibrate_threshold",
        (pairs, np.ones(40)),
        ValueError,
        "calibrate_threshold needs both same",
    ),
    Pair(
        "pairs-calibrate-lengths-differ",
        "pairs",
        "calibrate_threshold",
        (pairs, same[:-1]),
        ValueError,
        "X and y have different numbers of pairs: 40 and 39",
    ),
    Pair("pairs-y-bool", {}, "fit", (pairs, same.astype(bool)), None),
    Pair("pairs-side-by-side", {}, "fit", (flat, same), None),
    Pair(
        "pairs-all-NaN-column",
        {},
        "fit",
        (np.where(np.arange(3) == 1, np.nan, pairs), same),
        None,
    ),
    Pair("pairs-constant", {}, "fit", (np.ones_like(pairs), same), None),
    Pair(
        "pairs-duplicates",
        {},
        "fit",
        (np.repeat(pairs[:2], 20, axis=0), np.tile(same[:2], 20)),
        None,
    ),
    Pair("pairs-values-1e30", {}, "fit", (pairs * 1e30, same), None),
    Pair("pairs-huge-margin", {"margin": 1e6}, "fit", (pairs, same), None),
    Pair(
        "pairs-two-same-of-22",
        {},
        "fit",
        (pairs[:22], np.r_[1, 1, np.zeros(20, dtype=int)]),
        None,
    ),
    Pair("pairs-transform-single-vectors", "pairs", "transform", (pairs[:, 0],), None),
    Pair(
        "pairs-predict-inf",
        "pairs",
        "predict",
        (_with(flat, 3, 4, np.inf),),
        ValueError,
        "Input X contains infinity",
    ),
    Pair(
        "pairs-transform-single-vectors-inf",
        "pairs",
        "transform",
        (_with(pairs[:, 0], 2, 1, -np.inf),),
        ValueError,
        "Input X contains infinity",
    ),
    Pair("pairs-predict-side-by-side", "pairs", "predict_proba", (flat,), None),
]


@pytest.fixture(scope="module")
def fitted():
    models = {}

    def get(name):
        if name not in models:
            is_pairs = name.startswith("pairs")
            cls = SiamesePairClassifier if is_pairs else SiameseClassifier
            X_fit, y_fit = (pairs, same) if is_pairs else (X, y)
            if name == "binary":
                X_fit, y_fit = X[:20], y[:20]
            models[name] = cls(**FITTED[name]).fit(X_fit, y_fit)
        return copy.deepcopy(models[name])

    return get


def _assert_valid(method, result, estimator, args):
    """The outputs of a successful call are finite and of the right kind."""
    if isinstance(result, SiameseClassifier | SiamesePairClassifier):
        Xq = args[0]
        proba = result.predict_proba(Xq)
        _assert_valid("predict_proba", proba, result, args)
        _assert_valid("predict", result.predict(Xq), result, args)
        _assert_valid("transform", result.transform(Xq), result, args)
        return
    result = np.asarray(result)
    assert len(result) == len(args[0])
    if method == "predict":
        assert np.isin(result, estimator.classes_).all()
        return
    assert np.isfinite(result).all()
    if method in ("predict_proba", "pair_score"):
        assert ((result >= 0) & (result <= 1)).all()
    if method == "predict_proba":
        assert result.shape == (len(args[0]), len(estimator.classes_))
        np.testing.assert_allclose(result.sum(1), 1.0)


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES + PAIR_CASES]
)
def test_bad_input(case, fitted):
    if isinstance(case.estimator, dict):
        estimator = case.cls(**{**FAST, **case.estimator})
    else:
        estimator = fitted(case.estimator)
    method = getattr(estimator, case.method)
    if case.error is None:
        _assert_valid(case.method, method(*case.args), estimator, case.args)
    else:
        with pytest.raises(case.error, match=case.match):
            method(*case.args)


@pytest.mark.parametrize(
    "name, method, args",
    [
        ("mlp", "transform", (X,)),
        ("mlp", "predict_proba", (X,)),
        ("pairs", "predict_proba", (flat,)),
        ("pairs", "transform", (pairs[:, 0],)),
    ],
)
def test_prediction_leaves_infinity_to_the_scaling(
    name, method, args, fitted, monkeypatch
):
    # scikit-learn's look for infinite values is a pass over all of X on the
    # host; the scaling of each block looks for them anyway (the cases
    # above), on the device that scales it. Only fit looks on the host.
    estimator = fitted(name)
    looked = []
    real = sklearn.utils.validation._assert_all_finite

    def look(*args, **kwargs):
        looked.append(kwargs.get("input_name"))
        return real(*args, **kwargs)

    monkeypatch.setattr(sklearn.utils.validation, "_assert_all_finite", look)
    getattr(estimator, method)(*args)
    assert looked == []


def test_nan_embeddings_name_their_row_when_compared_in_parts(fitted, monkeypatch):
    # predict_proba compares each group of embedded rows with the references
    # as soon as it is embedded; the error still names the row of the input.
    from sksiamese import _training

    monkeypatch.setattr(_training, "_EMBED_COPY_ROWS", 1)
    for device in list(_training.EMBED_ROWS):  # whichever the model runs on
        monkeypatch.setitem(_training.EMBED_ROWS, device, 4)
    Xq = np.tile(X[:1], (10, 1))
    Xq[6] = 500.0
    with pytest.raises(
        ValueError,
        match=r"embeddings for 1 of 4 samples of rows 4 to 7 of 10 "
        r"\(the first is row 6\)",
    ):
        fitted("nan_above_100").predict_proba(Xq)


def test_nan_embeddings_of_rows_read_name_their_row(fitted, monkeypatch):
    # A fit embeds only the rows its references and calibration read (and
    # rows not read yet in the rest of a pass: rows 0, 9 and 6 read, 1 in
    # passes of 4 rows); an error names the row of the data, not its place
    # among those embedded (2).
    from sksiamese import _training

    clf = fitted("nan_above_100")
    monkeypatch.setattr(clf.net_, "embed_pass_rows", lambda *args, **kwargs: 4)
    Xq = np.tile(X[:1], (10, 1))
    Xq[6] = 500.0
    rows = _training.EmbeddedRows(clf.net_, clf._scaled(Xq))
    with pytest.raises(
        ValueError, match=r"embeddings for 1 of 4 samples \(the first is row 6\)"
    ):
        rows[[0, 9, 6]]
    monkeypatch.undo()
    # Checked group by group (as on a GPU): no range of places among those
    # embedded, which would not be rows of the data.
    monkeypatch.setattr(_training, "_EMBED_COPY_ROWS", 2)
    with pytest.raises(ValueError, match=r"of 2 samples \(the first is row 6\)"):
        clf.net_.embed(
            clf._scaled(Xq),
            batch_size=2,
            rows=np.array([0, 1, 2, 9, 6, 3]),
            then=lambda group: group.numpy(),
        )


def test_nan_embeddings_of_pairs_name_the_side_and_the_pair(fitted):
    Xq = np.tile(pairs[:1], (6, 1, 1))
    Xq[5, 1, 0] = 500.0
    for X_ in (Xq, Xq.reshape(6, -1)):  # pairs, or their sides side by side
        with pytest.raises(
            ValueError,
            match=r"embeddings for 1 of 12 vectors \(the first is side 1 of pair 5\)",
        ):
            fitted("pairs_nan_above_100").predict_proba(X_)


@pytest.mark.parametrize("value", [0, 2.5, None])
def test_n_neighbors_set_after_fit_is_checked_where_it_is_read(fitted, value):
    # Prediction reads n_neighbors: a value set since fit gets the error fit
    # would give, not one from inside the comparison with the references.
    clf = fitted("mlp").set_params(n_neighbors=value)
    for method in ("predict_proba", "predict", "decision_function"):
        with pytest.raises(ValueError, match="'n_neighbors' parameter of Siamese"):
            getattr(clf, method)(X)
    np.testing.assert_array_equal(
        clf.set_params(n_neighbors=5).predict(X), fitted("mlp").predict(X)
    )


@pytest.mark.parametrize(
    "value, match",
    [
        (0, "'references' parameter of SiameseClassifier"),
        ("centres", "'references' parameter of SiameseClassifier"),
        (True, "references must be 'all', 'prototypes' or a number"),
    ],
)
def test_references_set_after_fit_is_checked_by_fit_references(fitted, value, match):
    # fit_references reads references: a value set since fit gets the error
    # fit would give, not one from inside the choice of references.
    clf = fitted("mlp").set_params(references=value)
    with pytest.raises(ValueError, match=match):
        clf.fit_references(X[:4], [0, 1, 0, 1])
