"""Saving and loading without pickle: round trips, devices, tampered files."""

import io
import json
import os
import pickle
import re
import stat
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits, load_wine
from sklearn.exceptions import NotFittedError
from torch import nn

import sksiamese._persistence as persistence
from sksiamese import SiameseClassifier, SiamesePairClassifier, load

SMALL = dict(hidden_layer_sizes=(16,), embedding_dim=4, max_epochs=3, random_state=0)


@pytest.fixture(scope="module")
def fitted(wine):
    X_train, _, y_train, _ = wine
    return SiameseClassifier(**SMALL).fit(X_train, y_train)


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.zip"
    fitted.save(path)
    return path


def assert_same_predictions(a, b, X):
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    np.testing.assert_array_equal(a.decision_function(X), b.decision_function(X))
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    np.testing.assert_array_equal(
        a.pair_score(X[:-1], X[1:]), b.pair_score(X[:-1], X[1:])
    )


def test_save_load_round_trip(fitted, saved, wine):
    _, X_test, _, _ = wine
    loaded = load(saved)
    assert type(loaded) is SiameseClassifier
    assert_same_predictions(fitted, loaded, X_test)
    assert loaded.get_params() == fitted.get_params()
    np.testing.assert_array_equal(loaded.classes_, fitted.classes_)
    np.testing.assert_array_equal(loaded.references_, fitted.references_)
    np.testing.assert_array_equal(loaded._reference_weights, fitted._reference_weights)
    assert loaded.temperature_ == fitted.temperature_
    assert loaded.n_features_in_ == fitted.n_features_in_
    assert loaded.n_epochs_ == fitted.n_epochs_
    assert len(loaded.history_) == len(fitted.history_)
    assert loaded.history_[:, "train_loss"] == pytest.approx(
        fitted.history_[:, "train_loss"]
    )
    # The loaded model is a complete estimator: clone and refit work.
    assert clone(loaded).get_params() == fitted.get_params()


def test_class_weight_with_int_labels_round_trips(wine, tmp_path):
    # JSON objects only have str keys; a class_weight keyed by int labels must
    # come back keyed by the same ints, with the same effect on predictions.
    X_train, X_test, y_train, _ = wine
    clf = SiameseClassifier(class_weight={0: 1.0, 2: 3.0}, **SMALL)
    clf.fit(X_train, y_train)
    clf.save(tmp_path / "weighted.zip")
    loaded = load(tmp_path / "weighted.zip")
    assert loaded.class_weight == {0: 1.0, 2: 3.0}
    assert all(type(k) is int for k in loaded.class_weight)
    assert_same_predictions(clf, loaded, X_test)


def test_metadata_requests_are_saved_and_set_again(fitted, saved, wine, tmp_path):
    # set_score_request keeps the requests in an object that is not plain
    # data; they are saved as their values, and set again at load.
    import sklearn

    _, X_test, _, _ = wine
    model = pickle.loads(pickle.dumps(fitted))
    with sklearn.config_context(enable_metadata_routing=True):
        model.set_score_request(sample_weight="weights")
        model.set_partial_fit_request(classes=True)
        model.save(tmp_path / "m.zip")
        loaded = load(tmp_path / "m.zip")
        for method in ("score", "partial_fit"):
            assert (
                getattr(loaded.get_metadata_routing(), method).requests
                == getattr(model.get_metadata_routing(), method).requests
            )
    assert_same_predictions(model, loaded, X_test)
    assert "_metadata_request" not in vars(load(saved))


def test_file_holds_no_pickle(saved):
    with zipfile.ZipFile(saved) as zf:
        assert sorted(zf.namelist()) == sorted(persistence._MEMBERS)
        metadata = json.loads(zf.read("metadata.json"))
        with np.load(io.BytesIO(zf.read("arrays.npz")), allow_pickle=False) as npz:
            assert all(npz[name].dtype != object for name in npz.files)
        torch.load(io.BytesIO(zf.read("weights.pt")), weights_only=True)
    assert metadata["class"] == "SiameseClassifier"
    assert metadata["params"]["callbacks"] is None


