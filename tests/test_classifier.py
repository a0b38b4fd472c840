"""Behaviour of SiameseClassifier on real data and inside scikit-learn tools."""

import pickle
import re
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from imblearn.over_sampling import RandomOverSampler
from imblearn.pipeline import make_pipeline as make_imb_pipeline
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_breast_cancer, load_wine, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import (
    GridSearchCV,
    RandomizedSearchCV,
    StratifiedKFold,
    TunedThresholdClassifierCV,
    cross_val_score,
    cross_validate,
    train_test_split,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import Callback
from skorch.history import History

import sksiamese
from sksiamese import SiameseClassifier, _training
from sksiamese._sampling import batch_layout

SMALL = dict(hidden_layer_sizes=(32,), embedding_dim=8, max_epochs=30, random_state=0)
# Columns of transform with SMALL: 8 members (the default), 8 dimensions each.
WIDTH = 8 * 8


def assert_trained(clf, factor=0.9):
    """The training loss fell: on easy sets, an encoder that never trained
    (random weights) scores well too, so a score alone does not show it."""
    first, last = clf.history_[0, "train_loss"], clf.history_[-1, "train_loss"]
    assert last < factor * first, (first, last)


@pytest.fixture(scope="module")
def fitted(wine):
    """One fitted model shared by the tests that only read it."""
    X_train, _, y_train, _ = wine
    return SiameseClassifier(**SMALL).fit(X_train, y_train)


def test_learns_wine_and_surface_is_consistent(fitted, wine):
    _, X_test, _, y_test = wine
    assert_trained(fitted)
    assert fitted.score(X_test, y_test) > 0.9
    proba = fitted.predict_proba(X_test)
    assert proba.shape == (len(X_test), 3)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_array_equal(
        fitted.classes_[proba.argmax(1)], fitted.predict(X_test)
    )
    np.testing.assert_allclose(
        np.exp(fitted.predict_log_proba(X_test)), proba, rtol=1e-10
    )
    decision = fitted.decision_function(X_test)
    np.testing.assert_array_equal(decision.argmax(1), proba.argmax(1))
    emb = fitted.transform(X_test)
    assert emb.shape == (len(X_test), WIDTH) and emb.dtype == np.float64
    names = fitted.get_feature_names_out()
    assert names.tolist() == [f"siameseclassifier{i}" for i in range(WIDTH)]


def test_probabilities_are_calibrated_not_overconfident(fitted, wine):
    _, X_test, _, y_test = wine
    proba = fitted.predict_proba(X_test)
    # Confidence tracks accuracy: not all probabilities pinned at 0 or 1.
    confidence = proba.max(1)
    assert 0.6 < confidence.mean() < 0.999


def test_string_labels_binary_decision(wine):
    X, _, y, _ = wine
    labels = np.where(y == 0, "cultivar-a", "other")
    clf = SiameseClassifier(**SMALL).fit(X, labels)
    assert clf.classes_.tolist() == ["cultivar-a", "other"]
    assert set(clf.predict(X)) <= {"cultivar-a", "other"}
    decision = clf.decision_function(X)
    assert decision.shape == (len(X),)
    # Positive decision means classes_[1].
    np.testing.assert_array_equal(
        np.where(decision > 0, "other", "cultivar-a"), clf.predict(X)
    )
    assert accuracy_score(labels, clf.predict(X)) > 0.9


@pytest.mark.parametrize("references", ["all", "prototypes", 5])
def test_reference_strategies(wine, references):
    X_train, X_test, y_train, y_test = wine
    clf = SiameseClassifier(references=references, **SMALL).fit(X_train, y_train)
    assert_trained(clf)
    n_refs = {"all": len(X_train), "prototypes": 3, 5: 15}[references]
    assert clf.references_.shape == (n_refs, WIDTH)
    assert np.bincount(np.searchsorted(clf.classes_, clf.reference_labels_)).min() >= 1
    assert clf.score(X_test, y_test) > 0.85


def test_references_are_embedded_training_samples(wine):
    X_train, _, y_train, _ = wine
    clf = SiameseClassifier(references="all", **SMALL).fit(X_train, y_train)
    np.testing.assert_allclose(clf.transform(X_train), clf.references_, rtol=1e-5)
    np.testing.assert_array_equal(clf.reference_labels_, y_train)


def test_fit_references_recognises_new_classes(wine):
    # Train on two cultivars, then add the third from a handful of samples
    # without retraining: the encoder's features must carry over.
    X_train, X_test, y_train, y_test = wine
    seen = y_train != 2
    clf = SiameseClassifier(**SMALL).fit(X_train[seen], y_train[seen])
    assert_trained(clf)
    weights = [p.detach().clone() for p in clf.net_.module_.parameters()]
    support = np.concatenate([np.flatnonzero(y_train == c)[:3] for c in range(3)])
    clf.fit_references(X_train[support], np.array(["a", "b", "c"])[y_train[support]])
    assert clf.classes_.tolist() == ["a", "b", "c"]
    for before, after in zip(weights, clf.net_.module_.parameters(), strict=True):
        assert torch.equal(before, after)
    pred = clf.predict(X_test)
    assert accuracy_score(np.array(["a", "b", "c"])[y_test], pred) > 0.8


def test_pair_distance_and_score(fitted, wine):
    _, X_test, _, y_test = wine
    a = X_test[y_test == 0][:8]
    b_same = X_test[y_test == 0][8:16]
    b_diff = X_test[y_test == 1][:8]
    d_same, d_diff = fitted.pair_distance(a, b_same), fitted.pair_distance(a, b_diff)
    assert d_same.mean() < d_diff.mean()
    # Over every pair of test samples: calibrated same-class probabilities.
    i, j = np.triu_indices(len(X_test), 1)
    scores = fitted.pair_score(X_test[i], X_test[j])
    same = y_test[i] == y_test[j]
    assert ((0 <= scores) & (scores <= 1)).all()
    assert scores[same].mean() > 0.5 > scores[~same].mean()
    assert roc_auc_score(same, scores) > 0.9
    with pytest.raises(ValueError, match="same number of rows"):
        fitted.pair_distance(a, b_same[:3])


def test_pair_distance_of_float32_and_float64_rows_with_a_pair_head(wine):
    # transform keeps float32 rows in float32: the head of loss="bce" then
    # met two dtypes (a torch error); both sides are compared in float64.
    X_train, X_test, y_train, _ = wine
    clf = SiameseClassifier(**{**SMALL, "max_epochs": 2, "loss": "bce"})
    clf.fit(X_train, y_train)
    a, b = X_test[:6], X_test[6:12]
    expected = clf.pair_distance(a, b)
    for a_, b_ in ((a.astype(np.float32), b), (a, b.astype(np.float32))):
        got = clf.pair_distance(a_, b_)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_blanks_are_not_zeros():
    # A feature that is either blank or 0 decides the class: mapping blanks to 0
    # would erase the signal; the blank indicator keeps it.
    rng = np.random.RandomState(0)
    n = 300
    y = np.repeat([0, 1], n // 2)
    X = rng.normal(size=(n, 3))
    X[:, 0] = np.where(y == 1, np.nan, 0.0)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.5, stratify=y, random_state=0
    )
    clf = SiameseClassifier(**SMALL).fit(X_train, y_train)
    assert clf.score(X_test, y_test) > 0.95
    Z_train, Z_test = np.nan_to_num(X_train), np.nan_to_num(X_test)
    zeros = SiameseClassifier(**SMALL).fit(Z_train, y_train)
    assert zeros.score(Z_test, y_test) < 0.7


def test_losses_and_distances_fit(wine):
    X_train, X_test, y_train, y_test = wine
    for loss, distance in [
        ("bce", "euclidean"),
        ("triplet", "cosine"),
        ("prototype", "manhattan"),
        ("nca", "euclidean"),
        ("nca", "cosine"),
    ]:
        clf = SiameseClassifier(loss=loss, distance=distance, **SMALL)
        assert clf.fit(X_train, y_train).score(X_test, y_test) > 0.85, loss
        assert_trained(clf)


def test_early_stopping_stops_and_history(wine):
    X_train, _, y_train, _ = wine
    clf = SiameseClassifier(
        hidden_layer_sizes=(32,),
        embedding_dim=8,
        max_epochs=300,
        early_stopping=True,
        n_iter_no_change=3,
        random_state=0,
    ).fit(X_train, y_train)
    assert clf.n_epochs_ < 300
    assert {"train_loss", "valid_loss"} <= set(clf.history_[-1])
    # The default: a fixed budget of epochs on all the data.
    no_stop = SiameseClassifier(**SMALL).fit(X_train, y_train)
    assert no_stop.n_epochs_ == SMALL["max_epochs"]
    assert "valid_loss" not in no_stop.history_[-1]


def test_user_callbacks_and_verbose(wine, capsys):
    X_train, _, y_train, _ = wine

    class CountEpochs(Callback):
        def initialize(self):
            self.count = 0
            return self

        def on_epoch_end(self, net, **kwargs):
            self.count += 1

    counter = CountEpochs()
    clf = SiameseClassifier(callbacks=[counter], verbose=1, **SMALL).fit(
        X_train, y_train
    )
    assert dict(clf.net_.callbacks_)["CountEpochs"].count == clf.n_epochs_
    # The parameter itself is not touched by fit.
    assert not hasattr(counter, "count")
    assert "train_loss" in capsys.readouterr().out


def test_user_module_class_and_instance(wine):
    X_train, X_test, y_train, y_test = wine

    class Encoder(torch.nn.Module):
        def __init__(self, n_inputs=13, width=16):
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(n_inputs, width),
                torch.nn.Tanh(),
                torch.nn.Linear(width, 4),
            )

        def forward(self, x):
            return self.net(x)

    instance = Encoder()
    before = [p.detach().clone() for p in instance.parameters()]
    clf = SiameseClassifier(encoder=instance, max_epochs=15, random_state=0)
    assert clf.fit(X_train, y_train).score(X_test, y_test) > 0.85
    assert_trained(clf)
    for a, b in zip(before, instance.parameters(), strict=True):
        assert torch.equal(a, b)  # the user's module is copied, not trained
    by_class = SiameseClassifier(
        encoder=Encoder, encoder_params={"width": 8}, max_epochs=15, random_state=0
    ).fit(X_train, y_train)
    assert by_class.transform(X_test).shape == (len(X_test), 4)


