"""``compile=True``: training steps run the encoder and loss compiled by
``torch.compile``; everything a fitted model holds stays plain."""

import pickle

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from sksiamese import SiameseClassifier, SiamesePairClassifier, load
from sksiamese._losses import InBatchLoss, RowPairLoss
from sksiamese._networks import SiameseModule

SMALL = dict(
    hidden_layer_sizes=(16,),
    embedding_dim=4,
    n_members=2,
    max_epochs=8,
    batch_size=32,
    random_state=0,
)


class _CompileSpy:
    """``torch.compile`` that records its keyword arguments and counts the
    calls of what it compiled, by the class of the compiled module."""

    def __init__(self):
        self.kwargs, self.calls = [], {}

    def __call__(self, model, **kwargs):
        self.kwargs.append(kwargs)
        compiled = _real_compile(model, **kwargs)
        name = type(model).__name__

        def run(*args, **kw):
            self.calls[name] = self.calls.get(name, 0) + 1
            return compiled(*args, **kw)

        return run


_real_compile = torch.compile


@pytest.fixture
def spy(monkeypatch):
    spy = _CompileSpy()
    monkeypatch.setattr(torch, "compile", spy)
    return spy


def _steps(estimator):
    """The training steps of a fit (batches with a training loss)."""
    return sum(
        "train_loss" in batch
        for epoch in estimator.history_
        for batch in epoch["batches"]
    )


@pytest.fixture(scope="module")
def compiled_fit(wine):
    """A fit with PyTorch's default compiler (inductor), shared by the tests
    that only read it."""
    X_train, _, y_train, _ = wine
    return SiameseClassifier(compile=True, **SMALL).fit(X_train, y_train)


def test_compiled_fit_learns_like_the_plain_one(compiled_fit, wine):
    X_train, X_test, y_train, y_test = wine
    plain = SiameseClassifier(**SMALL).fit(X_train, y_train)
    assert compiled_fit.score(X_test, y_test) > 0.9
    # The compiled kernels round differently, so the two fits drift apart
    # over the steps; they end up close, not equal.
    agree = np.mean(compiled_fit.predict(X_test) == plain.predict(X_test))
    assert agree >= 0.95
    loss_c = compiled_fit.history_[:, "train_loss"]
    loss_p = plain.history_[:, "train_loss"]
    np.testing.assert_allclose(loss_c[0], loss_p[0], rtol=1e-4)
    assert loss_c[-1] < 0.85 * loss_c[0]


def test_compiled_fits_repeat_with_a_seed(compiled_fit, wine):
    X_train, X_test, y_train, _ = wine
    again = SiameseClassifier(compile=True, **SMALL).fit(X_train, y_train)
    np.testing.assert_array_equal(
        again.predict_proba(X_test), compiled_fit.predict_proba(X_test)
    )


def test_training_steps_run_compiled_and_prediction_does_not(spy, wine):
    X_train, X_test, y_train, _ = wine
    clf = SiameseClassifier(compile={"backend": "eager"}, **SMALL)
    clf.fit(X_train, y_train)
    assert spy.kwargs == [{"backend": "eager"}] * 2
    steps = _steps(clf)
    assert steps == clf.n_epochs_ * len(clf.history_[0, "batches"]) > 0
    assert spy.calls == {"SiameseModule": steps, "InBatchLoss": steps}
    clf.predict_proba(X_test)
    clf.transform(X_test)
    assert spy.calls == {"SiameseModule": steps, "InBatchLoss": steps}


def test_validation_passes_run_the_plain_module(spy, wine):
    X_train, _, y_train, _ = wine
    clf = SiameseClassifier(
        compile={"backend": "eager"}, early_stopping=True, **SMALL
    ).fit(X_train, y_train)
    assert "valid_loss" in clf.history_[-1]
    assert spy.calls == {"SiameseModule": _steps(clf), "InBatchLoss": _steps(clf)}


def test_a_compiled_model_pickles_and_saves_as_a_plain_one(
    compiled_fit, wine, tmp_path
):
    X_train, X_test, y_train, _ = wine
    plain = SiameseClassifier(**SMALL).fit(X_train, y_train)
    assert list(compiled_fit.net_.module_.state_dict()) == list(
        plain.net_.module_.state_dict()
    )
    assert type(compiled_fit.net_.module_) is type(plain.net_.module_)
    copy = pickle.loads(pickle.dumps(compiled_fit))
    assert "_compiled" not in vars(copy.net_)
    np.testing.assert_array_equal(
        copy.predict_proba(X_test), compiled_fit.predict_proba(X_test)
    )
    compiled_fit.save(tmp_path / "model.zip")
    loaded = load(tmp_path / "model.zip")
    assert loaded.compile is True
    np.testing.assert_array_equal(
        loaded.predict_proba(X_test), compiled_fit.predict_proba(X_test)
    )