def test_string_labels_blanks_bce_prototypes_and_pandas_output(tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = load_wine(return_X_y=True, as_frame=True)
    X = X.copy()
    X.iloc[::7, 2] = np.nan  # a column with blanks adds a "was blank" input
    y = np.array(["barolo", "grignolino", "barbera"], dtype=object)[y]
    clf = SiameseClassifier(
        loss="bce", references="prototypes", **{**SMALL, "random_state": 1}
    )
    clf.fit(X, y).set_output(transform="pandas")
    clf.save(tmp_path / "m.zip")
    loaded = load(tmp_path / "m.zip")
    assert loaded.classes_.dtype == object
    assert loaded.classes_.tolist() == clf.classes_.tolist()
    np.testing.assert_array_equal(loaded.feature_names_in_, clf.feature_names_in_)
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    out = loaded.transform(X)
    assert isinstance(out, pd.DataFrame)
    pd.testing.assert_frame_equal(out, clf.transform(X))


def test_cnn_encoder_round_trip(tmp_path):
    X, y = load_digits(return_X_y=True)
    X, y = X[:80].reshape(-1, 8, 8)[:, ::2, ::2], y[:80]  # 4 x 4 images
    clf = SiameseClassifier(
        "cnn", embedding_dim=4, max_epochs=1, batch_size=32, random_state=0
    ).fit(X, y)
    clf.save(tmp_path / "cnn.zip")
    loaded = load(tmp_path / "cnn.zip")
    assert loaded.image_shape_ == (1, 4, 4)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.transform(X), clf.transform(X))
    # Batch-norm running statistics are part of the saved state.
    buffers = dict(loaded.net_.module_.named_buffers())
    assert any(name.endswith("running_mean") for name in buffers)


def test_pair_classifier_round_trip(tmp_path):
    images, digit = load_digits(return_X_y=True)
    a, b = np.random.RandomState(0).randint(len(images), size=(2, 200))
    X, y = np.stack([images[a], images[b]], axis=1), digit[a] == digit[b]
    clf = SiamesePairClassifier(**SMALL).fit(X, y)
    clf.calibrate_threshold(X, y, strategy="f_beta")
    clf.save(tmp_path / "pairs.zip")
    loaded = load(tmp_path / "pairs.zip")
    assert type(loaded) is SiamesePairClassifier
    assert loaded.threshold_ == clf.threshold_
    assert loaded.get_params() == clf.get_params()
    for method in ("predict", "predict_proba", "decision_function", "transform"):
        np.testing.assert_array_equal(
            getattr(loaded, method)(X), getattr(clf, method)(X)
        )
    np.testing.assert_array_equal(
        loaded.transform(images[:5]), clf.transform(images[:5])
    )
    # Pairs side by side, as users' CSV files have them.
    flat = X.reshape(len(X), -1)
    np.testing.assert_array_equal(loaded.predict_proba(flat), clf.predict_proba(flat))


@pytest.mark.parametrize("class_weight", [None, {2: 4.0}])
def test_partial_fit_goes_on_after_a_reload(wine, tmp_path, class_weight):
    X, _, y, _ = wine
    chunks = np.array_split(np.arange(len(X)), 4)
    # The loss's class weights (not in its state dict) are saved too: without
    # them a reloaded model trained on unweighted.
    clf = SiameseClassifier(class_weight=class_weight, **SMALL)
    for c in chunks[:2]:
        clf.partial_fit(X[c], y[c], classes=[0, 1, 2])
    clf.save(tmp_path / "stream.zip")
    loaded = load(tmp_path / "stream.zip")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    # The kept sample, the random streams and the optimizer's moments are all
    # saved, so the next chunks train both copies alike.
    for c in chunks[2:]:
        clf.partial_fit(X[c], y[c])
        loaded.partial_fit(X[c], y[c])
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_partial_fit_after_a_reload_augments_and_follows_set_params(tmp_path):
    # A reloaded model trains on as the model in memory does: with the
    # image distortions of augment=True, and with the parameters set since
    # the fit (batch_size, samples_per_class), which both now follow.
    rng = np.random.RandomState(0)
    y = np.repeat([0, 1, 2], 40)
    X = (rng.normal(size=(120, 8, 8)) + y[:, None, None]).reshape(120, -1)
    clf = SiameseClassifier(
        **{**SMALL, "max_epochs": 1},
        n_members=1,
        batch_size=24,
        augment=True,
        image_shape=(8, 8),
    ).fit(X, y)
    clf.set_params(batch_size=48, samples_per_class=16)
    clf.save(tmp_path / "m.zip")
    loaded = load(tmp_path / "m.zip")
    assert loaded.net_.iterator_train__augment == (1, 8, 8)
    for model in (clf, loaded):
        model.partial_fit(X, y)
        sizes = {row["train_batch_size"] for row in model.history_[-1, "batches"]}
        assert sizes == {48}  # 3 classes of 16 samples (24 before)
    np.testing.assert_array_equal(loaded.transform(X), clf.transform(X))