def test_repeatable_with_random_state(wine):
    X_train, X_test, y_train, _ = wine
    a = SiameseClassifier(**SMALL).fit(X_train, y_train).predict_proba(X_test)
    b = SiameseClassifier(**SMALL).fit(X_train, y_train).predict_proba(X_test)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("loss", ["prototype", "contrastive", "nca", "bce", "triplet"])
def test_every_loss_repeats_with_random_state(wine, loss):
    # On the device "auto" picks: on a GPU, sums that meet at one index (the
    # triplet loss's gradient, k-means' centres) must add in a fixed order.
    X_train, X_test, y_train, _ = wine
    params = dict(SMALL, max_epochs=5, batch_size=32, loss=loss)
    a = SiameseClassifier(**params).fit(X_train, y_train)
    b = SiameseClassifier(**params).fit(X_train, y_train)
    np.testing.assert_array_equal(a.transform(X_test), b.transform(X_test))
    np.testing.assert_array_equal(a.predict_proba(X_test), b.predict_proba(X_test))


def test_pickle_round_trip(fitted, wine):
    _, X_test, _, _ = wine
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(
        restored.predict_proba(X_test), fitted.predict_proba(X_test)
    )


def test_model_from_a_cuda_device_predicts_on_cpu(fitted, wine, monkeypatch):
    # A net pickled while on CUDA records device="cuda"; on a machine without a
    # GPU, skorch maps its tensors to the CPU and predictions go on there.
    _, X_test, _, _ = wine
    expected = fitted.predict(X_test)
    state = fitted.net_.__getstate__()
    state["device"] = "cuda"
    net = type(fitted.net_).__new__(type(fitted.net_))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="no CUDA devices"):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Setting self.device = cpu")
            net.__setstate__(state)
    clone_ = pickle.loads(pickle.dumps(fitted))
    clone_.net_ = net
    assert str(clone_.net_.device) == "cpu"
    np.testing.assert_array_equal(clone_.predict(X_test), expected)


