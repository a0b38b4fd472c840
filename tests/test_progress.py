"""``verbose=2``: a progress bar over the balanced batches of each epoch."""

import numpy as np
import pytest
from sklearn.datasets import load_wine

import sksiamese._classifier
from sksiamese import SiameseClassifier, SiamesePairClassifier
from sksiamese._training import BalancedProgressBar

SMALL = dict(hidden_layer_sizes=(8,), embedding_dim=2, max_epochs=2, random_state=0)


@pytest.fixture(scope="module")
def wine_all():
    return load_wine(return_X_y=True)


def callbacks(clf):
    return dict(clf.net_.callbacks_)


@pytest.mark.parametrize("verbose", [0, 1])
def test_no_progress_bar_by_default(wine_all, capsys, verbose):
    clf = SiameseClassifier(verbose=verbose, **SMALL).fit(*wine_all)
    assert "progress_bar" not in callbacks(clf)
    out, err = capsys.readouterr()
    assert "train_loss" not in err
    assert ("train_loss" in out) == bool(verbose)


def test_verbose_2_draws_a_bar_with_the_right_batch_count(wine_all, capsys):
    # 10 samples per class in a batch of 30, the 178 wine_all samples less the 18
    # held out: ceil(160 / 30) training batches and ceil(18 / 30) held-out ones.
    clf = SiameseClassifier(verbose=2, batch_size=32, early_stopping=True, **SMALL).fit(
        *wine_all
    )
    bar = callbacks(clf)["progress_bar"]
    assert isinstance(bar, BalancedProgressBar)
    per_epoch = len(clf.history_[-1, "batches"])
    assert sum(bar.counts_.values()) == per_epoch == 6 + 1
    out, err = capsys.readouterr()
    assert "train_loss" in out  # the per-epoch table, as with verbose=1
    assert f"/{per_epoch} [" in err  # tqdm's "k/total [time]" on stderr


def test_the_bar_of_the_pair_estimator_counts_its_batches(capsys):
    # Pair targets are 2-D (the label, then the groups of the two sides):
    # the bar counts the batches of the label's classes.
    rng = np.random.RandomState(0)
    A, same = rng.normal(size=(300, 4)), rng.randint(2, size=300)
    B = np.where(same[:, None] == 1, A + 0.1 * rng.normal(size=A.shape), -A)
    clf = SiamesePairClassifier(verbose=2, batch_size=30, early_stopping=True, **SMALL)
    clf.fit(np.stack([A, B], 1), same)
    bar = callbacks(clf)["progress_bar"]
    per_epoch = len(clf.history_[-1, "batches"])
    assert sum(bar.counts_.values()) == per_epoch
    assert f"/{per_epoch} [" in capsys.readouterr().err


def test_the_bar_follows_partial_fit_batch_sizes(wine_all, capsys, monkeypatch):
    # Once the kept samples are full, every call trains on as many rows; a
    # batch size set between calls changes the batches the bar counts.
    monkeypatch.setattr(sksiamese._classifier, "_RESERVOIR_SIZE", 5)
    order = np.random.RandomState(0).permutation(len(wine_all[1]))
    X, y = wine_all[0][order], wine_all[1][order]
    clf = SiameseClassifier(verbose=2, batch_size=8, **SMALL)
    for call, batch_size in enumerate([8, 8, 32]):
        clf.set_params(batch_size=batch_size)
        rows = slice(60 * call, 60 * call + 58)
        clf.partial_fit(X[rows], y[rows], classes=[0, 1, 2])
        per_epoch = clf.history_[-1, "train_batch_count"]
        assert f"/{per_epoch} [" in capsys.readouterr().err


def test_the_bar_follows_the_classes_present_in_partial_fit(capsys, monkeypatch):
    # Once the kept samples are full, calls train on as many rows each; a
    # class first seen in a later chunk changes the layout of the batches
    # (3 classes of 21 in a batch of 64, not 2 of 32), and their count.
    monkeypatch.setattr(sksiamese._classifier, "_RESERVOIR_SIZE", 5)
    rng = np.random.RandomState(0)
    clf = SiameseClassifier(verbose=2, batch_size=64, n_members=1, **SMALL)
    for labels in ([0, 1], [0, 1], [0, 1, 2]):
        y = np.repeat(labels, 118 // len(labels) + 1)[:118]
        clf.partial_fit(rng.normal(size=(118, 3)) + y[:, None], y, classes=[0, 1, 2])
        per_epoch = clf.history_[-1, "train_batch_count"]
        assert f"/{per_epoch} [" in capsys.readouterr().err
    assert per_epoch == 3  # 128 rows, 63 a batch