class TinyEncoder(nn.Module):
    def __init__(self, n_inputs=13, width=4):
        super().__init__()
        self.layer = nn.Linear(n_inputs, width)

    def forward(self, x):
        return self.layer(x)


@pytest.mark.parametrize("as_class", [False, True])
def test_user_module_is_passed_back_at_load(wine, tmp_path, as_class):
    X_train, X_test, y_train, _ = wine
    encoder = TinyEncoder if as_class else TinyEncoder(13, 4)
    params = {"encoder_params": {"n_inputs": 13, "width": 4}} if as_class else {}
    clf = SiameseClassifier(encoder, max_epochs=2, random_state=0, **params)
    clf.fit(X_train, y_train).save(tmp_path / "user.zip")

    msg = re.escape("trained with a user-supplied encoder (") + r"\S*TinyEncoder\)"
    with pytest.raises(ValueError, match=msg):
        load(tmp_path / "user.zip")
    loaded = load(tmp_path / "user.zip", encoder=encoder)
    assert_same_predictions(clf, loaded, X_test)

    wrong = nn.Linear(13, 4) if as_class else TinyEncoder(13, 5)
    with pytest.raises(ValueError, match="saved weights do not fit the network"):
        load(tmp_path / "user.zip", encoder=wrong)


def test_encoder_argument_only_for_user_modules(saved):
    with pytest.raises(ValueError, match="encoder is only needed for models trained"):
        load(saved, encoder=TinyEncoder())


def test_model_saved_for_cuda_loads_on_cpu(fitted, wine, tmp_path, monkeypatch):
    _, X_test, _, _ = wine
    cuda_model = pickle.loads(pickle.dumps(fitted)).set_params(device="cuda")
    cuda_model.save(tmp_path / "cuda.zip")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = load(tmp_path / "cuda.zip")
    assert loaded.get_params()["device"] == "cuda"
    assert str(loaded.net_.device) == "cpu"
    assert all(p.device.type == "cpu" for p in loaded.net_.module_.parameters())
    if str(fitted.net_.device) == "cpu":
        assert_same_predictions(fitted, loaded, X_test)
    else:  # fitted on a GPU: the same model, computed on another device
        np.testing.assert_array_equal(fitted.predict(X_test), loaded.predict(X_test))
        np.testing.assert_allclose(
            fitted.predict_proba(X_test), loaded.predict_proba(X_test), rtol=1e-9
        )


def test_device_can_be_chosen_at_load(saved):
    assert str(load(saved, device="cpu").net_.device) == "cpu"
    with pytest.raises(ValueError, match="device must be"):
        load(saved, device="tpu")


def test_loading_leaves_the_global_torch_stream_alone(saved):
    before = torch.random.get_rng_state()
    load(saved)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_random_state_instance_and_callbacks(wine, tmp_path):
    from skorch.callbacks import Callback

    X_train, _, y_train, _ = wine
    rs = np.random.RandomState(3)
    clf = SiameseClassifier(**{**SMALL, "random_state": rs, "callbacks": [Callback()]})
    clf.fit(X_train, y_train).save(tmp_path / "rs.zip")
    loaded = load(tmp_path / "rs.zip")
    assert loaded.callbacks is None
    assert isinstance(loaded.random_state, np.random.RandomState)
    assert loaded.random_state.randint(10**9) == rs.randint(10**9)


def test_save_needs_a_fitted_estimator(tmp_path):
    with pytest.raises(NotFittedError):
        SiameseClassifier().save(tmp_path / "m.zip")
    assert not (tmp_path / "m.zip").exists()


def test_save_refuses_what_it_cannot_write_without_pickle(fitted, tmp_path):
    model = pickle.loads(pickle.dumps(fitted))
    model.extra_ = object()
    with pytest.raises(TypeError, match="attribute 'extra_': cannot save a value"):
        model.save(tmp_path / "m.zip")
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_saved_file_is_created_as_open_creates_one(fitted, tmp_path):
    # Readable by whoever the umask lets read a new file (as the files of
    # joblib.dump and torch.save are), not by its owner only.
    umask = os.umask(0o022)
    try:
        fitted.save(tmp_path / "m.zip")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "m.zip").st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["m.zip"]


def test_save_takes_a_name_as_long_as_open_takes(fitted, wine, tmp_path):
    # 250 characters, within the 255 of common file systems: the file
    # written first, next to it, took the whole name and failed with
    # "File name too long".
    _, X_test, _, _ = wine
    path = tmp_path / ("m" * 246 + ".zip")
    fitted.save(path)
    assert_same_predictions(fitted, load(path), X_test)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_pickle_and_joblib_still_round_trip(fitted, wine, tmp_path):
    _, X_test, _, _ = wine
    assert_same_predictions(fitted, pickle.loads(pickle.dumps(fitted)), X_test)
    joblib.dump(fitted, tmp_path / "m.joblib")
    assert_same_predictions(fitted, joblib.load(tmp_path / "m.joblib"), X_test)