def _tensors(obj, seen=None):
    """The torch tensors held by ``obj``'s attributes, dicts, lists, tuples."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    if hasattr(obj, "__dict__") and not isinstance(obj, (type, torch.nn.Module)):
        return _tensors(vars(obj))
    return []


def test_fitted_attributes_hold_no_tensors_outside_the_net(wine):
    # Only the skorch net holds tensors (which skorch maps to the CPU when a
    # model pickled on a GPU is loaded without one).
    X_train, _, y_train, _ = wine
    for clf in (
        SiameseClassifier(**SMALL).fit(X_train, y_train),
        SiameseClassifier(early_stopping=True, **SMALL).fit(X_train, y_train),
        SiameseClassifier(**SMALL).partial_fit(X_train, y_train, classes=[0, 1, 2]),
    ):
        rest = {k: v for k, v in vars(clf).items() if k != "net_"}
        assert _tensors(rest) == []


def test_pickled_callbacks_hold_their_tensors_on_the_cpu(wine, monkeypatch):
    # EarlyStopping keeps the best weights on the training device; pickling
    # the net maps them to the CPU, as skorch does for the module. On a CPU
    # machine the mapping is checked by spying on it.
    import sksiamese._training as training

    X_train, _, y_train, _ = wine
    clf = SiameseClassifier(early_stopping=True, **SMALL).fit(X_train, y_train)
    (stopper,) = [cb for name, cb in clf.net_.callbacks_ if name == "early_stopping"]
    weights = stopper.best_model_weights_
    assert _tensors(weights)
    mapped = []
    to_cpu = training.to_cpu

    def spy(obj):
        mapped.append(obj)
        return to_cpu(obj)

    monkeypatch.setattr(training, "to_cpu", spy)
    again = pickle.loads(pickle.dumps(clf))
    assert any(obj is weights for obj in mapped)
    (copied,) = [cb for name, cb in again.net_.callbacks_ if name == "early_stopping"]
    assert all(t.device.type == "cpu" for t in _tensors(copied.best_model_weights_))
    # The live callback is left as it was.
    assert stopper.best_model_weights_ is weights


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_on_cuda_predict_on_cpu(wine):
    X_train, X_test, y_train, _ = wine
    clf = SiameseClassifier(device="cuda", **SMALL).fit(X_train, y_train)
    expected = clf.predict(X_test)
    cpu = pickle.loads(pickle.dumps(clf))
    cpu.net_.set_params(device="cpu")
    cpu.net_.module_.to("cpu")
    np.testing.assert_array_equal(cpu.predict(X_test), expected)


def test_device_auto_resolves_to_available_device(fitted):
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert str(fitted.net_.device).startswith(expected)


# -- scikit-learn tools -------------------------------------------------------


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    rng = np.random.RandomState(0)
    keep = rng.choice(len(X), 240, replace=False)
    return X[keep], y[keep]


def test_pipeline_equals_bare_estimator(cancer):
    X, y = cancer
    bare = SiameseClassifier(**SMALL).fit(X, y)
    pipe = make_pipeline(SiameseClassifier(**SMALL)).fit(X, y)
    np.testing.assert_array_equal(pipe.predict_proba(X), bare.predict_proba(X))


def test_as_transformer_step_feeding_another_classifier(cancer):
    X, y = cancer
    pipe = make_pipeline(
        StandardScaler(), SiameseClassifier(**SMALL), LogisticRegression()
    )
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.mean() > 0.85


def test_cross_validation_tools(cancer):
    X, y = cancer
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(SiameseClassifier(**SMALL), X, y, cv=cv)
    assert np.isfinite(scores).all() and scores.mean() > 0.85
    res = cross_validate(
        SiameseClassifier(**SMALL),
        X,
        y,
        cv=cv,
        scoring=["balanced_accuracy", "roc_auc", "neg_log_loss"],
    )
    assert res["test_roc_auc"].mean() > 0.9
    assert np.isfinite(res["test_neg_log_loss"]).all()


def test_grid_and_randomized_search(cancer):
    X, y = cancer
    grid = GridSearchCV(
        SiameseClassifier(**SMALL), {"loss": ["contrastive", "prototype"]}, cv=2
    ).fit(X, y)
    assert grid.best_params_["loss"] in {"contrastive", "prototype"}
    assert grid.best_score_ > 0.85
    search = RandomizedSearchCV(
        SiameseClassifier(**SMALL),
        {"lr": [3e-4, 1e-3, 3e-3], "embedding_dim": [4, 8]},
        n_iter=2,
        cv=2,
        random_state=0,
    ).fit(X, y)
    assert search.best_estimator_.transform(X).shape[1] in {8 * 4, 8 * 8}


def test_hidden_layer_sizes_may_be_one_int_as_in_mlp_classifier(wine):
    # MLPClassifier(hidden_layer_sizes=64) is one hidden layer of 64; the
    # same grid over ints was refused here.
    X, _, y, _ = wine
    params = dict(SMALL, max_epochs=1, n_members=1)
    grid = GridSearchCV(
        SiameseClassifier(**params),
        {"hidden_layer_sizes": [16, (16,)]},
        cv=2,
        error_score="raise",
    ).fit(X, y)
    one, tup = grid.cv_results_["mean_test_score"]
    assert one == tup
    clf = SiameseClassifier(**dict(params, hidden_layer_sizes=16)).fit(X, y)
    linear = [m for m in clf.net_.module_.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linear] == [16, 8]


def test_clone_keeps_params_and_drops_fit(fitted):
    c = clone(fitted)
    assert c.get_params() == fitted.get_params()
    assert not hasattr(c, "net_")


def test_calibrated_and_tuned_threshold(cancer):
    X, y = cancer
    cal = CalibratedClassifierCV(SiameseClassifier(**SMALL), cv=2).fit(X, y)
    proba = cal.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert roc_auc_score(y, proba[:, 1]) > 0.95
    tuned = TunedThresholdClassifierCV(
        SiameseClassifier(**SMALL),
        scoring="balanced_accuracy",
        cv=2,
        random_state=0,
    ).fit(X, y)
    assert np.isfinite(tuned.best_threshold_)
    assert tuned.score(X, y) > 0.85


def test_imblearn_pipeline_after_sampler(cancer):
    X, y = cancer
    keep = np.r_[np.flatnonzero(y == 1), np.flatnonzero(y == 0)[:20]]
    pipe = make_imb_pipeline(
        RandomOverSampler(random_state=0), SiameseClassifier(**SMALL)
    )
    pipe.fit(X[keep], y[keep])
    assert set(pipe.predict(X)) == {0, 1}
    # The model saw the classes the sampler made equal (20 against 212 without).
    np.testing.assert_array_equal(pipe[-1].class_prior_, [0.5, 0.5])


# -- errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, X, y, error, message",
    [
        ({}, np.ones((6, 2)), np.zeros(6), ValueError, "at least 2 classes"),
        ({}, np.eye(5), [0, 0, 1, 1, 2], ValueError, "these classes have only 1: [2]"),
        ({}, np.array([[1.0, np.inf]] * 4), [0, 0, 1, 1], ValueError, "infinity"),
        ({}, np.ones((4, 2, 2)), [0, 0, 1, 1], ValueError, "Found array with dim 3"),
        ({}, np.ones((4, 2)), [0, 1, 0], ValueError, "inconsistent numbers"),
        (
            {"loss": "hinge"},
            np.ones((4, 2)),
            [0, 0, 1, 1],
            ValueError,
            "The 'loss' parameter of SiameseClassifier must be",
        ),
        (
            {"distance": "cheb"},
            np.ones((4, 2)),
            [0, 0, 1, 1],
            ValueError,
            "The 'distance' parameter",
        ),
        (
            {"encoder": "rnn"},
            np.ones((4, 2)),
            [0, 0, 1, 1],
            ValueError,
            "The 'encoder' parameter",
        ),
        (
            {"device": "tpu"},
            np.ones((4, 2)),
            [0, 0, 1, 1],
            ValueError,
            "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'",
        ),
        (
            {"encoder": "cnn"},
            np.ones((4, 5)),
            [0, 0, 1, 1],
            ValueError,
            "encoder='cnn' needs the image shape",
        ),
    ],
)
def test_bad_input_is_named(params, X, y, error, message):
    with pytest.raises(error, match=re.escape(message)):
        SiameseClassifier(max_epochs=1, **params).fit(X, y)


def test_feature_count_mismatch_at_predict(fitted):
    with pytest.raises(ValueError, match="X has 5 features, but SiameseClassifier"):
        fitted.predict(np.ones((2, 5)))


def test_user_module_with_wrong_output_shape(wine):
    X_train, _, y_train, _ = wine

    class Flat(torch.nn.Module):
        def forward(self, x):
            return x.sum(1)

    with pytest.raises(ValueError, match="must return a 2-D tensor"):
        SiameseClassifier(encoder=Flat(), max_epochs=1).fit(X_train, y_train)


def test_mixed_precision_trains(wine):
    X_train, X_test, y_train, y_test = wine
    clf = SiameseClassifier(mixed_precision=True, **SMALL).fit(X_train, y_train)
    assert clf.score(X_test, y_test) > 0.85
    assert_trained(clf)
    assert clf.transform(X_test).dtype == np.float64


def test_batches_can_be_gathered_on_the_training_device(wine):
    # On a GPU the iterator keeps the data there; the same code path runs with
    # the CPU as the "device" and must give the same model as host batches.
    X_train, X_test, y_train, _ = wine
    expected = SiameseClassifier(**SMALL).fit(X_train, y_train).predict_proba(X_test)
    clf = SiameseClassifier(**SMALL)
    plan = clf._fit_setup(X_train, y_train)
    if not torch.cuda.is_available():
        assert plan.net.iterator_train__device is None  # host batches
    plan.net.iterator_train__device = "cpu"
    clf._train(plan)
    clf._fit_finish(plan)
    np.testing.assert_array_equal(clf.predict_proba(X_test), expected)
    # The held-out batches of early stopping, too.
    params = dict(SMALL, max_epochs=5, early_stopping=True)
    expected = SiameseClassifier(**params).fit(X_train, y_train).predict_proba(X_test)
    clf = SiameseClassifier(**params)
    plan = clf._fit_setup(X_train, y_train)
    if not torch.cuda.is_available():
        assert plan.net.iterator_valid__device is None
    plan.net.iterator_train__device = plan.net.iterator_valid__device = "cpu"
    clf._train(plan)
    assert "valid_loss" in plan.net.history[-1]
    clf._fit_finish(plan)
    np.testing.assert_array_equal(clf.predict_proba(X_test), expected)


class _EncoderDtypes(Callback):
    """Records the dtype of the encoder's output at every training forward."""

    def on_train_begin(self, net, **kwargs):
        self.dtypes = set()
        net.module_.encoder.register_forward_hook(
            lambda module, args, out: (
                self.dtypes.add(out.dtype) if module.training else None
            )
        )


