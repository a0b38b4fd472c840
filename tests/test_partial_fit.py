"""Out-of-core training with partial_fit."""

import re

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

import sksiamese._classifier
import sksiamese._sampling
from sksiamese import SiameseClassifier
from sksiamese._references import kept_samples

SMALL = dict(hidden_layer_sizes=(32,), embedding_dim=8, random_state=0)


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)


def _chunks(X, y, size):
    for start in range(0, len(X), size):
        yield X[start : start + size], y[start : start + size]


def test_partial_fit_learns_chunk_by_chunk(cancer):
    X_train, X_test, y_train, y_test = cancer
    clf = SiameseClassifier(**SMALL)
    scores = []
    for _ in range(2):  # two passes over the stream of 100-row chunks
        for Xc, yc in _chunks(X_train, y_train, 100):
            clf.partial_fit(Xc, yc, classes=[0, 1])
        proba = clf.predict_proba(X_test)
        assert np.isfinite(proba).all()
        np.testing.assert_allclose(proba.sum(1), 1.0)
        scores.append(clf.score(X_test, y_test))
    assert clf.n_epochs_ == 2 * len(range(0, len(X_train), 100))
    assert scores[-1] > 0.9
    # It trained: an untrained encoder scores this set well too.
    losses = [epoch["train_loss"] for epoch in clf.history_]
    assert len(losses) == clf.n_epochs_
    assert np.mean(losses[-4:]) < 0.9 * np.mean(losses[:4])


def test_reservoir_is_bounded_per_class(cancer, monkeypatch):
    X_train, _, y_train, _ = cancer
    monkeypatch.setattr(sksiamese._classifier, "_RESERVOIR_SIZE", 20)
    clf = SiameseClassifier(references="all", **SMALL)
    for Xc, yc in _chunks(X_train, y_train, 50):
        clf.partial_fit(Xc, yc, classes=[0, 1])
    kept = [len(k) for k in clf._stream.kept]
    assert kept == [20, 20]
    assert clf._stream.seen.tolist() == np.bincount(y_train).tolist()
    assert len(clf.references_) == 40


def test_each_call_draws_new_batches(cancer, monkeypatch):
    # Once the kept samples are full, every call trains on chunks laid out
    # alike; with the sampler's seed of the first call, each drew the same
    # rows of them (and skipped the same others).
    X_train, _, y_train, _ = cancer
    monkeypatch.setattr(sksiamese._classifier, "_RESERVOIR_SIZE", 20)
    drawn = []
    draw = sksiamese._sampling.BalancedBatchSampler._draw_epoch

    def spy(sampler):
        batches = draw(sampler)
        drawn.append(np.concatenate(batches))
        return batches

    monkeypatch.setattr(sksiamese._sampling.BalancedBatchSampler, "_draw_epoch", spy)
    clf = SiameseClassifier(batch_size=16, validation_fraction=0, **SMALL)
    y = np.repeat([0, 1], 40)
    X0, X1 = X_train[y_train == 0], X_train[y_train == 1]
    first_batches = []
    for call in range(3):
        X = np.r_[X0[call * 40 : (call + 1) * 40], X1[call * 40 : (call + 1) * 40]]
        drawn.clear()
        clf.partial_fit(X, y, classes=[0, 1])
        first_batches.append(drawn[0])
    # Calls 2 and 3 train on as many rows, laid out alike (40 kept + 80 new).
    assert len(first_batches[1]) == len(first_batches[2])
    assert not np.array_equal(first_batches[1], first_batches[2])


def test_unseen_class_is_never_predicted(cancer):
    X_train, X_test, y_train, _ = cancer
    clf = SiameseClassifier(**SMALL).partial_fit(
        X_train[:100], y_train[:100], classes=[0, 1, 2]
    )
    assert clf.classes_.tolist() == [0, 1, 2]
    proba = clf.predict_proba(X_test)
    np.testing.assert_array_equal(proba[:, 2], 0.0)
    assert set(clf.predict(X_test)) <= {0, 1}