# -- tampered files --------------------------------------------------------------

_EXECUTED = []


def _payload():
    _EXECUTED.append(True)
    return {}


class _Evil:
    def __reduce__(self):
        return (_payload, ())


def _rewrite(src, dst, **replace):
    """Copy model file ``src`` to ``dst`` with some members replaced."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = replace.pop(name, None)
            if data is None:
                data = zin.read(name)
            if data != b"<drop>":
                zout.writestr(name, data)
    return dst


def _edited_metadata(path, edit):
    with zipfile.ZipFile(path) as zf:
        metadata = json.loads(zf.read("metadata.json"))
    edit(metadata)
    return json.dumps(metadata).encode()


def _npz_with_object_array():
    buffer = io.BytesIO()
    np.savez(buffer, a0=np.array([_Evil()], dtype=object))
    return buffer.getvalue()


def _torch_pickle():
    buffer = io.BytesIO()
    torch.save({"module": _Evil(), "criterion": {}}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "member, data, message",
    [
        ("weights.pt", pickle.dumps(_Evil()), "weights.pt is not a plain tensor file"),
        ("weights.pt", None, "weights.pt is not a plain tensor file"),
        ("arrays.npz", pickle.dumps(_Evil()), "arrays.npz is not a pickle-free"),
        ("arrays.npz", None, "arrays.npz is not a pickle-free"),
        ("metadata.json", b"{not json", "metadata.json is not valid JSON"),
        ("history.json", b"<drop>", "missing history.json"),
    ],
    ids=[
        "pickle-as-weights",
        "torch-file-with-code",
        "pickle-as-arrays",
        "npz-with-object-array",
        "broken-json",
        "missing-member",
    ],
)
def test_tampered_member_is_refused(saved, tmp_path, member, data, message):
    if data is None:
        data = _torch_pickle() if member == "weights.pt" else _npz_with_object_array()
    path = _rewrite(saved, tmp_path / "bad.zip", **{member: data})
    with pytest.raises(ValueError, match=re.escape(message)):
        load(path)
    assert not _EXECUTED


def _set(*keys, value):
    def edit(metadata):
        target = metadata
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set("class", value="os.system"), "unknown estimator class 'os.system'"),
        (_set("class", value="Pipeline"), "unknown estimator class 'Pipeline'"),
        (_set("format_version", value=99), "format version 99"),
        (_set("format", value="other"), "does not describe an sksiamese model"),
        (_set("params", "colour", value="red"), "invalid parameters"),
        (_set("params", "max_epochs", value=-1), "invalid parameters"),
        (_set("params", "callbacks", value=["x"]), "'callbacks' is not saved"),
        (_set("attributes", "predict", value=1), "invalid attribute name 'predict'"),
        (_set("attributes", "__class__", value=1), "invalid attribute name"),
        (
            _set("attributes", "_scaler", "__object__", value="subprocess.Popen"),
            "unknown class 'subprocess.Popen'",
        ),
        (
            _set("attributes", "classes_", value={"__array__": "nope"}),
            "missing array 'nope'",
        ),
        (_set("attributes", "x_", value={"__eval__": "1"}), "unknown entry"),
        (
            _set("net", "criterion", "class", value="TripletMarginLoss"),
            "unknown criterion class",
        ),
        (_set("net", "criterion", "n_classes", value=0), "invalid criterion n_classes"),
        (
            _set("net", "criterion", "class_weight", value=[1.0, "x", 1.0]),
            "invalid criterion class weights",
        ),
        (
            _set("net", "criterion", "class_weight", value=[1.0]),
            "invalid criterion class weights",
        ),
        (
            _set("metadata_requests", value={"__init__": {}}),
            "invalid metadata requests",
        ),
        (
            _set("metadata_requests", value={"score": {"sample_weight": "a b"}}),
            "invalid metadata requests",
        ),
        (
            _set("params", "encoder", value={"__user_module__": "os.system"}),
            "trained with a user-supplied encoder (os.system)",
        ),
    ],
)
def test_tampered_metadata_is_refused(saved, tmp_path, edit, message):
    data = _edited_metadata(saved, edit)
    path = _rewrite(saved, tmp_path / "bad.zip", **{"metadata.json": data})
    with pytest.raises(ValueError, match=re.escape(message)):
        load(path)


def test_weights_of_another_network_are_refused(saved, wine, tmp_path):
    X_train, _, y_train, _ = wine
    other = SiameseClassifier(**{**SMALL, "embedding_dim": 6}).fit(X_train, y_train)
    other.save(tmp_path / "other.zip")
    with zipfile.ZipFile(tmp_path / "other.zip") as zf:
        weights = zf.read("weights.pt")
    path = _rewrite(saved, tmp_path / "bad.zip", **{"weights.pt": weights})
    with pytest.raises(ValueError, match="saved weights do not fit the network"):
        load(path)


def test_not_a_model_file(tmp_path):
    path = tmp_path / "model.zip"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a zip archive"):
        load(path)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.zip")


def test_huge_network_in_metadata_is_refused_before_allocating(saved, tmp_path):
    """A file naming a network of 3.6 GB of weights is refused from the shapes
    alone: peak memory does not grow by the size of that network."""
    import resource

    edit = _set("params", "hidden_layer_sizes", value={"__tuple__": [30_000, 30_000]})
    path = _rewrite(
        saved, tmp_path / "bad.zip", **{"metadata.json": _edited_metadata(saved, edit)}
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(ValueError, match="saved weights do not fit the network"):
        load(path)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < 1_000_000, f"peak memory grew by {grown / 1e6:.1f} GB"


def test_file_of_format_1_loads_and_predicts_as_it_did():
    # Written by sksiamese 0.x at format 1 (one network, no class prior): an
    # iris model with blanks, and its probabilities for every tenth row.
    from sklearn.datasets import load_iris

    data = Path(__file__).parent / "data"
    X, _ = load_iris(return_X_y=True)
    X[::7, 1] = np.nan
    loaded = load(data / "iris_format1.zip")
    assert loaded.n_members == 1 and loaded.early_stopping
    np.testing.assert_allclose(
        loaded.predict_proba(X[::10]),
        np.load(data / "iris_format1_proba.npy"),
        rtol=1e-5,
        atol=1e-7,
    )
    assert loaded.transform(X[:3]).shape == (3, 4)


def test_load_in_a_fresh_process_finds_the_estimator_classes(tmp_path, wine):
    # sksiamese imports its modules on first use; load must import the
    # estimator classes it may return before reading a file.
    import subprocess
    import sys

    X_train, _, y_train, _ = wine
    path = tmp_path / "model.zip"
    clf = SiameseClassifier(hidden_layer_sizes=(4,), max_epochs=1, random_state=0)
    clf.fit(X_train, y_train).save(path)
    code = f"import sksiamese; print(type(sksiamese.load({str(path)!r})).__name__)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "SiameseClassifier"


class _TensorCounter(pickle.Pickler):
    """Counts the tensors and storages pickled plainly (not through the
    buffers in which skorch saves its module, criterion and optimizer)."""

    def __init__(self, file):
        super().__init__(file)
        self.tensors = 0

    def reducer_override(self, obj):
        if isinstance(obj, (torch.Tensor, torch.UntypedStorage, torch.TypedStorage)):
            self.tensors += 1
        return NotImplemented


def test_a_pickled_model_holds_no_tensor_outside_what_skorch_maps(wine):
    # A tensor pickled plainly keeps its device: one from a model trained on
    # a GPU stops the pickle from loading where CUDA is absent ("Attempting
    # to deserialize object on a CUDA device"). skorch maps only module_,
    # criterion_ and optimizer_; the net's module and criterion parameters
    # are the same objects and must not be pickled beside them.
    X_train, X_test, y_train, _ = wine
    models = [
        SiameseClassifier(
            hidden_layer_sizes=(8,),
            embedding_dim=4,
            max_epochs=2,
            class_weight="balanced",
            early_stopping=True,
            random_state=0,
        ).fit(X_train, y_train),
        SiamesePairClassifier(
            hidden_layer_sizes=(8,), embedding_dim=4, max_epochs=2, random_state=0
        ).fit(
            np.stack([X_train[:60], X_train[60:120]], 1),
            y_train[:60] == y_train[60:120],
        ),
    ]
    for model in models:
        counter = _TensorCounter(io.BytesIO())
        counter.dump(model)
        assert counter.tensors == 0
        copy = pickle.loads(pickle.dumps(model))
        assert copy.net_.module is copy.net_.module_
        assert copy.net_.criterion is copy.net_.criterion_
    copy = pickle.loads(pickle.dumps(models[0]))
    np.testing.assert_array_equal(
        copy.predict_proba(X_test), models[0].predict_proba(X_test)
    )
