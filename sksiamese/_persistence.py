"""Save and load fitted estimators without pickle.

A model file is one zip archive holding

- ``metadata.json``: the estimator class, its parameters and its fitted
  attributes, written as JSON (arrays are named, not inlined);
- ``arrays.npz``: the fitted numpy arrays, read back with
  ``numpy.load(..., allow_pickle=False)``;
- ``weights.pt``: the ``state_dict`` of the twin module (and of the loss),
  written by ``torch.save`` and read back with ``torch.load(weights_only=True)``;
- ``history.json``: the per-epoch training log.

Metadata requests set with ``set_{method}_request`` (scikit-learn's metadata
routing) are saved as their values and set again at load, through the same
methods.

None of these readers can run code: JSON and ``.npz`` without pickle hold only
data, and ``torch.load(weights_only=True)`` refuses anything but tensors and
plain containers. Class names in ``metadata.json`` are looked up in a fixed list
of sksiamese classes, never imported by name, so an edited file can name nothing
else. Whatever does not fit these rules is refused with a :class:`ValueError`.
"""

import io
import json
import math
import os
import secrets
import warnings
import zipfile
from types import SimpleNamespace

import numpy as np
import sklearn
import skorch
import torch
from sklearn.utils.validation import check_is_fitted
from skorch.history import History
from torch import nn

from . import __version__
from ._losses import InBatchLoss, RowPairLoss
from ._preprocessing import BlankAwareScaler
from ._training import build_module, make_net, resolve_device, seeded, to_cpu

FORMAT = "sksiamese-model"
# 2: ensemble encoders (the ``n_members`` parameter) and the pair group loss
# (``group_weight``). Version 1 files hold single networks trained without it
# and are read as such.
FORMAT_VERSION = 2
_MEMBERS = ("metadata.json", "arrays.npz", "weights.pt", "history.json")

# Parameters that hold Python objects with behaviour (callables, callbacks) and
# only matter while training: they are not saved, and load sets them to None.
_TRAINING_ONLY_PARAMS = ("callbacks",)

# Parameters of the skorch net that are drawn at fit, not set by the estimator.
_ITERATOR_SEEDS = ("iterator_train__random_state", "iterator_valid__random_state")


# The estimator classes a model file may name, filled by :func:`register`.
_ESTIMATORS = {}

# Plain helper objects (fitted attributes) a model file may hold.
_HELPERS = {"BlankAwareScaler": BlankAwareScaler}

_CRITERIA = {"InBatchLoss": InBatchLoss, "RowPairLoss": RowPairLoss}


def register(cls):
    """Class decorator: let model files hold ``cls``. :func:`save` refuses
    any other class (subclasses included: :func:`load` would return the
    registered class), and :func:`load` returns only registered classes."""
    _ESTIMATORS[cls.__name__] = cls
    return cls


class _JSONWriter:
    """Turn parameters and fitted attributes into JSON plus named arrays."""

    def __init__(self):
        self.arrays = {}

    def _array(self, value):
        name = f"a{len(self.arrays)}"
        self.arrays[name] = value
        return name

    def __call__(self, value, where):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, np.generic):
            if value.dtype == object:
                raise TypeError(f"{where}: cannot save a numpy object scalar.")
            return {"__scalar__": self._array(np.asarray(value))}
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                items = value.ravel().tolist()
                if not all(
                    x is None or isinstance(x, (bool, int, float, str)) for x in items
                ):
                    raise TypeError(
                        f"{where}: an object array can be saved only if it holds "
                        "str, int, float, bool or None values."
                    )
                return {"__object_array__": items, "shape": list(value.shape)}
            if value.dtype.kind not in "biufcUS":
                raise TypeError(
                    f"{where}: cannot save an array of dtype {value.dtype}."
                )
            return {"__array__": self._array(value)}
        if isinstance(value, tuple):
            return {"__tuple__": [self(v, where) for v in value]}
        if isinstance(value, list):
            return [self(v, where) for v in value]
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                # e.g. class_weight={0: 1.0, 1: 5.0}: keys saved as values.
                return {
                    "__items__": [
                        [self(k, where), self(v, f"{where}[{k!r}]")]
                        for k, v in value.items()
                    ]
                }
            return {
                "__dict__": {k: self(v, f"{where}[{k!r}]") for k, v in value.items()}
            }
        if isinstance(value, np.random.RandomState):
            return {"__random_state__": self(value.get_state(legacy=True), where)}
        if type(value) is SimpleNamespace:
            return {"__namespace__": self(dict(vars(value)), where)}
        name = type(value).__name__
        if _HELPERS.get(name) is type(value):
            return {"__object__": name, "state": self(dict(vars(value)), where)}
        raise TypeError(
            f"{where}: cannot save a value of type {type(value).__name__} without "
            "pickle."
        )