def test_partial_fit_errors(cancer):
    X_train, _, y_train, _ = cancer
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        SiameseClassifier(**SMALL).partial_fit(X_train, y_train)
    with pytest.raises(ValueError, match=re.escape("labels not in classes: [1]")):
        SiameseClassifier(**SMALL).partial_fit(X_train, y_train, classes=[0, 2])
    with pytest.raises(ValueError, match="at least 2 samples of each of at least 2"):
        SiameseClassifier(**SMALL).partial_fit(
            X_train[y_train == 0][:10], y_train[y_train == 0][:10], classes=[0, 1]
        )
    clf = SiameseClassifier(**SMALL).partial_fit(X_train, y_train, classes=[0, 1])
    with pytest.raises(ValueError, match="X has 3 features"):
        clf.partial_fit(X_train[:, :3], y_train)
    # As scikit-learn's partial_fit: classes given again must be classes_.
    with pytest.raises(
        ValueError, match=re.escape("classes=[0, 1, 2] is not classes_=[0, 1]")
    ):
        clf.partial_fit(X_train, y_train, classes=[0, 1, 2])
    # After fit, which keeps no samples, the first chunk alone must hold
    # 2 samples of 2 classes: the message says so (not "a larger first chunk").
    fitted = SiameseClassifier(max_epochs=1, **SMALL).fit(X_train, y_train)
    with pytest.raises(ValueError, match="the first after fit or fit_references"):
        fitted.partial_fit(X_train[y_train == 0][:10], y_train[y_train == 0][:10])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"references": True}, "references must be 'all', 'prototypes' or a"),
        ({"references": 0}, "'references' parameter of SiameseClassifier"),
        ({"references": "centres"}, "'references' parameter of SiameseClassifier"),
        ({"samples_per_class": 0}, "'samples_per_class' parameter of Siamese"),
        ({"n_neighbors": 0}, "'n_neighbors' parameter of SiameseClassifier"),
    ],
)
@pytest.mark.parametrize("first", ["partial_fit", "fit"])
def test_parameters_set_between_calls_are_checked(cancer, params, match, first):
    # scikit-learn checks the parameters at partial_fit's first call only;
    # a value set since was read unchecked: a TypeError from numpy, an
    # IndexError or a ZeroDivisionError from inside training.
    X_train, _, y_train, _ = cancer
    clf = SiameseClassifier(max_epochs=1, **SMALL)
    if first == "fit":
        clf.fit(X_train, y_train)
    else:
        clf.partial_fit(X_train[:100], y_train[:100], classes=[0, 1])
    clf.set_params(**params)
    with pytest.raises(ValueError, match=re.escape(match)):
        clf.partial_fit(X_train[100:200], y_train[100:200])


def test_classes_given_at_every_call_are_those_of_the_first(cancer):
    # A loop that passes classes at every call (as scikit-learn allows, and
    # dask-ml's Incremental does) trains as one that passes them once.
    X_train, X_test, y_train, _ = cancer
    once, every = SiameseClassifier(**SMALL), SiameseClassifier(**SMALL)
    for i, (Xc, yc) in enumerate(_chunks(X_train, y_train, 100)):
        once.partial_fit(Xc, yc, classes=[0, 1] if i == 0 else None)
        every.partial_fit(Xc, yc, classes=np.array([1, 0]))
    np.testing.assert_array_equal(
        once.predict_proba(X_test), every.predict_proba(X_test)
    )


def test_partial_fit_after_fit_trains_on(cancer):
    X_train, X_test, y_train, y_test = cancer
    clf = SiameseClassifier(max_epochs=5, **SMALL).fit(X_train, y_train)
    weights = [p.detach().clone() for p in clf.net_.module_.parameters()]
    epochs = clf.n_epochs_
    clf.partial_fit(X_train[:200], y_train[:200])  # classes_ known from fit
    assert clf.n_epochs_ == epochs + 1
    changed = [
        not torch.equal(a, b.detach())
        for a, b in zip(weights, clf.net_.module_.parameters(), strict=True)
    ]
    assert any(changed)
    assert clf.classes_.tolist() == [0, 1]
    assert clf.score(X_test, y_test) > 0.85


def test_fit_after_partial_fit_starts_over(cancer):
    X_train, X_test, y_train, _ = cancer
    clf = SiameseClassifier(max_epochs=5, **SMALL)
    clf.partial_fit(X_train, y_train, classes=[0, 1])
    clf.fit(X_train, y_train)
    fresh = SiameseClassifier(max_epochs=5, **SMALL).fit(X_train, y_train)
    assert not hasattr(clf, "_stream")
    np.testing.assert_array_equal(
        clf.predict_proba(X_test), fresh.predict_proba(X_test)
    )


@pytest.mark.parametrize("new_classes", [[0, 1, 2, 3], [7, 9]])
@pytest.mark.parametrize("first", ["fit", "partial_fit"])
def test_partial_fit_trains_on_the_classes_of_fit_references(
    cancer, first, new_classes
):
    # fit_references replaces classes_: partial_fit then trains on with
    # them (its kept samples and its loss's classes were the former ones).
    X_train, X_test, y_train, _ = cancer
    clf = SiameseClassifier(**SMALL, max_epochs=1, class_weight="balanced")
    if first == "fit":
        clf.fit(X_train, y_train)
    else:
        clf.partial_fit(X_train[:200], y_train[:200], classes=[0, 1])
    labels = np.asarray(new_classes)[np.arange(len(X_train)) % len(new_classes)]
    clf.fit_references(X_train[:100], labels[:100])
    clf.partial_fit(X_train[100:300], labels[100:300])
    np.testing.assert_array_equal(clf.classes_, new_classes)
    # Only samples of the new classes are kept to train on (and to refer to).
    kept, kept_codes = kept_samples(clf._stream)
    _, chunk_codes = np.unique(labels[100:300], return_inverse=True)
    assert len(kept) == 200
    np.testing.assert_array_equal(np.bincount(kept_codes), np.bincount(chunk_codes))
    proba = clf.predict_proba(X_test)
    assert proba.shape == (len(X_test), len(new_classes))
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert set(clf.predict(X_test)) <= set(new_classes)
