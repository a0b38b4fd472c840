"""Failures leave nothing half done; training stops clearly; results repeat;
random input gives valid output or a clear error; large input is chunked."""

import collections
import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from skorch import NeuralNet
from skorch.callbacks import Callback
from torch.utils._python_dispatch import TorchDispatchMode

from sksiamese import (
    SiameseClassifier,
    SiamesePairClassifier,
    TrainingDivergedError,
    _training,
)

TINY = dict(
    hidden_layer_sizes=(8,),
    embedding_dim=4,
    max_epochs=3,
    batch_size=16,
    random_state=0,
)


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    y = np.repeat([0, 1, 2], 20)
    X = rng.normal(size=(60, 3)) + y[:, None]
    return X, y


class RaiseAtEpoch(Callback):
    """Raise ``error`` at the end of epoch ``epoch`` (counted over the net's
    whole history, so across ``partial_fit`` calls too)."""

    def __init__(self, epoch, error):
        self.epoch = epoch
        self.error = error

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == self.epoch:
            raise self.error


class PoisonLastStep(Callback):
    """Turn a weight to NaN after the training steps of the last epoch, where
    no later loss would show it."""

    def on_batch_end(self, net, training=False, **kwargs):
        if training and len(net.history) == net.max_epochs:
            with torch.no_grad():
                next(net.module_.parameters()).fill_(float("nan"))


# -- a failed fit changes nothing -----------------------------------------------


def _assert_same(a, b, where="estimator"):
    """Deep equality of fitted state, arrays compared exactly."""
    assert type(a) is type(b), where
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=where)
    elif isinstance(a, NeuralNet):
        _assert_same(a.module_.state_dict(), b.module_.state_dict(), where)
        _assert_same(a.optimizer_.state_dict(), b.optimizer_.state_dict(), where)
        assert len(a.history) == len(b.history), where
    elif isinstance(a, np.random.RandomState):
        _assert_same(a.get_state(legacy=False), b.get_state(legacy=False), where)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            _assert_same(u, v, f"{where}[{i}]")
    elif hasattr(a, "__dict__") and not isinstance(a, type):
        _assert_same(vars(a), vars(b), where)
    else:
        assert a == b or (a != a and b != b), where


@pytest.fixture
def fitted(data):
    X, y = data
    return SiameseClassifier(**TINY, scaling=None).fit(X, y)


@pytest.mark.parametrize(
    "params, make_input, error, match",
    [
        ({}, lambda X, y: (X, np.zeros_like(y)), ValueError, "at least 2 classes"),
        ({}, lambda X, y: (np.where(X > 2, np.inf, X), y), ValueError, "infinity"),
        ({}, lambda X, y: (X * 1e20, y), TrainingDivergedError, "scale the inputs"),
        ({"lr": 1e6}, lambda X, y: (X, y), TrainingDivergedError, "lower `lr`"),
        (
            {"callbacks": [RaiseAtEpoch(2, RuntimeError("disk full"))]},
            lambda X, y: (X, y),
            RuntimeError,
            "disk full",
        ),
        ({"max_epochs": 0}, lambda X, y: (X, y), ValueError, "max_epochs"),
    ],
    ids=["one-class", "inf", "diverging-data", "diverging-lr", "callback", "param"],
)
def test_failed_fit_leaves_fitted_estimator_unchanged(
    fitted, data, params, make_input, error, match
):
    X, y = data
    proba = fitted.predict_proba(X)
    fitted.set_params(**params)
    state = copy.deepcopy(vars(fitted))
    with pytest.raises(error, match=match):
        fitted.fit(*make_input(X, y))
    _assert_same(vars(fitted), state)
    np.testing.assert_array_equal(fitted.predict_proba(X), proba)


