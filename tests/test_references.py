"""References: how queries are scored against a class's closest references
(shares of each class, weights, blocks of bounded memory), and which
references are kept."""

import tracemalloc

import numpy as np
import pytest
import torch
from imblearn.datasets import make_imbalance
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.datasets import load_digits
from sklearn.metrics import balanced_accuracy_score, recall_score
from sklearn.model_selection import StratifiedKFold

import sksiamese._references
from sksiamese import SiameseClassifier, _networks
from sksiamese._networks import SiameseModule
from sksiamese._references import (
    _distinct_rows,
    class_centres,
    class_dissimilarity,
    kept_samples,
    kmeans,
    lloyd,
    member_references,
    new_reservoir,
    select_references,
    update_reservoir,
)

# A tiny network: these tests are about how queries are scored, not learned.
TINY = dict(hidden_layer_sizes=(8,), embedding_dim=4, max_epochs=3, random_state=0)


@pytest.fixture(scope="module")
def data():
    """Three classes of 20 samples, one apart along every feature."""
    rng = np.random.RandomState(0)
    y = np.repeat([0, 1, 2], 20)
    return rng.normal(size=(60, 3)) + y[:, None], y


# -- neighbourhoods of classes of different sizes ------------------------------


# The module compares embeddings by euclidean distance; these tests hand it
# embeddings directly, so its encoder is never used.
MODULE = SiameseModule(torch.nn.Identity())


def test_neighbourhoods_on_hand_built_distances():
    q = np.zeros((1, 1))

    def scores(R, codes, k, weights=None):
        R = np.asarray(R, dtype=float)[:, None]
        return class_dissimilarity(MODULE, q, R, np.asarray(codes), 2, k, weights)[0]

    # Classes of equal size: the plain mean over the k closest references.
    R = [*range(1, 11), *range(-1, -11, -1)]
    codes = [0] * 10 + [1] * 10
    np.testing.assert_allclose(scores(R, codes, 3), [2.0, 2.0])
    # 20 references against 2: with k=1 the small class is judged on half of
    # itself, so the large one on as large a share, capped at a quarter (its
    # 5 closest, at distances 1..5).
    R, codes = [*range(1, 21), -1, -3], [0] * 20 + [1] * 2
    np.testing.assert_allclose(scores(R, codes, 1), [3.0, 1.0])
    # Never fewer than k references, however large a share that is.
    np.testing.assert_allclose(scores(R, codes, 2), [3.0, 2.0])
    # Weighted references (k-means centres): the share is counted in samples.
    # Class 0 holds 20 samples in two centres; a quarter of it is 5 samples.
    np.testing.assert_allclose(scores([1, 10, -2], [0, 0, 1], 1, [12, 8, 1]), [1, 2])
    np.testing.assert_allclose(
        scores([1, 10, -2], [0, 0, 1], 1, [4, 16, 1]), [(4 * 1 + 1 * 10) / 5, 2]
    )


def _share_scores(Q, R, codes, k, weights):
    """class_dissimilarity's rule, written plainly: sort everything."""
    counts = np.bincount(codes)
    share = min(k / counts.min(), 0.25)
    D = np.linalg.norm(Q[:, None] - R[None], axis=2)
    S = np.empty((len(Q), len(counts)))
    for c in range(len(counts)):
        d, w = D[:, codes == c], weights[codes == c]
        order = np.argsort(d, axis=1, kind="stable")
        d, w = np.take_along_axis(d, order, 1), w[order]
        total = np.cumsum(w, axis=1)
        cover = np.maximum(total[:, min(k, counts[c]) - 1], share * w.sum(1))
        take = np.clip(cover[:, None] - (total - w), 0, w)
        S[:, c] = (take * d).sum(1) / take.sum(1)
    return S


def _five_closest_scores(Q, R, codes):
    """The rule before the shares: mean distance to the 5 closest references
    of every class."""
    D = np.linalg.norm(Q[:, None] - R[None], axis=2)
    return np.stack(
        [np.sort(D[:, codes == c])[:, :5].mean(1) for c in range(codes.max() + 1)], 1
    )