@pytest.mark.parametrize("mixed", [True, False])
def test_mixed_precision_runs_the_encoder_in_bfloat16(wine, mixed):
    X_train, _, y_train, _ = wine
    clf = SiameseClassifier(
        mixed_precision=mixed, callbacks=[_EncoderDtypes()], **SMALL
    ).fit(X_train, y_train)
    # The estimator trains with copies of its callbacks.
    spy = next(cb for _, cb in clf.net_.callbacks_ if isinstance(cb, _EncoderDtypes))
    assert spy.dtypes == ({torch.bfloat16} if mixed else {torch.float32})


def test_gradient_callbacks_see_every_step(wine):
    """on_grad_computed reaches callbacks (e.g. gradient clipping) once per
    step, with the gradients of every parameter."""
    X_train, _, y_train, _ = wine

    class GradSpy(Callback):
        def initialize(self):
            self.calls, self.with_grad = 0, []
            return self

        def on_grad_computed(self, net, named_parameters, **kwargs):
            self.calls += 1
            self.with_grad.append(all(p.grad is not None for _, p in named_parameters))

    clf = SiameseClassifier(callbacks=[GradSpy()], **SMALL).fit(X_train, y_train)
    spy = next(cb for _, cb in clf.net_.callbacks_ if isinstance(cb, GradSpy))
    n_steps = sum(
        "train_loss" in batch for epoch in clf.history_ for batch in epoch["batches"]
    )
    assert spy.calls == n_steps > 0
    assert all(spy.with_grad)