def _qualified_name(obj):
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def save(estimator, path):
    """Write a fitted estimator to the zip file ``path`` (see module docstring)."""
    check_is_fitted(estimator)
    cls_name = type(estimator).__name__
    if _ESTIMATORS.get(cls_name) is not type(estimator):
        raise TypeError(
            f"save supports {sorted(_ESTIMATORS)}; got an instance of "
            f"{_qualified_name(estimator)}."
        )
    enc = _JSONWriter()
    params = {}
    for key, value in estimator.get_params(deep=False).items():
        if key in _TRAINING_ONLY_PARAMS:
            params[key] = None
        elif key == "encoder" and not isinstance(value, str):
            params[key] = {"__user_module__": _qualified_name(value)}
        else:
            params[key] = enc(value, f"parameter {key!r}")
    attributes = {}
    for key, value in vars(estimator).items():
        if key in params or key in ("net_", "_metadata_request"):
            continue
        attributes[key] = enc(value, f"attribute {key!r}")

    net = estimator.net_
    criterion = net.criterion_
    crit_name = type(criterion).__name__
    if _CRITERIA.get(crit_name) is not type(criterion):
        raise TypeError(f"cannot save a net trained with the criterion {crit_name}.")
    weights = {
        "module": to_cpu(net.module_.state_dict()),
        "criterion": to_cpu(criterion.state_dict()),
        # With the optimizer's moments, partial_fit goes on after a reload
        # exactly as it would have without one.
        "optimizer": to_cpu(net.optimizer_.state_dict()),
    }
    seeds = {
        k: v
        for k, v in net.get_params(deep=False).items()
        if k in _ITERATOR_SEEDS and isinstance(v, int)
    }
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": cls_name,
        "versions": {
            "sksiamese": __version__,
            "scikit-learn": sklearn.__version__,
            "skorch": skorch.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "params": params,
        "attributes": attributes,
        "metadata_requests": _metadata_requests(estimator),
        "net": {
            "criterion": {
                "class": crit_name,
                "loss": criterion.loss,
                "margin": float(criterion.margin),
                **(
                    {"group_weight": float(criterion.group_weight)}
                    if hasattr(criterion, "group_weight")
                    else {}
                ),
                **(
                    _class_terms(criterion)
                    if isinstance(criterion, InBatchLoss)
                    else {}
                ),
            },
            "trained_on": str(net.device),
            "iterator_seeds": seeds,
        },
    }
    history = json.dumps(list(net.history), default=_history_default)

    members = {
        "metadata.json": json.dumps(metadata, indent=1).encode(),
        "arrays.npz": _to_bytes(lambda f: np.savez(f, **enc.arrays)),
        "weights.pt": _to_bytes(lambda f: torch.save(weights, f)),
        "history.json": history.encode(),
    }
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    # Write next to the target and rename, so that a failed save never leaves a
    # truncated model where a good one was. Created as open() creates a file
    # (mode 0o666 less the umask), not readable by its owner alone as a file
    # of tempfile.mkstemp is. Its name starts as the target's, cut short: the
    # whole would not fit where the target's is near the 255 that file
    # systems allow.
    start = os.path.basename(path)[:64]
    tmp = os.path.join(folder, f".{start}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _metadata_requests(estimator):
    """``{method: {metadata: alias}}`` of the requests set with the
    estimator's ``set_{method}_request`` methods (kept by scikit-learn in an
    object that is not plain data); empty when none was set."""
    if "_metadata_request" not in vars(estimator):
        return {}
    routing = estimator.get_metadata_routing()
    return {
        method: dict(getattr(routing, method).requests)
        for method in _request_methods(type(estimator))
    }


def _request_methods(cls):
    """The methods whose metadata requests ``cls`` sets: ``set_{method}_request``."""
    return [
        name[len("set_") : -len("_request")]
        for name in dir(cls)
        if name.startswith("set_") and name.endswith("_request")
    ]


def _set_metadata_requests(estimator, requests, fail):
    """Set the requests of :func:`_metadata_requests` again, through the
    estimator's own ``set_{method}_request`` methods."""
    methods = _request_methods(type(estimator))
    if not isinstance(requests, dict) or not all(
        method in methods
        and isinstance(kw, dict)
        and all(v is None or isinstance(v, (bool, str)) for v in kw.values())
        for method, kw in requests.items()
    ):
        fail("metadata.json has invalid metadata requests")
    with sklearn.config_context(enable_metadata_routing=True):
        for method, kw in requests.items():
            try:
                getattr(estimator, f"set_{method}_request")(**kw)
            except (TypeError, ValueError) as exc:
                fail(f"metadata.json has invalid metadata requests ({exc})")


def _history_default(value):
    # Callbacks may log numpy or torch scalars; the log is for reading, so
    # anything else is kept as its text.
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return str(value)


def _to_bytes(write):
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


class _JSONReader:
    """The inverse of :class:`_JSONWriter`, refusing anything it did not write."""

    def __init__(self, arrays, fail):
        self.arrays = arrays
        self.fail = fail

    def _array(self, name, where):
        if not isinstance(name, str) or name not in self.arrays:
            self.fail(f"{where} refers to a missing array {name!r}")
        return self.arrays[name]

    def __call__(self, value, where):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self(v, where) for v in value]
        if not isinstance(value, dict) or not value:
            self.fail(f"{where} holds an unexpected value")
        tag = next(iter(value))
        keys = set(value)
        if keys == {"__array__"}:
            return self._array(value[tag], where)
        if keys == {"__scalar__"}:
            return self._array(value[tag], where)[()]
        if keys == {"__tuple__"} and isinstance(value[tag], list):
            return tuple(self(v, where) for v in value[tag])
        if keys == {"__dict__"} and isinstance(value[tag], dict):
            return {k: self(v, f"{where}[{k!r}]") for k, v in value[tag].items()}
        if keys == {"__items__"} and isinstance(value[tag], list):
            items = [self(item, where) for item in value[tag]]
            if not all(isinstance(item, list) and len(item) == 2 for item in items):
                self.fail(f"{where} holds invalid dict items")
            try:
                return dict(items)
            except TypeError:
                self.fail(f"{where} holds an unhashable dict key")
        if keys == {"__object_array__", "shape"}:
            items, shape = value["__object_array__"], value["shape"]
            if not isinstance(items, list) or not all(
                x is None or isinstance(x, (bool, int, float, str)) for x in items
            ):
                self.fail(f"{where} holds an invalid object array")
            out = np.empty(len(items), dtype=object)
            out[:] = items
            try:
                return out.reshape(shape)
            except (TypeError, ValueError):
                self.fail(f"{where} holds an object array of invalid shape")
        if keys == {"__random_state__"}:
            state = self(value[tag], where)
            rs = np.random.RandomState()
            try:
                rs.set_state(state)
            except (TypeError, ValueError):
                self.fail(f"{where} holds an invalid random state")
            return rs
        if keys == {"__namespace__"}:
            state = self(value[tag], where)
            if not isinstance(state, dict):
                self.fail(f"{where} holds an invalid namespace")
            for k in state:
                _check_attribute_name(SimpleNamespace(), k, where, self.fail, False)
            return SimpleNamespace(**state)
        if keys == {"__object__", "state"}:
            cls = _HELPERS.get(value["__object__"])
            if cls is None:
                self.fail(f"{where} names an unknown class {value['__object__']!r}")
            state = self(value["state"], where)
            if not isinstance(state, dict):
                self.fail(f"{where} holds an invalid object state")
            obj = cls.__new__(cls)
            for k in state:
                _check_attribute_name(obj, k, where, self.fail, fitted=False)
            obj.__setstate__(state)
            return obj
        if keys == {"__user_module__"}:
            self.fail(f"{where} holds a user module where none is allowed")
        self.fail(f"{where} holds an unknown entry {sorted(keys)}")