def test_neighbourhoods_of_light_and_heavy_references():
    # Class 0: 40 light references (one sample each) spread around the
    # queries and 10 heavy ones (100 samples each) far off; a quarter of its
    # 1,040 samples is 260, more than all its light references hold, so the
    # scores reach the heavy ones (a second, wider search for those queries).
    rng = np.random.RandomState(0)
    R = np.vstack(
        [
            rng.normal(size=(40, 3)),
            rng.normal(size=(10, 3)) + 6,
            rng.normal(size=(10, 3)) - 3,
        ]
    )
    codes = np.repeat([0, 0, 1], [40, 10, 10])
    weights = np.concatenate([np.ones(40), np.full(10, 100.0), rng.uniform(1, 3, 10)])
    Q = rng.normal(size=(300, 3)) * 2
    S = class_dissimilarity(MODULE, Q, R, codes, 2, 5, weights)
    np.testing.assert_allclose(S, _share_scores(Q, R, codes, 5, weights), rtol=1e-10)
    # Unit weights and classes of very different sizes.
    ones = np.ones(len(R))
    S = class_dissimilarity(MODULE, Q, R, codes, 2, 3, ones)
    np.testing.assert_allclose(S, _share_scores(Q, R, codes, 3, ones), rtol=1e-10)


def test_neighbourhoods_balance_the_errors_of_a_rare_class():
    # 2,000 references of one class against 40 of another, one standard
    # deviation apart 2.5 times over. Judged on their 5 closest references,
    # the large class wins most queries near the boundary; judged on the same
    # share of each class, the errors balance, close to the best balanced
    # accuracy of these two Gaussians (Phi(1.25) = 0.894).
    rng = np.random.RandomState(0)
    shift = np.array([2.5, 0.0])
    R = np.vstack([rng.normal(size=(2000, 2)), rng.normal(size=(40, 2)) + shift])
    codes = np.repeat([0, 1], [2000, 40])
    Q = np.vstack([rng.normal(size=(2000, 2)), rng.normal(size=(2000, 2)) + shift])
    y = np.repeat([0, 1], 2000)
    S = class_dissimilarity(MODULE, Q, R, codes, 2, 5)
    closest = _five_closest_scores(Q, R, codes)
    balanced = balanced_accuracy_score(y, S.argmin(1))
    assert balanced > 0.85
    assert balanced > balanced_accuracy_score(y, closest.argmin(1)) + 0.15


def test_share_of_class_scores_find_more_of_a_rare_digit():
    # Real data: scikit-learn's digits, "is it an 8?", with 50 eights among
    # 1,624 other digits. The same encoders, 5 folds: the share-of-class scores
    # of ``predict`` against the mean over the 5 closest references of every
    # class (the rule before), which lets the large class win more queries.
    # Balanced decisions (class_weight="balanced"), which the shares serve.
    # The shares find more of the eights (0.94 to 1.0 of them against 0.78 to
    # 0.86, with random_state 0 to 11), but at the cost of other digits taken
    # for eights: on these data their balanced accuracy is not higher (0.83
    # to 0.93 against 0.88 to 0.92; higher with 2 of those 12 seeds), so this
    # test does not claim it; the balanced errors are shown on two Gaussians
    # above.
    X, y = load_digits(return_X_y=True)
    y = (y == 8).astype(int)
    X, y = make_imbalance(
        X, y, sampling_strategy={0: int((y == 0).sum()), 1: 50}, random_state=0
    )
    truth, shares, closest = [], [], []
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(X, y):
        clf = SiameseClassifier(
            class_weight="balanced",
            early_stopping=True,
            hidden_layer_sizes=(32,),
            embedding_dim=8,
            max_epochs=15,
            random_state=0,
        )
        clf.fit(X[train], y[train])
        plain = _five_closest_scores(
            clf.transform(X[test]), clf.references_, clf._reference_codes
        )
        truth.append(y[test])
        shares.append(clf.predict(X[test]))
        closest.append(plain.argmin(1))
    truth, shares, closest = map(np.concatenate, (truth, shares, closest))
    found = recall_score(truth, shares)
    assert found > 0.9
    assert found > recall_score(truth, closest) + 0.05
    assert balanced_accuracy_score(truth, shares) > 0.8