def test_partial_fit_after_unpickling_compiles_again(spy, wine):
    X_train, _, y_train, _ = wine
    clf = SiameseClassifier(compile={"backend": "eager"}, **SMALL)
    clf.partial_fit(X_train, y_train, classes=np.unique(y_train))
    copy = pickle.loads(pickle.dumps(clf))
    before = dict(spy.calls)
    copy.partial_fit(X_train, y_train)
    assert len(spy.kwargs) == 4  # module and loss, compiled again for the copy
    assert spy.calls["SiameseModule"] > before["SiameseModule"]


@pytest.mark.parametrize(
    "compile, match",
    [
        ({"modes": "max-autotune"}, r"compile holds 'modes', which torch.compile"),
        ({"fullgraph": True, "x": 1}, r"compile holds 'x', which"),
        ("yes", r"The 'compile' parameter"),
    ],
)
def test_bad_compile_values_are_refused(compile, match, wine):
    X_train, _, y_train, _ = wine
    with pytest.raises(ValueError, match=match):
        SiameseClassifier(compile=compile, **SMALL).fit(X_train, y_train)


class _ReadEachLoss(Callback):
    """Reads each batch's loss as soon as the step is done."""

    def on_train_begin(self, net, **kwargs):
        self.losses = []

    def on_batch_end(self, net, training, **kwargs):
        if training:
            self.losses.append(float(net.history[-1, "batches", -1, "train_loss"]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graphs_keep_every_batch_loss(wine):
    # mode="reduce-overhead" replays CUDA graphs whose outputs the next replay
    # overwrites; the losses recorded during an epoch and read at its end must
    # be those of their own batches.
    X_train, X_test, y_train, y_test = wine
    clf = SiameseClassifier(
        compile={"mode": "reduce-overhead"},
        device="cuda",
        callbacks=[_ReadEachLoss()],
        **SMALL,
    ).fit(X_train, y_train)
    reader = next(cb for _, cb in clf.net_.callbacks_ if isinstance(cb, _ReadEachLoss))
    recorded = [b["train_loss"] for epoch in clf.history_ for b in epoch["batches"]]
    assert recorded == reader.losses
    assert len(set(recorded)) > 1
    assert clf.score(X_test, y_test) > 0.9


@pytest.fixture(scope="module")
def wine_pairs(wine):
    """Pairs of wine samples, labelled 1 for two samples of one cultivar."""
    X_train, X_test, y_train, y_test = wine
    rng = np.random.RandomState(0)

    def pairs(X, y, n):
        a, b = rng.randint(len(X), size=(2, n))
        return np.stack([X[a], X[b]], axis=1), (y[a] == y[b]).astype(int)

    return (*pairs(X_train, y_train, 600), *pairs(X_test, y_test, 300))


def test_pair_classifier_trains_compiled(spy, wine_pairs):
    X_train, y_train, X_test, y_test = wine_pairs
    # Wine columns have different units: per-feature scaling.
    params = dict(SMALL, max_epochs=20, early_stopping=False, scaling="robust")
    plain = SiamesePairClassifier(**params).fit(X_train, y_train)
    clf = SiamesePairClassifier(compile=True, **params).fit(X_train, y_train)
    assert spy.calls == {"SiameseModule": _steps(clf), "RowPairLoss": _steps(clf)}
    assert clf.score(X_test, y_test) > 0.85
    assert clf.score(X_test, y_test) >= plain.score(X_test, y_test) - 0.03
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(copy.predict_proba(X_test), clf.predict_proba(X_test))


@pytest.mark.parametrize(
    "criterion, head",
    [
        (RowPairLoss("contrastive", group_weight=1.0), False),
        (RowPairLoss("bce", group_weight=1.0), True),
        (InBatchLoss("bce", n_classes=2), True),
        (InBatchLoss("prototype", n_classes=100), False),  # more codes than rows
        (InBatchLoss("contrastive"), False),
        (InBatchLoss("triplet"), False),
        (InBatchLoss("nca"), False),
    ],
    ids=[
        "pairs-groups",
        "pairs-groups-head",
        "bce-head",
        "prototype-many-codes",
        "contrastive",
        "triplet",
        "nca",
    ],
)
def test_losses_compile_into_one_graph_on_a_cpu_too(criterion, head):
    # On a CPU some losses take cheaper paths that read values off the
    # tensors (the rows with mates, the head's dimensions of each sign, the
    # classes of the batch); while being compiled they must not, or the
    # graph would split (fullgraph=True fails on any split).
    torch.manual_seed(0)
    module = SiameseModule(
        torch.nn.Identity(), "euclidean", head=head, embedding_dim=8, n_members=2
    )
    if isinstance(criterion, RowPairLoss):
        emb = (torch.randn(16, 8), torch.randn(16, 8))
        y = torch.stack(
            [torch.arange(16) % 2, torch.arange(16) % 5, torch.randint(0, 9, (16,))], 1
        )
    else:
        emb, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
        if criterion.n_classes == 100:
            y = torch.randperm(100)[:8].repeat(2)

    def loss(emb, y):
        return criterion(emb, y, module)

    compiled = torch.compile(loss, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(emb, y), loss(emb, y))