def _check_attribute_name(obj, name, where, fail, fitted=True):
    """Plain names that the class itself does not define (so no method or
    property can be shadowed); with ``fitted``, only ``_private`` or ``fitted_``
    names."""
    if (
        not (isinstance(name, str) and name.isidentifier())
        or name.startswith("__")
        or (fitted and not (name.startswith("_") or name.endswith("_")))
        or hasattr(type(obj), name)
    ):
        fail(f"{where} has an invalid attribute name {name!r}")


def load(path, *, encoder=None, device=None):
    """Load an estimator written by the ``save`` method of an sksiamese estimator.

    Safe on files from elsewhere: loading reads JSON, numpy arrays with
    ``allow_pickle=False`` and torch tensors with ``weights_only=True``, so it
    cannot run code. A file that holds anything else (a pickle, an unknown class
    name, a tampered entry) is refused with a :class:`ValueError`. Prefer this to
    :mod:`pickle` or :mod:`joblib`, which run any code a file contains.

    Parameters
    ----------
    path : str or path-like
        A file written by :meth:`SiameseClassifier.save
        <sksiamese.SiameseClassifier.save>`.

    encoder : torch.nn.Module instance or class, default=None
        Only for models trained with a user-supplied encoder, whose code is not
        in the file: the same module (class or instance) as at training. Its
        weights are replaced by the saved ones.

    device : str, default=None
        Torch device to load the network onto. By default, the device the
        estimator was configured with, or the CPU when that names a CUDA device
        and none is available (so a model trained on a GPU predicts on a
        CPU-only machine).

    Returns
    -------
    estimator : SiameseClassifier or SiamesePairClassifier
        The fitted estimator, predicting exactly as the saved one did. Its
        ``callbacks`` parameter is None: callbacks act only during ``fit`` and
        are not saved.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn.datasets import load_iris
    >>> from sksiamese import SiameseClassifier, load
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = SiameseClassifier(hidden_layer_sizes=(8,), max_epochs=2, random_state=0)
    >>> clf = clf.fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.zip")
    >>> clf.save(path)
    >>> (load(path).predict(X) == clf.predict(X)).all()
    np.True_
    """
    path = os.fspath(path)

    def fail(message):
        raise ValueError(f"Cannot load {path!r}: {message}.") from None

    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            missing = [m for m in _MEMBERS if m not in names]
            if missing:
                fail(f"not an sksiamese model file (missing {', '.join(missing)})")
            raw = {m: zf.read(m) for m in _MEMBERS}
    except zipfile.BadZipFile:
        fail("not an sksiamese model file (not a zip archive)")

    try:
        metadata = json.loads(raw["metadata.json"])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(f"metadata.json is not valid JSON ({exc})")
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        fail("metadata.json does not describe an sksiamese model")
    version = metadata.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        fail(
            f"the file has format version {version!r}, this sksiamese reads up to "
            f"{FORMAT_VERSION}; upgrade sksiamese"
        )
    cls = _ESTIMATORS.get(metadata.get("class"))
    if cls is None:
        fail(
            f"unknown estimator class {metadata.get('class')!r} (this reads "
            f"{sorted(_ESTIMATORS) or 'the classes imported so far: none'}; "
            "use sksiamese.load, which imports them)"
        )
    for key in ("params", "attributes", "net"):
        if not isinstance(metadata.get(key), dict):
            fail(f"metadata.json has no valid {key!r} entry")

    try:
        with np.load(io.BytesIO(raw["arrays.npz"]), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except Exception as exc:  # numpy raises several types on bad input
        fail(f"arrays.npz is not a pickle-free numpy archive ({exc})")
    decode = _JSONReader(arrays, fail)

    params = dict(metadata["params"])
    if version < 2:
        # Written before ensembles and before the pair group loss: a single
        # network, trained on the pairs alone.
        params.setdefault("n_members", 1)
        if "group_weight" in cls._get_param_names():
            params.setdefault("group_weight", 0.0)
    user_module = None
    saved_encoder = params.get("encoder")
    if isinstance(saved_encoder, dict) and set(saved_encoder) == {"__user_module__"}:
        user_module = saved_encoder["__user_module__"]
        if encoder is None:
            fail(
                f"the model was trained with a user-supplied encoder ({user_module}), "
                "whose code is not saved; pass the same module class or instance "
                "as load(path, encoder=...)"
            )
        params["encoder"] = encoder
    elif encoder is not None:
        raise ValueError(
            "encoder is only needed for models trained with a user-supplied "
            f"module; {path!r} was trained with encoder={saved_encoder!r}."
        )
    params = {
        k: v if k == "encoder" and user_module else decode(v, f"parameter {k!r}")
        for k, v in params.items()
    }
    try:
        estimator = cls(**params)
        estimator._validate_params()
    except (TypeError, ValueError) as exc:
        fail(f"invalid parameters for {cls.__name__} ({exc})")
    for key in _TRAINING_ONLY_PARAMS:
        if params.get(key) is not None:
            fail(f"parameter {key!r} is not saved, but the file holds one")

    for key, value in metadata["attributes"].items():
        _check_attribute_name(estimator, key, "metadata.json", fail)
        if key in params:
            fail(f"attribute {key!r} clashes with a parameter")
        setattr(estimator, key, decode(value, f"attribute {key!r}"))
    _set_metadata_requests(estimator, metadata.get("metadata_requests", {}), fail)

    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of a file it then refuses.
            warnings.filterwarnings("ignore", "Detected pickle protocol")
            weights = torch.load(
                io.BytesIO(raw["weights.pt"]), map_location="cpu", weights_only=True
            )
    except Exception as exc:  # torch raises several types on a refused file
        fail(f"weights.pt is not a plain tensor file ({type(exc).__name__})")
    if not (
        isinstance(weights, dict)
        and set(weights) == {"module", "criterion", "optimizer"}
        and isinstance(weights["optimizer"], dict)
        and all(
            isinstance(weights[part], dict)
            and all(
                isinstance(k, str) and isinstance(v, torch.Tensor)
                for k, v in weights[part].items()
            )
            for part in ("module", "criterion")
        )
    ):
        fail("weights.pt does not hold the expected state dicts")

    try:
        history = json.loads(raw["history.json"])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(f"history.json is not valid JSON ({exc})")
    if not isinstance(history, list):
        fail("history.json does not hold a list of epochs")

    if device is None:
        device = estimator.device
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"
    device = resolve_device(device)
    estimator.net_ = _rebuild_net(estimator, metadata["net"], weights, device, fail)
    estimator.net_.history = History(history)
    return estimator


def _class_terms(criterion):
    """The class count and weights of an :class:`InBatchLoss` (not in its
    state dict: the weights are a buffer that is not saved), as JSON; the
    weights as trained with, whatever ``class_weight`` is now."""
    weights = criterion.class_weight
    return {
        "n_classes": criterion.n_classes,
        "class_weight": None if weights is None else weights.cpu().tolist(),
    }


def _set_class_terms(criterion, spec, fail):
    """Give the rebuilt loss the class count and weights of :func:`_class_terms`
    (files written before they were saved have none: equal weights)."""
    n_classes, weights = spec.get("n_classes"), spec.get("class_weight")
    if n_classes is not None and (type(n_classes) is not int or n_classes < 1):
        fail("metadata.json has an invalid criterion n_classes")
    if weights is not None and not (
        isinstance(weights, list)
        and len(weights) == n_classes
        and all(type(w) in (int, float) and math.isfinite(w) and w > 0 for w in weights)
    ):
        fail("metadata.json has invalid criterion class weights")
    criterion.set_classes(n_classes, weights)


def _rebuild_net(estimator, spec, weights, device, fail):
    """The skorch net of ``estimator`` with the saved weights, on ``device``."""
    crit = spec.get("criterion")
    if not isinstance(crit, dict):
        fail("metadata.json has no valid criterion entry")
    crit_cls = _CRITERIA.get(crit.get("class"))
    if crit_cls is None:
        fail(f"unknown criterion class {crit.get('class')!r}")
    try:
        extra = {}
        if "group_weight" in crit:
            if crit_cls is not RowPairLoss or not isinstance(
                crit["group_weight"], (int, float)
            ):
                fail("metadata.json has an invalid criterion group_weight")
            extra["group_weight"] = float(crit["group_weight"])
        criterion = crit_cls(crit.get("loss"), crit.get("margin"), **extra)
        criterion.load_state_dict(weights["criterion"])
    except (TypeError, ValueError, RuntimeError) as exc:
        fail(f"invalid criterion ({exc})")
    if crit_cls is InBatchLoss:
        _set_class_terms(criterion, crit, fail)

    scaler = getattr(estimator, "_scaler", None)
    if scaler is None or not isinstance(getattr(scaler, "n_outputs", None), int):
        fail("the fitted input scaler is missing")
    state = weights["module"]
    probe = np.zeros((2, scaler.n_outputs), dtype=np.float32)
    head = "head.weight" in state
    # First on PyTorch's meta device, which allocates nothing: a file that names
    # a huge network is refused before any memory is taken for it.
    try:
        with torch.device("meta"):
            shapes = build_module(
                estimator, scaler.n_outputs, head=head, probe=probe, device="meta"
            ).state_dict()
    except (TypeError, ValueError, RuntimeError) as exc:
        fail(f"the network cannot be rebuilt ({exc})")
    expected = {k: tuple(v.shape) for k, v in shapes.items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        differ = sorted(set(expected.items()) ^ set(found.items()))[0][0]
        fail(
            "the saved weights do not fit the network (first difference: "
            f"{differ!r}, expected {expected.get(differ)}, found {found.get(differ)})"
        )
    # Building the module draws initial weights; keep the caller's torch random
    # stream as it was, since those weights are replaced at once.
    with seeded(0, device):
        try:
            module = build_module(
                estimator,
                scaler.n_outputs,
                head=head,
                probe=probe,
                device=device,
            )
            module.load_state_dict(state)
        except (TypeError, ValueError, RuntimeError) as exc:
            fail(f"the saved weights do not fit the network ({exc})")
        net = make_net(
            estimator,
            module,
            criterion,
            None,
            np.random.RandomState(0),
            device,
            # partial_fit after a reload distorts batches as it would have.
            augment=estimator._augment_shape(scaler),
        )
        seeds = spec.get("iterator_seeds", {})
        if not (
            isinstance(seeds, dict)
            and set(seeds) <= set(_ITERATOR_SEEDS)
            and all(type(v) is int for v in seeds.values())
        ):
            fail("metadata.json has invalid iterator seeds")
        net.set_params(**seeds)
        net.initialize()
        try:
            net.optimizer_.load_state_dict(weights["optimizer"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            fail(f"the saved optimizer state does not fit the network ({exc})")
    if not isinstance(net.module_, nn.Module):
        fail("the network could not be rebuilt")
    return net