@pytest.fixture
def block_spy(monkeypatch):
    """Record the largest query x reference block compared at once."""
    seen = []
    smallest = SiameseModule.smallest

    def spy(self, a, b, k, **kwargs):
        # a and b: pairs from SiameseModule.comparable, their rows first.
        width = a[0].shape[1] if self.head is not None else 1
        seen.append(len(a[0]) * len(b[0]) * width)
        return smallest(self, a, b, k, **kwargs)

    monkeypatch.setattr(SiameseModule, "smallest", spy)
    return seen


def test_a_million_queries_use_linear_memory(data, block_spy):
    X, y = data
    clf = SiameseClassifier(**TINY, references="prototypes").fit(X, y)
    n = 1_000_000
    Q = np.random.RandomState(1).normal(size=(n, 3))
    tracemalloc.start()
    try:
        proba = clf.predict_proba(Q)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert proba.shape == (n, 3) and np.isfinite(proba).all()
    # Host arrays: a few values per row, nothing like n * n (1e12 bytes).
    assert peak < 200 * n
    # Torch blocks: bounded by the block budget, whatever n is.
    assert max(block_spy) <= sksiamese._references._BLOCK_VALUES
    np.testing.assert_allclose(proba[:50], clf.predict_proba(Q[:50]), rtol=1e-12)


def test_queries_are_made_ready_for_comparison_once_per_block(monkeypatch):
    """Scoring prepares the references once and each block of queries once
    (members side by side, norms), not again for each of its classes, and
    copies each block's scores of every class to the host at once."""
    rng = np.random.RandomState(0)
    module = SiameseModule(torch.nn.Identity(), n_members=2, embedding_dim=4)
    codes = np.repeat(np.arange(30), 5)
    R, Q = rng.normal(size=(len(codes), 4)), rng.normal(size=(200, 4))
    prepared = []
    comparable = SiameseModule.comparable

    def spy(self, e):
        prepared.append(len(e))
        return comparable(self, e)

    copied = []
    to_host = torch.Tensor.cpu

    def copy_spy(self, *args, **kwargs):
        copied.append(tuple(self.shape))
        return to_host(self, *args, **kwargs)

    monkeypatch.setattr(SiameseModule, "comparable", spy)
    monkeypatch.setattr(torch.Tensor, "cpu", copy_spy)
    monkeypatch.setattr(sksiamese._references, "_BLOCK_VALUES", 2**10)
    S = class_dissimilarity(module, Q, R, codes, 30, 3)
    # References first, then the query blocks, which cover the queries once.
    assert prepared[0] == len(R) and sum(prepared[1:]) == len(Q)
    assert len(prepared) > 2
    assert copied == [(n, 30) for n in prepared[1:]]
    monkeypatch.undo()
    np.testing.assert_allclose(
        S, class_dissimilarity(module, Q, R, codes, 30, 3), rtol=1e-12
    )