def test_interrupt_outside_training_leaves_fitted_estimator_unchanged(
    fitted, data, monkeypatch
):
    # skorch swallows an interrupt inside its loop (see below); one arriving
    # while references are embedded must not leave a half-fitted estimator.
    X, y = data
    proba, state = fitted.predict_proba(X), copy.deepcopy(vars(fitted))

    def interrupted(self, plan):
        self.classes_ = np.array(["half", "done"])
        raise KeyboardInterrupt

    monkeypatch.setattr(SiameseClassifier, "_fit_finish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fitted.fit(X[::-1], y[::-1])
    _assert_same(vars(fitted), state)
    monkeypatch.undo()
    np.testing.assert_array_equal(fitted.predict_proba(X), proba)


@pytest.mark.parametrize(
    "callbacks, make_input, error, match",
    [
        (
            [RaiseAtEpoch(2, TrainingDivergedError("diverged"))],
            lambda X, y: (X, y),
            TrainingDivergedError,
            "diverged",
        ),
        ([], lambda X, y: (X * 1e20, y), TrainingDivergedError, "scale the inputs"),
        ([], lambda X, y: (X, y + 5), ValueError, "y contains labels not in classes"),
        ([], lambda X, y: (X[:, :2], y), ValueError, "X has 2 features"),
    ],
    ids=["after-the-step", "diverging-chunk", "unknown-labels", "other-width"],
)
def test_failed_partial_fit_leaves_model_unchanged(
    data, callbacks, make_input, error, match
):
    X, y = data
    # Standard scaling lets a chunk of huge values through to the network (the
    # default robust scaling would clip them).
    clf = SiameseClassifier(**TINY, callbacks=callbacks, scaling="standard")
    clf.partial_fit(X, y, classes=[0, 1, 2])
    proba, state = clf.predict_proba(X), copy.deepcopy(vars(clf))
    with pytest.raises(error, match=match):
        clf.partial_fit(*make_input(X, y))
    _assert_same(vars(clf), state)
    np.testing.assert_array_equal(clf.predict_proba(X), proba)
    if not callbacks:  # and it goes on learning
        clf.partial_fit(X, y)
        assert clf.history_[-1, "epoch"] == 2


# -- divergence -------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["contrastive", "bce", "triplet", "prototype", "nca"])
def test_divergence_stops_with_advice(data, loss):
    X, y = data
    clf = SiameseClassifier(**TINY, loss=loss, lr=1e6)
    with pytest.raises(TrainingDivergedError, match="Try a lower `lr`, scale the inp"):
        clf.fit(X, y)
    # Nothing half-fitted is left to give NaN predictions.
    with pytest.raises(NotFittedError):
        clf.predict(X)


def test_weights_broken_by_the_last_step_are_caught(data):
    # One batch per epoch: the NaN weights after the last step never reach a
    # loss, only the end-of-epoch check.
    X, y = data
    clf = SiameseClassifier(
        **{**TINY, "batch_size": 64}, early_stopping=False, callbacks=[PoisonLastStep()]
    )
    with pytest.raises(TrainingDivergedError, match="weights became NaN or infinite"):
        clf.fit(X, y)


def test_divergence_is_a_floating_point_error():
    assert issubclass(TrainingDivergedError, FloatingPointError)


def _two_classes(n):
    """``n`` rows of 3 features, two classes of ``n / 2`` shifted apart."""
    y = np.repeat([0, 1], n // 2)
    return np.random.RandomState(n).normal(size=(n, 3)) + y[:, None], y


class _HostReads(TorchDispatchMode):
    """Counts the operations that make the host wait for a GPU: reading a
    tensor's value (``.item()``, ``float(t)``, ``bool(t)``) or a result
    whose size depends on the data (``nonzero``, ``unique``)."""

    def __init__(self):
        super().__init__()
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name == "_local_scalar_dense" or "nonzero" in name or "unique" in name:
            self.reads += 1
        return func(*args, **(kwargs or {}))


class CountEpochReads(Callback):
    """Counts host reads from the start of each epoch to its end, and what a
    callback finds in the history during the epoch."""

    def initialize(self):
        self.reads, self.seen = [], []
        return self

    def on_epoch_begin(self, net, **kwargs):
        self.mode_ = _HostReads()
        self.mode_.__enter__()

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            self.seen.append(net.history[-1, "batches", -1, "train_loss"])

    def on_epoch_end(self, net, **kwargs):
        self.mode_.__exit__(None, None, None)
        self.reads.append(self.mode_.reads)


def _pairs(n):
    """``n`` pairs of the rows of :func:`_two_classes`, half of them same."""
    X, y = _two_classes(n)
    other = np.random.RandomState(0).permutation(n)
    same = np.arange(n) % 2 == 0
    other[same] = np.arange(n)[same]  # a row with itself
    return np.stack([X, X[other]], axis=1), (y == y[other]).astype(int)


@pytest.mark.parametrize(
    "make, params",
    [
        (_two_classes, {"early_stopping": False}),
        (_two_classes, {"early_stopping": True}),
        (_two_classes, {"loss": "nca"}),
        (_two_classes, {"loss": "contrastive"}),
        (_two_classes, {"loss": "bce"}),
        (_two_classes, {"loss": "triplet"}),
        (_pairs, {}),
        (_pairs, {"loss": "bce"}),
    ],
    ids=[
        "default",
        "early-stopping",
        "nca",
        "contrastive",
        "bce",
        "triplet",
        "pairs",
        "pairs-bce",
    ],
)
def test_training_waits_for_the_device_once_per_epoch(make, params, as_on_a_gpu):
    # Reading each step's loss, or looking up the classes of each batch,
    # would make the host wait for a GPU at every step; the waits of an
    # epoch must not grow with its number of batches. The losses take the
    # paths they take on a GPU (a CPU's cheaper ones read values).
    estimator = SiamesePairClassifier if make is _pairs else SiameseClassifier
    reads = {}
    for n in (64, 512):
        X, y = make(n)
        clf = estimator(
            **{**TINY, "max_epochs": 2}, **params, callbacks=[CountEpochReads()]
        ).fit(X, y)
        spy = next(c for _, c in clf.net_.callbacks_ if isinstance(c, CountEpochReads))
        history = clf.history_
        n_batches = [len(epoch["batches"]) for epoch in history]
        reads[n] = spy.reads
        # In the epoch the batch's loss is a tensor; after it, the number.
        losses = [
            b["train_loss"]
            for epoch in history
            for b in epoch["batches"]
            if "train_loss" in b
        ]
        assert all(isinstance(v, float) for v in losses)
        assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in spy.seen)
        np.testing.assert_array_equal([v.item() for v in spy.seen], losses)
        # skorch's epoch loss is still the batches' mean, weighted by size.
        sizes = [
            b["train_batch_size"] for b in history[-1]["batches"] if "train_loss" in b
        ]
        last = [b["train_loss"] for b in history[-1]["batches"] if "train_loss" in b]
        assert history[-1]["train_loss"] == pytest.approx(
            np.average(last, weights=sizes)
        )
    assert n_batches[0] > 1
    assert reads[64] == reads[512]
    assert max(reads[512]) <= 3


def _digits(n):
    """``n`` rows of digits: ten classes, more than a batch of 8 holds rows."""
    X, y = load_digits(return_X_y=True)
    return X[:n], y[:n]


@pytest.mark.parametrize(
    "make, params",
    [(_pairs, {}), (_digits, {"batch_size": 8}), (_two_classes, {"loss": "bce"})],
    ids=["pairs", "prototype-more-classes-than-rows", "bce"],
)
def test_the_paths_taken_on_a_gpu_train_the_same_models(make, params, request):
    # Off a CPU, the losses do without reading values on the host: the pair
    # estimator's group term computes every row, the prototype loss numbers
    # the classes of a batch on the device, the head's distances run over
    # every dimension. The same models must come out, up to rounding.
    estimator = SiamesePairClassifier if make is _pairs else SiameseClassifier
    X, y = make(300)
    params = {**TINY, "n_members": 2, "max_epochs": 5, **params}
    on_a_cpu = estimator(**params).fit(X, y)
    request.getfixturevalue("as_on_a_gpu")
    as_on_a_gpu = estimator(**params).fit(X, y)
    # Rounding differs, and the difference grows over the steps.
    first, last = (0, "train_loss"), (-1, "train_loss")
    assert as_on_a_gpu.history_[first] == pytest.approx(
        on_a_cpu.history_[first], rel=1e-4
    )
    assert as_on_a_gpu.history_[last] == pytest.approx(
        on_a_cpu.history_[last], rel=1e-3
    )
    np.testing.assert_allclose(
        as_on_a_gpu.predict_proba(X), on_a_cpu.predict_proba(X), atol=0.02
    )


class CountGpuSyncs(Callback):
    """Counts, epoch by epoch, the synchronizing CUDA calls that CUDA's sync
    debug mode warns of (copies from pageable host memory among them)."""

    def initialize(self):
        self.syncs = []
        return self

    def on_epoch_begin(self, net, **kwargs):
        self.caught_ = warnings.catch_warnings(record=True)
        self.log_ = self.caught_.__enter__()
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")

    def on_epoch_end(self, net, **kwargs):
        torch.cuda.set_sync_debug_mode("default")
        self.caught_.__exit__(None, None, None)
        self.syncs.append(sum("synchroniz" in str(w.message) for w in self.log_))
        del self.caught_, self.log_


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_synchronizes_with_a_gpu_as_often_whatever_the_batches():
    # What the count of waits above cannot see: the synchronizing calls of
    # CUDA itself. An epoch of 8 times the batches must make as many.
    syncs = {}
    for n in (256, 2048):
        X, y = _two_classes(n)
        clf = SiameseClassifier(
            **{**TINY, "max_epochs": 3}, device="cuda", callbacks=[CountGpuSyncs()]
        ).fit(X, y)
        spy = next(c for _, c in clf.net_.callbacks_ if isinstance(c, CountGpuSyncs))
        syncs[n] = spy.syncs[1:]  # the first epoch also allocates
    assert syncs[256] == syncs[2048], syncs


class InterruptSecondBatch(Callback):
    def on_batch_end(self, net, training=False, **kwargs):
        if training and len(net.history[-1]["batches"]) == 2:
            raise KeyboardInterrupt


def test_an_interrupted_epoch_leaves_numbers_in_the_history(data):
    X, y = data
    clf = SiameseClassifier(**TINY, callbacks=[InterruptSecondBatch()]).fit(X, y)
    batches = clf.history_[-1]["batches"]
    assert [type(b["train_loss"]) for b in batches] == [float, float]
    pickle.loads(pickle.dumps(clf))


# -- interruption -------------------------------------------------------------------


@pytest.mark.parametrize("early_stopping", [True, False])
def test_keyboard_interrupt_in_epoch_2_keeps_a_usable_model(data, early_stopping):
    X, y = data
    clf = SiameseClassifier(
        **{**TINY, "max_epochs": 20},
        references="all",
        early_stopping=early_stopping,
        callbacks=[RaiseAtEpoch(2, KeyboardInterrupt())],
    ).fit(X, y)
    assert clf.n_epochs_ == len(clf.history_) == 2
    # The references are the embeddings of the weights the model holds.
    np.testing.assert_array_equal(clf.transform(X).astype(np.float32), clf.references_)
    np.testing.assert_array_equal(clf.reference_labels_, y)
    proba = clf.predict_proba(X)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert np.isin(clf.predict(X), clf.classes_).all()


# -- determinism ------------------------------------------------------------------


def test_same_random_state_gives_identical_fits(data):
    X, y = data
    first = SiameseClassifier(**TINY).fit(X, y)
    # The global generators must not matter.
    torch.manual_seed(123)
    np.random.seed(123)
    torch.rand(10)
    second = SiameseClassifier(**TINY).fit(X, y)
    for method in ("predict_proba", "predict", "decision_function", "transform"):
        np.testing.assert_array_equal(
            getattr(first, method)(X), getattr(second, method)(X)
        )
    np.testing.assert_array_equal(first.references_, second.references_)
    assert first.temperature_ == second.temperature_


def test_embeddings_copied_back_in_parts_are_the_same(data, monkeypatch):
    # Embedded blocks wait on the device and go back to the host together;
    # with a copy after every block, the rows must come back the same, in order.
    X, y = data
    clf = SiameseClassifier(**TINY).fit(X, y)
    X_big = np.tile(X, (2500 // len(X) + 1, 1))[:2500]
    whole = clf.transform(X_big)
    monkeypatch.setattr(_training, "_EMBED_COPY_ROWS", 1)
    monkeypatch.setitem(_training.EMBED_ROWS, "cpu", 1000)
    parts = clf.transform(X_big)
    assert parts.shape == (2500, whole.shape[1])
    np.testing.assert_allclose(parts, whole, rtol=1e-5, atol=1e-6)


def test_rows_embedded_when_read_are_those_of_embedding_all(data):
    # A fit's references and calibration read its embeddings through
    # EmbeddedRows, which embeds a row the first time it is read: every way of
    # indexing gives what indexing the whole embedding gives, in whatever
    # order and with whatever repeats the rows are read (bit for bit with
    # these 3 features; with some widths a CPU's matrix product rounds a row
    # at another place in a block differently, by a few units in the last
    # place).
    X, y = data
    clf = SiameseClassifier(**TINY, n_members=2).fit(X, y)
    Z = clf._scaled(np.tile(X, (2500 // len(X) + 1, 1))[:2500])
    whole = clf.net_.embed(Z)
    lazy = _training.EmbeddedRows(clf.net_, Z)
    assert len(lazy) == len(Z)
    rng = np.random.RandomState(0)
    for index in (
        7,
        slice(100, 1300, 3),
        rng.randint(len(Z), size=400),  # unsorted, with repeats
        rng.rand(len(Z)) < 0.3,
        np.array([], dtype=int),
        slice(None),
        slice(None, None, -7),
        np.array([-1, 3, -2500]),
        [5, 5, 2],
        np.uint16([2499, 0]),
    ):
        np.testing.assert_array_equal(lazy[index], whole[index])
    np.testing.assert_array_equal(np.asarray(lazy), whole)
    for index in (np.array([2500]), np.array([-2501]), 2500):
        with pytest.raises(IndexError):
            lazy[index]


def test_rows_read_fill_the_padding_of_their_pass(data, monkeypatch):
    # Rows not embedded yet take the place of a pass's padding, at most
    # _FILL_ROWS of them (a GPU's pass is 65,536 rows, each copied back).
    X, y = data
    clf = SiameseClassifier(**TINY).fit(X, y)
    Z = clf._scaled(X)
    monkeypatch.setattr(clf.net_, "embed_pass_rows", lambda *args, **kwargs: 8)
    lazy = _training.EmbeddedRows(clf.net_, Z)
    lazy[[5, 2]]
    np.testing.assert_array_equal(np.flatnonzero(lazy._at >= 0), range(8))
    monkeypatch.setattr(_training, "_FILL_ROWS", 3)
    lazy[[30]]
    np.testing.assert_array_equal(np.flatnonzero(lazy._at >= 0), [*range(11), 30])
    np.testing.assert_array_equal(np.asarray(lazy), clf.net_.embed(Z))


@pytest.fixture
def rows_per_pass(monkeypatch):
    """The number of rows of each pass of ``SiameseNet.embed`` from here on."""
    counts = []
    embed = _training.SiameseNet.embed

    def counted(net, Z, *args, rows=None, **kwargs):
        counts.append(len(Z) if rows is None else len(rows))
        return embed(net, Z, *args, rows=rows, **kwargs)

    monkeypatch.setattr(_training.SiameseNet, "embed", counted)
    return counts


def test_passes_hold_fewer_rows_for_wide_activations(monkeypatch):
    # EMBED_ROWS rows a pass, or fewer (a power of 2) when the widest output
    # of any part of the module would exceed the budget of values; measured
    # by one pass over one row, once per module and shape of row: later
    # calls read no row.
    monkeypatch.setitem(_training.EMBED_ROWS, "cpu", 4096)
    monkeypatch.setitem(_training._EMBED_VALUES, "cpu", 1 << 20)
    row = torch.zeros(1, 4)
    reads = []

    def pass_rows(module, row, kind):
        def first_row():
            reads.append(module)
            return row

        return _training.pass_rows(module, kind, tuple(row.shape[1:]), first_row)

    narrow = torch.nn.Linear(4, 2)
    wide = torch.nn.Sequential(
        torch.nn.Linear(4, 1000), torch.nn.ReLU(), torch.nn.Linear(1000, 2)
    )
    wider = torch.nn.Sequential(
        torch.nn.Linear(4, 300_000), torch.nn.Linear(300_000, 1)
    )
    passes = []
    wide.register_forward_pre_hook(lambda module, args: passes.append(len(args[0])))
    assert pass_rows(narrow, row, "cpu") == 4096  # the cap
    assert pass_rows(wide, row, "cpu") == 1024  # 2^20 / 1,000
    assert pass_rows(wider, row, "cpu") == 2  # 2^20 / 300,000
    assert pass_rows(wide, row, "cpu") == 1024
    assert passes == [1]  # measured once
    assert reads == [narrow, wide, wider]  # the row read once per module
    # A GPU's bound (on memory): the same measurement, another budget.
    monkeypatch.setitem(_training.EMBED_ROWS, "cuda", 8192)
    monkeypatch.setitem(_training._EMBED_VALUES, "cuda", 1 << 26)
    assert pass_rows(wide, row, "cuda") == 8192
    assert pass_rows(wider, row, "cuda") == 128  # 2^26 / 300,000
    assert passes == [1]
    monkeypatch.setitem(_training._EMBED_VALUES, "cpu", 10)
    assert pass_rows(wide, row, "cpu") == 1  # never fewer than 1
    assert passes == [1]
    # Another shape of row is measured again (the input may be the widest).
    relu = torch.nn.ReLU()
    assert pass_rows(relu, row, "cpu") == 2  # 10 // 4 values
    assert pass_rows(relu, torch.zeros(1, 50), "cpu") == 1
    assert reads == [narrow, wide, wider, relu, relu]


def test_a_fit_embeds_only_the_rows_it_reads(rows_per_pass, monkeypatch):
    # References from k-means on a sample of each class, calibration on a
    # capped number of queries per class: a large fit embeds those rows
    # only (and rows not read yet in the rest of each call's last pass), and
    # it is the same fit as one that embeds every row first.
    from sksiamese import _calibration, _classifier

    monkeypatch.setattr(_calibration, "_CALIBRATION_PER_CLASS", 100)
    for device in list(_training.EMBED_ROWS):  # whichever the model runs on
        monkeypatch.setitem(_training.EMBED_ROWS, device, 64)
    rng = np.random.RandomState(0)
    y = rng.randint(2, size=6000)
    X = rng.normal(size=(6000, 3)) + y[:, None]
    params = dict(TINY, max_epochs=1, batch_size=256, references=10)
    lazy = SiameseClassifier(**params).fit(X, y)
    # k-means sees 200 rows of each class twice (the fit's references, and
    # the clusters the out-of-bag calibration's 8 members share); each
    # member scores 2 * 100 / 8 queries per class that it left out, each
    # with one same-class and one other-class partner; each call fills its
    # last pass of 64 rows.
    assert lazy._out_of_bag() and lazy.n_members == 8
    read = 2 * 2 * 200 + 8 * 2 * 25 * 3
    assert sum(rows_per_pass) <= read + 64 * len(rows_per_pass) < len(X)
    monkeypatch.setattr(_classifier, "EmbeddedRows", lambda net, Z: net.embed(Z))
    full = SiameseClassifier(**params).fit(X, y)
    np.testing.assert_array_equal(lazy.references_, full.references_)
    assert lazy.temperature_ == full.temperature_
    np.testing.assert_array_equal(lazy.predict_proba(X), full.predict_proba(X))


def test_a_fit_on_many_small_classes_embeds_them_together(rows_per_pass):
    # k-means sees every row of a small class: the references embed such
    # classes in one pass, not one pass (padded to a whole block) per class.
    rng = np.random.RandomState(0)
    y = np.repeat(np.arange(60), 6)
    X = rng.normal(size=(len(y), 3)) + (y % 5)[:, None]
    SiameseClassifier(**dict(TINY, max_epochs=1, early_stopping=False)).fit(X, y)
    # The first read (the references, or the out-of-bag calibration's)
    # embeds every row: the 360 are fewer than the rows of one pass, and
    # rows not read yet fill what would be its padding.
    assert rows_per_pass == [360]


def test_predictions_compared_in_parts_are_the_same(data, monkeypatch):
    # predict_proba compares each group of embeddings with the references on
    # the device as soon as it is embedded; groups of one block of 1,024 rows
    # must give the probabilities of one group, bit for bit.
    X, y = data
    for device in list(_training.EMBED_ROWS):  # whichever the model runs on
        monkeypatch.setitem(_training.EMBED_ROWS, device, 1024)
    clf = SiameseClassifier(**TINY).fit(X, y)
    X_big = np.tile(X, (2500 // len(X) + 1, 1))[:2500]
    whole = clf.predict_proba(X_big), clf.decision_function(X_big)
    monkeypatch.setattr(_training, "_EMBED_COPY_ROWS", 1)
    parts = clf.predict_proba(X_big), clf.decision_function(X_big)
    np.testing.assert_array_equal(parts[0], whole[0])
    np.testing.assert_array_equal(parts[1], whole[1])


def test_pickle_round_trip_gives_identical_outputs(data):
    X, y = data
    clf = SiameseClassifier(**TINY).fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    for method in ("predict_proba", "predict", "decision_function", "transform"):
        np.testing.assert_array_equal(
            getattr(restored, method)(X), getattr(clf, method)(X)
        )
    np.testing.assert_array_equal(
        restored.pair_distance(X, X[::-1]), clf.pair_distance(X, X[::-1])
    )
    # A refit of the restored estimator repeats the original fit.
    np.testing.assert_array_equal(
        restored.fit(X, y).predict_proba(X), clf.predict_proba(X)
    )


Best = collections.namedtuple("Best", "epoch loss")


class _KeepsState(Callback):
    """A user callback whose state is a namedtuple and a defaultdict."""

    def initialize(self):
        self.best_ = Best(0, float("inf"))
        self.seen_ = collections.defaultdict(int)
        return self

    def on_epoch_end(self, net, **kwargs):
        self.seen_["epochs"] += 1
        loss = net.history[-1, "train_loss"]
        if loss < self.best_.loss:
            self.best_ = Best(len(net.history), loss)


def test_callbacks_keep_the_types_of_their_state_through_pickle_and_partial_fit(
    data,
):
    # Their tensors are copied to the CPU for pickling (and for the copy
    # partial_fit keeps to restore on failure): namedtuples and defaultdicts
    # stay what they are.
    X, y = data
    clf = SiameseClassifier(**TINY, callbacks=[_KeepsState()]).fit(X, y)
    for model in (pickle.loads(pickle.dumps(clf)), clf):
        model.partial_fit(X, y)
        state = dict(model.net_.callbacks_)["_KeepsState"]
        assert type(state.best_) is Best
        assert type(state.seen_) is collections.defaultdict
        assert state.seen_["epochs"] == TINY["max_epochs"] + 1
        assert state.seen_["not counted"] == 0


# -- property-based ---------------------------------------------------------------

PROPERTY = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ELEMENTS = st.one_of(
    st.floats(-5, 5, width=32),
    st.sampled_from([0.0, 1.0, -1e30, 1e30, np.nan]),
)


@st.composite
def datasets(draw):
    """X of random shape, dtype and blanks; labels of random type and counts."""
    n = draw(st.integers(2, 24))
    d = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int64, np.bool_]))
    if dtype in (np.float64, np.float32):
        X = draw(arrays(dtype, (n, d), elements=ELEMENTS))
        if draw(st.integers(0, 9)) == 0:
            X[draw(st.integers(0, n - 1)), draw(st.integers(0, d - 1))] = np.inf
    elif dtype is np.int64:
        X = draw(arrays(dtype, (n, d), elements=st.integers(-1000, 1000)))
    else:
        X = draw(arrays(dtype, (n, d)))
    labels = draw(
        st.sampled_from([[0, 1, 2], ["a", "b"], [-1.0, 2.0, 3.0, 9.0], [True, False]])
    )
    y = np.array(draw(st.lists(st.sampled_from(labels), min_size=n, max_size=n)))
    return X, y


def _assert_valid_outputs(clf, X):
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), len(clf.classes_))
    assert np.isfinite(proba).all()
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    assert np.isin(clf.predict(X), clf.classes_).all()
    assert np.isfinite(clf.transform(X)).all()


@settings(PROPERTY, max_examples=25)
@given(
    dataset=datasets(),
    params=st.fixed_dictionaries(
        {
            "loss": st.sampled_from(
                ["contrastive", "bce", "triplet", "prototype", "nca"]
            ),
            "distance": st.sampled_from(["euclidean", "manhattan", "cosine"]),
            "references": st.sampled_from(["all", "prototypes", 2]),
            "n_neighbors": st.sampled_from([1, 2, 10]),
            "batch_size": st.sampled_from([4, 8, 64]),
            "samples_per_class": st.sampled_from([None, 2, 5]),
            "validation_fraction": st.sampled_from([0.0, 0.1, 0.5]),
        }
    ),
)
def test_random_data_fits_validly_or_fails_clearly(dataset, params):
    X, y = dataset
    clf = SiameseClassifier(
        hidden_layer_sizes=(4,), embedding_dim=2, max_epochs=2, random_state=0
    )
    clf.set_params(**params)
    # Data that nothing is wrong with must fit: a refusal is only right for
    # infinite values, a single class, or a class with a single sample.
    values = np.asarray(X, dtype=np.float64)
    _, counts = np.unique(y, return_counts=True)
    fine = not np.isinf(values).any() and len(counts) >= 2 and counts.min() >= 2
    try:
        clf.fit(X, y)
    except (ValueError, TypeError) as exc:
        event(f"refused: {type(exc).__name__}")
        assert not fine, f"valid data refused: {exc}"
        assert str(exc)
        assert not hasattr(clf, "classes_")  # nothing half-fitted
        return
    assert fine, "data with infinite values, one class or a lone sample fitted"
    event("fitted")
    _assert_valid_outputs(clf, X)


@settings(PROPERTY, max_examples=15)
@given(
    chunks=st.lists(
        st.tuples(
            st.integers(1, 15),
            st.sampled_from([[0, 1, 2], [0, 1], [2], [0, 1, 2, 5]]),
            st.booleans(),
        ),
        min_size=1,
        max_size=4,
    ),
    seed=st.integers(0, 2**16),
)
def test_random_partial_fit_chunks_valid_or_clear(chunks, seed):
    rng = np.random.RandomState(seed)
    clf = SiameseClassifier(
        hidden_layer_sizes=(4,), embedding_dim=2, batch_size=8, random_state=0
    )
    seen = np.zeros(3, dtype=int)  # samples of each class in the learned chunks
    for n, labels, blanks in chunks:
        y = rng.choice(labels, n)
        X = rng.normal(size=(n, 3)) + y[:, None]
        if blanks:
            X[rng.rand(n, 3) < 0.3] = np.nan
        # A chunk that nothing is wrong with must be learned: a refusal is
        # only right for a label outside classes, a first chunk of a single
        # sample, or fewer than 2 classes of 2 samples in all seen so far.
        known = np.isin(y, [0, 1, 2]).all()
        counts = seen + np.bincount(y[y < 3], minlength=3)[:3]
        fine = known and (seen.sum() > 0 or n >= 2) and (counts >= 2).sum() >= 2
        before = copy.deepcopy(vars(clf))
        try:
            clf.partial_fit(X, y, classes=[0, 1, 2])
        except ValueError as exc:
            event("chunk refused")
            assert not fine, f"valid chunk refused: {exc}"
            assert str(exc)
            _assert_same(vars(clf), before)
            continue
        assert fine, "a chunk with an unknown label or too few samples learned"
        event("chunk learned")
        seen = counts
        _assert_valid_outputs(clf, X)


@pytest.fixture(scope="module")
def fitted_with_blanks(data):
    X, y = data
    X = X.copy()
    X[::7, 1] = np.nan
    return SiameseClassifier(**TINY).fit(X, y)


@settings(PROPERTY, max_examples=40)
@given(
    n=st.integers(0, 20),
    d=st.sampled_from([3, 3, 3, 2, 4]),
    dtype=st.sampled_from([np.float64, np.float32, np.float16, np.int8]),
    data=st.data(),
)
def test_random_queries_give_valid_outputs_or_clear_errors(
    fitted_with_blanks, n, d, dtype, data
):
    clf = fitted_with_blanks
    if np.issubdtype(dtype, np.floating):
        elements = st.one_of(st.floats(-5, 5, width=16), st.sampled_from([np.nan]))
    else:
        elements = st.integers(-100, 100)
    X = data.draw(arrays(dtype, (n, d), elements=elements))
    if n == 0 or d != clf.n_features_in_:
        with pytest.raises(ValueError, match="0 sample|features"):
            clf.predict_proba(X)
        return
    _assert_valid_outputs(clf, X)
    score = clf.pair_score(X, X[::-1])
    assert ((score >= 0) & (score <= 1)).all()


@settings(PROPERTY, max_examples=30)
@given(
    labels=st.lists(st.sampled_from(["x", "y", "z", 7]), min_size=1, max_size=12),
)
def test_random_reference_sets_valid_or_clear(fitted_with_blanks, data, labels):
    X, _ = data
    clf = copy.deepcopy(fitted_with_blanks)
    y = np.array(labels)  # mixed str/int becomes str
    try:
        clf.fit_references(X[: len(y)], y)
    except ValueError as exc:
        assert "at least 2 classes" in str(exc)
        assert len(set(y.tolist())) < 2
        return
    assert set(clf.classes_) == set(y.tolist())
    _assert_valid_outputs(clf, X)


# -- the pair classifier ----------------------------------------------------------


@pytest.fixture(scope="module")
def pair_data():
    rng = np.random.RandomState(0)
    same = np.tile([0, 1], 30)
    X = rng.normal(size=(60, 2, 3))
    X[same == 1, 1] = X[same == 1, 0] + 0.1 * rng.normal(size=(30, 3))
    return X, same


@pytest.mark.parametrize(
    "params, make_input, error, match",
    [
        ({}, lambda X, y: (X.reshape(60, 6)[:, :5], y), ValueError, "odd number"),
        ({}, lambda X, y: (X, y * 2), ValueError, "y must be 1"),
        ({"lr": 1e6}, lambda X, y: (X, y), TrainingDivergedError, "lower `lr`"),
    ],
    ids=["odd-width", "labels", "diverging-lr"],
)
def test_failed_pair_fit_leaves_fitted_estimator_unchanged(
    pair_data, params, make_input, error, match
):
    X, same = pair_data
    clf = SiamesePairClassifier(**TINY).fit(X, same)
    proba = clf.predict_proba(X)
    clf.set_params(**params)
    state = copy.deepcopy(vars(clf))
    with pytest.raises(error, match=match):
        clf.fit(*make_input(X, same))
    _assert_same(vars(clf), state)
    np.testing.assert_array_equal(clf.predict_proba(X), proba)


def test_pair_classifier_repeats_and_survives_pickle(pair_data):
    X, same = pair_data
    first = SiamesePairClassifier(**TINY).fit(X, same)
    torch.manual_seed(7)
    second = SiamesePairClassifier(**TINY).fit(X, same)
    restored = pickle.loads(pickle.dumps(first))
    for method in ("predict_proba", "predict", "decision_function", "transform"):
        expected = getattr(first, method)(X)
        np.testing.assert_array_equal(getattr(second, method)(X), expected)
        np.testing.assert_array_equal(getattr(restored, method)(X), expected)


@settings(PROPERTY, max_examples=30)
@given(
    n=st.integers(1, 20),
    shape=st.sampled_from(["pairs", "side-by-side", "odd", "three-sides"]),
    labels=st.sampled_from([[0, 1], [True, False], [0, 2], ["no", "yes"], [1]]),
    blanks=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_pairs_fit_validly_or_fail_clearly(n, shape, labels, blanks, seed):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 3 if shape == "three-sides" else 2, 3))
    if blanks:
        X[rng.rand(*X.shape) < 0.2] = np.nan
    if shape != "pairs" and shape != "three-sides":
        X = X.reshape(n, 6)[:, : 5 if shape == "odd" else 6]
    y = np.array(labels)[rng.randint(0, len(labels), n)]
    clf = SiamesePairClassifier(
        hidden_layer_sizes=(4,), embedding_dim=2, max_epochs=2, random_state=0
    )
    # Pairs that nothing is wrong with must fit: a refusal is only right for
    # X that is not a set of pairs, labels other than 0/1 (or False/True), or
    # pairs of a single kind.
    fine = (
        shape in ("pairs", "side-by-side")
        and labels in ([0, 1], [True, False])
        and len(np.unique(y)) == 2
    )
    try:
        clf.fit(X, y)
    except (ValueError, TypeError) as exc:
        event(f"refused: {type(exc).__name__}")
        assert not fine, f"valid pairs refused: {exc}"
        assert str(exc)
        assert not hasattr(clf, "net_")
        return
    assert fine, "pairs of one kind, other labels or a wrong shape fitted"
    event("fitted")
    proba = clf.predict_proba(X)
    assert np.isfinite(proba).all() and ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert np.isin(clf.predict(X), clf.classes_).all()
    assert np.isfinite(clf.transform(X)).all()


# -- large inputs ------------------------------------------------------------------


def test_fits_in_threads_repeat_sequential_fits(monkeypatch):
    """Two fits in two threads of one process (joblib's threading backend, an
    in-process Dask cluster) give the weights of the same fits one after the
    other, although torch's random generator is shared by the process.

    The encoder of each fit waits, while it draws its weights, until the
    other fit is drawing too, waiting its turn for torch's generator, or
    done: the two fits interleave if nothing keeps them apart, however late
    one thread starts. To know that the other fit waits, without a clock,
    the lock that takes turns is watched."""
    import threading

    change = threading.Condition()
    state = {0: "running", 1: "running"}  # or "waiting", "drawing", "done"
    peak, stalled = [0], []
    me = threading.local()

    def set_state(value):
        if hasattr(me, "i"):
            with change:
                state[me.i] = value
                peak[0] = max(peak[0], list(state.values()).count("drawing"))
                change.notify_all()

    class Watched:
        """The lock, telling when a fit finds it taken by the other."""

        def __init__(self, lock):
            self.lock = lock

        def __enter__(self):
            acquire = getattr(self.lock, "acquire", None)
            if acquire is None:
                self.lock.__enter__()
            elif not acquire(blocking=False):
                set_state("waiting")
                acquire()
                set_state("running")

        def __exit__(self, *exc):
            release = getattr(self.lock, "release", None)
            return self.lock.__exit__(*exc) if release is None else release()

    monkeypatch.setattr(
        _training, "_TORCH_RNG_LOCK", Watched(_training._TORCH_RNG_LOCK)
    )

    class Rendezvous(torch.nn.Module):
        def __init__(self):
            super().__init__()
            if hasattr(me, "i"):
                set_state("drawing")
                other = 1 - me.i
                with change:
                    # Only a fit that neither draws, waits nor ends would
                    # stall here: the time limit keeps a failure from hanging.
                    if not change.wait_for(
                        lambda: state[other] != "running", timeout=60
                    ):
                        stalled.append(me.i)
            self.layer = torch.nn.Linear(4, 3)
            set_state("running")

        def forward(self, x):
            return self.layer(x)

    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(40, 4)), np.arange(40) % 2

    def fit(seed):
        clf = SiameseClassifier(Rendezvous, max_epochs=1, random_state=seed)
        return clf.fit(X, y).net_.module_.state_dict()

    threaded = [None, None]

    def run(i):
        me.i = i
        try:
            threaded[i] = fit(i)
        finally:
            set_state("done")

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not stalled, "a fit waited for the other, which neither ran nor waited"
    assert peak[0] == 1, "the two fits drew their weights at the same time"
    for seed in (0, 1):
        sequential = fit(seed)
        for name, value in sequential.items():
            torch.testing.assert_close(threaded[seed][name], value, rtol=0, atol=0)