def test_convergence_warning_when_max_epochs_cut_early_stopping_short(iris):
    X, y = iris
    with pytest.warns(ConvergenceWarning, match="stopped after max_epochs=3 epochs"):
        SiameseClassifier(max_epochs=3, early_stopping=True, random_state=0).fit(X, y)
    # Early stopping that ends before max_epochs, and a fixed budget of epochs
    # (the default), do not warn.
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = SiameseClassifier(
            max_epochs=100, early_stopping=True, random_state=0
        ).fit(X, y)
        assert clf.n_epochs_ < clf.max_epochs
        clf = SiameseClassifier(max_epochs=3, random_state=0).fit(X, y)
        assert clf.n_epochs_ == 3


@pytest.mark.parametrize(
    "losses, why",
    [
        ([1.0, 0.9, 0.8], "while the held-out loss was still improving"),
        # No fall after the first epoch: too few epochs to judge, not improving.
        (
            [1.0, 1.1, 1.2],
            r"before early stopping could judge \(n_iter_no_change=10 epochs",
        ),
    ],
)
def test_convergence_warning_says_why(losses, why):
    history = History()
    for loss in losses:
        history.new_epoch()
        history.record("valid_loss", loss)
    clf = SiameseClassifier(max_epochs=3, early_stopping=True, n_iter_no_change=10)
    with pytest.warns(ConvergenceWarning, match="max_epochs=3 epochs " + why):
        _training.warn_if_not_converged(clf, SimpleNamespace(history=history))