@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize("n_classes", [2, 12])
def test_cpu_blocks_hold_the_values_that_stay_in_cache(monkeypatch, n_classes, grouped):
    """On a CPU, groups hold at most _GROUP_REFS references and queries are
    compared in blocks of _QUERY_VALUES values (rows x the wider of the
    embedding and a product), whatever the budget allows; the scores are
    those of one block."""
    rng = np.random.RandomState(0)
    module = SiameseModule(torch.nn.Identity(), n_members=2, embedding_dim=8)
    codes = np.repeat(np.arange(n_classes), 30)
    R, Q = rng.normal(size=(len(codes), 8)), rng.normal(size=(2000, 8))
    weights = rng.exponential(size=len(codes))
    monkeypatch.setitem(sksiamese._references._QUERY_VALUES, "cpu", 1 << 30)
    expected = class_dissimilarity(module, Q, R, codes, n_classes, 3, weights)
    prepared, products = [], []
    comparable, smallest = SiameseModule.comparable, SiameseModule.smallest

    def spy(self, e):
        prepared.append(len(e))
        return comparable(self, e)

    def product_spy(self, a, b, k, **kwargs):
        products.append(len(b[0]))
        return smallest(self, a, b, k, **kwargs)

    monkeypatch.setattr(SiameseModule, "comparable", spy)
    monkeypatch.setattr(SiameseModule, "smallest", product_spy)
    monkeypatch.setitem(sksiamese._references._GROUP_REFS, "cpu", 100)
    monkeypatch.setitem(sksiamese._references._QUERY_VALUES, "cpu", 2**16)
    if not grouped:
        monkeypatch.setitem(sksiamese._references._GROUPED_REFS, "cpu", 0)
    S = class_dissimilarity(module, Q, R, codes, n_classes, 3, weights)
    # Groups of at most 3 classes (90 references) in blocks of 2**16 // 90
    # = 728 queries; class by class, 2**16 // 30 = 2184 (all 2,000 at once).
    width = 30 * (min(3, n_classes) if grouped else 1)
    rows = min(2000, 2**16 // width)
    assert prepared[1:] == [min(rows, 2000 - s) for s in range(0, 2000, rows)]
    assert max(products) == width
    np.testing.assert_allclose(S, expected, rtol=1e-12)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("block_values", [2**24, 2**9])
def test_classes_scored_in_groups_score_as_one_by_one(
    monkeypatch, distance, block_values
):
    """Classes of as many references scored together (one product and one
    top-k per group, what a GPU does for every class that fits a block) give
    the scores of the loop over classes: classes of different sizes, empty
    ones, light and heavy references (some queries fetch again), groups
    split over blocks, and classes too large for one."""
    rng = np.random.RandomState(0)
    counts = np.r_[rng.choice([1, 2, 5, 8], size=40), 0, 30, 0, 12]
    codes = np.repeat(np.arange(len(counts)), counts)
    module = SiameseModule(
        torch.nn.Identity(), distance=distance, n_members=2, embedding_dim=3
    )
    R, Q = rng.normal(size=(len(codes), 6)), rng.normal(size=(150, 6))
    weights = rng.exponential(size=len(codes)) * rng.choice([1, 30], len(codes))
    monkeypatch.setattr(sksiamese._references, "_BLOCK_VALUES", block_values)
    scores = {}
    for largest in (0, 1 << 30):
        monkeypatch.setitem(sksiamese._references._GROUPED_REFS, "cpu", largest)
        for k in (1, 3):
            for w in (None, weights):
                scores[largest, k, w is None] = class_dissimilarity(
                    module, Q, R, codes, len(counts), k, w
                )
    for (largest, k, plain), S in scores.items():
        if largest:
            np.testing.assert_allclose(S, scores[0, k, plain], rtol=1e-12)
    assert np.isinf(S[:, counts == 0]).all() and np.isfinite(S[:, counts > 0]).all()


@pytest.mark.parametrize("references", ["all", 30])
@pytest.mark.parametrize("loss", ["contrastive", "bce"])
def test_small_blocks_give_the_same_scores(
    data, block_spy, monkeypatch, loss, references
):
    # Classes of different sizes, so that neighbourhoods differ in size, and
    # k-means references (30) that stand for different numbers of samples.
    X, y = data
    rng = np.random.RandomState(2)
    clf = SiameseClassifier(**TINY, loss=loss, references=references, n_neighbors=3)
    clf.fit(X, y)
    labels = rng.choice(4, size=500, p=[0.6, 0.25, 0.1, 0.05])
    clf.fit_references(rng.normal(size=(500, 3)), labels)
    Q = rng.normal(size=(700, 3))
    expected = clf.predict_proba(Q)
    block_spy.clear()
    monkeypatch.setattr(sksiamese._references, "_BLOCK_VALUES", 2**10)
    np.testing.assert_allclose(clf.predict_proba(Q), expected, rtol=1e-12)
    assert len(block_spy) > 50
    assert max(block_spy) <= 2**10


# -- which references are kept ---------------------------------------------------


def test_select_references_by_parameter():
    rng = np.random.RandomState(0)
    E = rng.normal(size=(300, 2)).astype(np.float32)
    codes = np.repeat([0, 1, 2], [200, 90, 10])
    refs = select_references(E, codes, "all", rng)
    assert refs.embeddings is E and np.all(refs.weights == 1)
    refs = select_references(E, codes, "prototypes", rng)
    np.testing.assert_allclose(refs.embeddings[0], E[:200].mean(0), rtol=1e-6)
    np.testing.assert_array_equal(refs.weights, [200, 90, 10])
    # k-means centres for the classes over k, every sample for the others;
    # the weights always add up to the class sizes.
    refs = select_references(E, codes, 20, rng)
    np.testing.assert_array_equal(np.bincount(refs.codes), [20, 20, 10])
    np.testing.assert_allclose(np.bincount(refs.codes, refs.weights), [200, 90, 10])


@pytest.mark.parametrize("references", ["all", "prototypes", 20, 2])
def test_references_from_some_rows_are_those_of_the_rows_copied(references):
    # Calibration selects from most of the training rows by their indices,
    # not from a copy of them; the result and the random draws are the same
    # (k=2: each class is over 20 k, so k-means sees a subsample).
    E = np.random.RandomState(0).normal(size=(400, 3)).astype(np.float32)
    codes = np.repeat([0, 1, 2], [200, 150, 50])
    rows = np.flatnonzero(np.arange(400) % 3 != 0)
    by_rows = select_references(E, codes, references, np.random.RandomState(1), rows)
    copied = select_references(
        E[rows], codes[rows], references, np.random.RandomState(1)
    )
    for field in ("embeddings", "codes", "weights"):
        np.testing.assert_array_equal(getattr(by_rows, field), getattr(copied, field))


def test_class_centres_place_repeated_rows_once():
    E = np.repeat(np.eye(3, dtype=np.float32), [5, 1, 1], axis=0)
    centres, weights = class_centres(E, 5, np.random.RandomState(0))
    assert len(centres) == 3
    np.testing.assert_array_equal(np.sort(weights), [1, 1, 5])


@pytest.mark.parametrize(
    "case",
    [
        "distinct",
        "equal first values",
        "repeated rows",
        "repeated rows and equal first values",
        "signed zeros",
    ],
)
def test_a_class_of_few_rows_keeps_its_distinct_rows_in_order(case):
    """With no more rows than centres, the references are the distinct rows
    as np.unique orders them, and how many times each occurs."""
    rng = np.random.RandomState(0)
    E = rng.normal(size=(12, 4)).astype(np.float32)
    if case == "equal first values":
        E[[2, 5, 9], 0] = E[7, 0]
    elif case == "repeated rows":
        E[[2, 5]] = E[7]
        E[[0, 11]] = E[3]
    elif case == "repeated rows and equal first values":
        E[[2, 5]] = E[7]
        E[9, 0] = E[7, 0]
    elif case == "signed zeros":  # equal rows to np.unique
        E[[4, 6, 8]] = E[1]
        E[[1, 6], 0], E[[4, 8], 0] = 0.0, -0.0
    centres, weights = class_centres(E, 20, np.random.RandomState(0))
    rows, counts = np.unique(E, axis=0, return_counts=True)
    np.testing.assert_array_equal(centres, rows)
    np.testing.assert_array_equal(weights, counts)
    # Each row's distinct row (what the members' shared clusters map back).
    distinct, counts, inverse = _distinct_rows(E)
    np.testing.assert_array_equal(distinct[inverse], E)
    np.testing.assert_array_equal(np.bincount(inverse), counts)


def _members_data(n_members=4):
    """Embeddings of 4 members side by side (3 values each) of three classes
    of 400, 150 and 9 rows, and the member that leaves each row out (dealt
    in turn within each class)."""
    rng = np.random.RandomState(0)
    codes = np.repeat([0, 1, 2], [400, 150, 9])
    E = rng.normal(size=(len(codes), 3 * n_members)).astype(np.float32)
    left_out = np.zeros(len(codes), dtype=np.int64)
    for c in range(3):
        rows = np.flatnonzero(codes == c)
        left_out[rows] = np.arange(len(rows)) % n_members
    return E, codes, left_out


@pytest.mark.parametrize("references", ["all", "prototypes"])
def test_member_references_by_name_are_those_of_its_trained_rows(references):
    E, codes, left_out = _members_data()
    refs = member_references(
        E, codes, left_out, 4, references, np.random.RandomState(0)
    )
    for m, r in enumerate(refs):
        trained = left_out != m
        expected = select_references(
            E[trained][:, 3 * m : 3 * (m + 1)],
            codes[trained],
            references,
            np.random.RandomState(0),
        )
        np.testing.assert_array_equal(r.codes, expected.codes)
        np.testing.assert_allclose(r.embeddings, expected.embeddings, rtol=1e-6)
        np.testing.assert_array_equal(r.weights, expected.weights)


def test_member_references_are_means_of_its_trained_rows_in_shared_clusters(
    monkeypatch,
):
    """With an int ``references``, a class of more trained rows than that is
    clustered once for all members (k-means on the whole embeddings), and
    each member's centres are the means of its own columns of the rows it
    trained on in each cluster, weighted by the rows they stand for: the
    rows it left out are in none of them. Smaller classes: each member
    keeps its distinct trained rows."""
    E, codes, left_out = _members_data()
    calls, clusters = [], []
    real_kmeans = sksiamese._references.kmeans
    real_shared = sksiamese._references._shared_clusters

    def counted(X, k, seed, **kwargs):
        calls.append(len(X))
        return real_kmeans(X, k, seed, **kwargs)

    def recorded(*args):
        clusters.append(real_shared(*args))
        return clusters[-1]

    monkeypatch.setattr(sksiamese._references, "kmeans", counted)
    monkeypatch.setattr(sksiamese._references, "_shared_clusters", recorded)
    k = 20
    refs = member_references(E, codes, left_out, 4, k, np.random.RandomState(0))
    # One k-means for each of the two classes over k (the 400 rows are
    # 20 k: k-means sees them all), not one per member.
    assert calls == [400, 150]
    for m in range(4):
        trained = left_out != m
        own = E[:, 3 * m : 3 * (m + 1)]
        # At most k centres a class; the weights add up to the rows trained on.
        np.testing.assert_array_less(np.bincount(refs[m].codes), k + 1)
        np.testing.assert_allclose(
            np.bincount(refs[m].codes, refs[m].weights),
            np.bincount(codes[trained]),
        )
        for c, (rows, _, labels) in enumerate(clusters):
            mine = trained[rows]
            used = np.unique(labels[mine])
            expected = [own[rows[mine & (labels == j)]].mean(0) for j in used]
            np.testing.assert_allclose(
                refs[m].embeddings[refs[m].codes == c],
                expected,
                rtol=1e-5,
                atol=1e-6,
            )
            # Only the rows of its class that the member trained on.
            assert np.all(codes[rows] == c)
        # The class of 9 rows: the member's 6 or 7 distinct trained rows.
        np.testing.assert_array_equal(
            refs[m].embeddings[refs[m].codes == 2],
            np.unique(own[trained & (codes == 2)], axis=0),
        )
    # A member's centres do not move with its columns of the rows it left
    # out, for the same clusters.
    moved = E.copy()
    for m in range(4):
        moved[left_out == m, 3 * m : 3 * (m + 1)] = 1e6
        rows, X, labels = clusters[0]
        a = sksiamese._references._member_means(clusters[0], left_out, m, 4, 300)
        b = sksiamese._references._member_means(
            (rows, moved[rows], labels), left_out, m, 4, 300
        )
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def _sklearn_kmeans(X, k, seed):
    init, _ = kmeans_plusplus(X, k, random_state=seed, n_local_trials=1)
    km = KMeans(k, init=init, n_init=1, max_iter=50, random_state=seed).fit(X)
    return km.cluster_centers_, km.labels_


@pytest.mark.parametrize("shape", ["blobs", "noise", "heavy tails", "few features"])
def test_kmeans_is_scikit_learns(shape):
    """The same draws and steps as scikit-learn's seeding and Lloyd
    iterations: the same labels, centres equal to rounding."""
    rng = np.random.RandomState(0)
    for _ in range(5):
        n, k = rng.randint(50, 400), rng.randint(2, 40)
        if shape == "blobs":
            X = 5 * rng.normal(size=(k, 16))[rng.randint(k, size=n)]
            X += 0.3 * rng.normal(size=(n, 16))
        elif shape == "noise":
            X = rng.normal(size=(n, 32))
        elif shape == "heavy tails":
            X = rng.standard_t(1.5, size=(n, 8))
        else:
            X = rng.exponential(size=(n, 2)) ** 3
        seed = rng.randint(2**31 - 1)
        centres, labels = kmeans(X, k, seed)
        expected_centres, expected_labels = _sklearn_kmeans(X, k, seed)
        np.testing.assert_array_equal(labels, expected_labels)
        np.testing.assert_allclose(centres, expected_centres, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("n_far", [1, 3])
@pytest.mark.parametrize("adds_in_order", [True, False])
def test_lloyd_moves_empty_clusters_as_scikit_learn(n_far, adds_in_order, monkeypatch):
    """Centres that start far from every row lose all of them at once; each
    is moved to one of the rows farthest from their centres. Also with the
    sums a GPU makes (index_put_, where index_add_ would add in an order
    that changes from run to run)."""
    monkeypatch.setattr(_networks, "_adds_in_order", lambda device: adds_in_order)
    rng = np.random.RandomState(n_far)
    X = rng.normal(size=(300, 3))
    init = X[rng.choice(300, 8, replace=False)]
    init[:n_far] = 100 + rng.normal(size=(n_far, 3))
    centres, labels = lloyd(torch.from_numpy(X), torch.from_numpy(init))
    km = KMeans(8, init=init, n_init=1, max_iter=50).fit(X)
    assert len(np.unique(labels)) == 8
    np.testing.assert_array_equal(labels, km.labels_)
    np.testing.assert_allclose(centres, km.cluster_centers_, rtol=1e-9, atol=1e-9)


# (scikit-learn warns of the two clusters that end at the same centre.)
@pytest.mark.filterwarnings("ignore:Number of distinct clusters")
@pytest.mark.parametrize("adds_in_order", [True, False])
def test_lloyd_moves_a_cluster_emptied_by_a_move_as_scikit_learn(
    adds_in_order, monkeypatch
):
    # The far centre's empty cluster takes the farthest row, the only row of
    # another cluster, which is left empty in turn: scikit-learn puts it at
    # the centre of the largest cluster (a mean of no rows would be NaN).
    monkeypatch.setattr(_networks, "_adds_in_order", lambda device: adds_in_order)
    X = np.array([[0.0, 0.0], [0.1, 0.0], [0.2, 0.0], [0.0, 0.1], [100.0, 0.0]])
    init = np.array([[0.1, 0.0], [60.0, 0.0], [-1000.0, 0.0]])
    for max_iter in (1, 50):
        centres, labels = lloyd(
            torch.from_numpy(X), torch.from_numpy(init), max_iter=max_iter
        )
        km = KMeans(3, init=init, n_init=1, max_iter=max_iter).fit(X)
        assert np.isfinite(centres).all()
        np.testing.assert_array_equal(labels, km.labels_)
        np.testing.assert_allclose(centres, km.cluster_centers_, rtol=1e-9, atol=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_kmeans_on_cuda_is_that_on_cpu():
    rng = np.random.RandomState(0)
    X = 5 * rng.normal(size=(30, 64))[rng.randint(30, size=2000)]
    X += rng.normal(size=(2000, 64))
    centres, labels = kmeans(X, 100, 7, device="cuda")
    expected_centres, expected_labels = kmeans(X, 100, 7)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_allclose(centres, expected_centres, rtol=1e-9, atol=1e-9)
    # The same centres to the last bit on every run.
    np.testing.assert_array_equal(kmeans(X, 100, 7, device="cuda")[0], centres)


def test_reservoir_keeps_a_uniform_sample_of_each_class():
    rng = np.random.RandomState(0)
    Z = np.arange(20_000, dtype=np.float32)[:, None]
    codes = np.repeat([0, 1], [19_900, 100])
    reservoir = new_reservoir(rng, "cpu", Z, 2)
    for chunk in np.array_split(rng.permutation(len(Z)), 10):
        update_reservoir(reservoir, Z[chunk], codes[chunk], cap=500)
    kept, kept_codes = kept_samples(reservoir)
    np.testing.assert_array_equal(reservoir.seen, [19_900, 100])
    np.testing.assert_array_equal(np.bincount(kept_codes), [500, 100])
    # A uniform sample of class 0 (values 0..19899): its mean is near the
    # class mean (standard error 5745 / sqrt(500) = 257).
    assert abs(kept[kept_codes == 0].mean() - 9949.5) < 4 * 257