def _optimizer_lr(clf):
    return clf.net_.optimizer_.param_groups[0]["lr"]


def test_auto_batch_size_is_128_on_small_data_and_grows_with_the_rows(tmp_path):
    X, y = load_wine(return_X_y=True)
    tiny = dict(hidden_layer_sizes=(8,), embedding_dim=4, n_members=1, max_epochs=1)
    small = SiameseClassifier(random_state=0, **tiny).fit(X, y)
    assert small.batch_size == "auto"
    assert small.batch_size_ == small.net_.batch_size == 128
    assert _optimizer_lr(small) == small.lr  # no scaling at 128
    # 51,200 rows: 256 per batch, the learning rate scaled by 2 ** 0.75.
    rng = np.random.RandomState(0)
    X_big = rng.normal(size=(51_200, 3)).astype(np.float32)
    y_big = (X_big[:, 0] > 1.5).astype(int)
    big = SiameseClassifier(random_state=0, **tiny).fit(X_big, y_big)
    assert big.batch_size_ == big.net_.batch_size == 256
    assert _optimizer_lr(big) == pytest.approx(1e-3 * 2**0.75)
    assert big.n_epochs_ == 1
    assert roc_auc_score(y_big, big.predict_proba(X_big)[:, 1]) > 0.95
    # A saved model trains on with the batch size and rate it was fitted with.
    big.save(tmp_path / "big.zip")
    loaded = sksiamese.load(tmp_path / "big.zip")
    assert loaded.batch_size_ == loaded.net_.batch_size == 256
    assert _optimizer_lr(loaded) == _optimizer_lr(big) == loaded.net_.lr
    # An int is used as given, and so is lr.
    given = SiameseClassifier(random_state=0, batch_size=256, **tiny).fit(X_big, y_big)
    assert given.batch_size_ == 256 and _optimizer_lr(given) == given.lr
    # A loss over every pair of the batch costs its square: "auto" keeps 128.
    pairs = SiameseClassifier(random_state=0, loss="contrastive", **tiny)
    pairs.fit(X_big, y_big)
    assert pairs.batch_size_ == pairs.net_.batch_size == 128
    assert _optimizer_lr(pairs) == pairs.lr


def test_many_classes_train_past_chance():
    """With more classes than a batch holds pairs of, batches keep 4 samples
    of each class by default: with 2, a sample's own class mean is one
    other sample, and the default ensemble's embeddings collapsed to one
    point (the training loss stayed at chance: log of the classes per batch;
    the embeddings' spread 0.001 against 0.26)."""
    X, y = make_classification(
        6000,
        33,
        n_informative=10,
        n_classes=100,
        n_clusters_per_class=1,
        random_state=0,
    )
    clf = SiameseClassifier(max_epochs=3, references="prototypes", random_state=0)
    clf.fit(X, y)
    per_batch, k = batch_layout(100, clf.batch_size_, largest_class=60)
    assert clf.history_[-1, "train_loss"] < np.log(per_batch) - 0.2
    assert clf.transform(X[:1000]).std(0).mean() > 0.05
    assert k == 4


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_fit_under_a_no_grad_context_trains_as_outside(iris, context):
    # From an evaluation loop, say: training records its gradients anyway.
    X, y = iris
    params = dict(max_epochs=2, hidden_layer_sizes=(16,), random_state=0)
    with context():
        clf = SiameseClassifier(**params).fit(X, y).partial_fit(X, y)
    ref = SiameseClassifier(**params).fit(X, y).partial_fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), ref.predict_proba(X))
