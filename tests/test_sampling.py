import numpy as np
import pytest

from sksiamese._sampling import BalancedBatchSampler, auto_batch_size, batch_layout


@pytest.mark.parametrize(
    "n_classes, batch_size, k, expected",
    [
        (2, 128, None, (2, 64)),
        (3, 128, None, (3, 42)),
        (10, 16, None, (4, 4)),
        (10, 6, None, (2, 3)),
        (10, 4, None, (2, 2)),
        (1000, 128, None, (32, 4)),
        (5, 40, 4, (5, 4)),
        (50, 40, 4, (10, 4)),
    ],
)
def test_batch_layout(n_classes, batch_size, k, expected):
    assert batch_layout(n_classes, batch_size, k) == expected


@pytest.mark.parametrize(
    "largest, k, expected",
    [(15, None, (2, 15)), (1, None, (2, 2)), (10**6, None, (2, 64)), (15, 50, (2, 50))],
)
def test_batch_layout_caps_default_k_at_the_largest_class(largest, k, expected):
    batch_size = 128 if largest == 10**6 else 10**6
    assert batch_layout(2, batch_size, k, largest_class=largest) == expected


def test_balanced_batches_on_imbalanced_labels():
    # 95 of class 0, 5 of class 1: every batch still holds 4 of each.
    y = np.array([0] * 95 + [1] * 5)
    sampler = BalancedBatchSampler(y, batch_size=8, random_state=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 13  # ceil(100 / 8)
    for b in batches:
        assert np.bincount(y[b], minlength=2).tolist() == [4, 4]
    # The minority class is cycled through: each of its samples is used
    # 52 / 5 = 10 or 11 times per epoch, not a few of them over and over.
    used = np.bincount(np.concatenate(batches), minlength=100)[95:]
    assert used.min() >= 10 and used.max() <= 11


def test_majority_class_is_covered_without_repeats_within_a_pass():
    y = np.array([0] * 10 + [1] * 10)
    sampler = BalancedBatchSampler(y, batch_size=4, random_state=0)
    flat = np.concatenate(list(sampler))
    # 5 batches x 2 samples of each class = one full pass over each class.
    assert sorted(flat[y[flat] == 0]) == list(range(10))
    assert sorted(flat[y[flat] == 1]) == list(range(10, 20))


def test_epochs_are_redrawn_unless_fixed():
    y = np.repeat([0, 1, 2], 20)
    sampler = BalancedBatchSampler(y, batch_size=12, random_state=0)
    first, second = np.concatenate(list(sampler)), np.concatenate(list(sampler))
    assert not np.array_equal(first, second)
    fixed = BalancedBatchSampler(y, batch_size=12, random_state=0, resample=False)
    assert np.array_equal(np.concatenate(list(fixed)), np.concatenate(list(fixed)))


def test_subset_of_classes_per_batch():
    y = np.repeat(np.arange(30), 4)
    sampler = BalancedBatchSampler(
        y, batch_size=20, samples_per_class=4, random_state=1
    )
    for b in sampler:
        counts = np.bincount(y[b], minlength=30)
        assert (counts > 0).sum() == 5
        assert set(counts[counts > 0]) == {4}


def test_same_seed_same_batches():
    y = np.repeat([0, 1], [30, 7])
    a = list(BalancedBatchSampler(y, 8, random_state=3))
    b = list(BalancedBatchSampler(y, 8, random_state=3))
    assert all(np.array_equal(x, z) for x, z in zip(a, b, strict=True))


def test_single_class_is_refused():
    with pytest.raises(ValueError, match="at least 2 classes"):
        BalancedBatchSampler(np.zeros(5), batch_size=4)


def test_batches_are_never_larger_than_the_largest_class_allows():
    # 15 + 15 samples and a batch of a million: one batch of each sample once,
    # not a million indices repeating 30 samples.
    y = np.array([0] * 15 + [1] * 15)
    sampler = BalancedBatchSampler(y, batch_size=10**6, random_state=0)
    batches = list(sampler)
    assert len(batches) == 1
    assert sorted(batches[0]) == list(range(30))
    # A rare class is still cycled up to the size of the largest one.
    y = np.array([0] * 40 + [1] * 4)
    (batch,) = list(BalancedBatchSampler(y, batch_size=10**6, random_state=0))
    assert np.bincount(y[batch]).tolist() == [40, 40]
    # An explicit samples_per_class is taken as given.
    sampler = BalancedBatchSampler(y, batch_size=100, samples_per_class=50)
    assert sampler.samples_per_class == 50


def test_iterator_takes_read_only_data_without_warning():
    """Arrays from Ray's object store are read-only; the iterator shares them
    (it never writes them) without torch's non-writable warning."""
    import warnings

    from skorch.dataset import Dataset

    from sksiamese._training import BalancedBatchIterator

    X = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.arange(20) % 2
    X.flags.writeable = False
    y.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batches = list(BalancedBatchIterator(Dataset(X, y), 8, random_state=0))
    assert sum(len(yb) for _, yb in batches) >= 20
    for Xb, yb in batches:
        np.testing.assert_array_equal(Xb.numpy(), X[Xb.numpy()[:, 0].astype(int) // 2])
        assert set(np.bincount(yb.numpy())) == {4}
    np.testing.assert_array_equal(X, np.arange(40).reshape(20, 2))


@pytest.mark.parametrize(
    "n_samples, expected",
    [
        (0, 128),
        (51_199, 128),
        (51_200, 256),
        (102_400, 512),
        (204_800, 1024),
        (10**9, 1024),
    ],
)
def test_auto_batch_size_keeps_an_epoch_at_200_to_400_steps(n_samples, expected):
    batch = auto_batch_size(n_samples)
    assert batch == expected
    if 51_200 <= n_samples < 409_600:
        assert 200 <= n_samples / batch < 400


def test_iterator_yields_one_tensor_of_labels_when_every_batch_holds_every_class():
    """The sampler puts each batch's classes in order: when every batch holds
    every class, every batch's labels are the same, and one tensor serves
    them all (the loss then makes its label terms once). Otherwise, and for
    rows of labels (pairs with their groups), each batch has its own."""
    from skorch.dataset import Dataset

    from sksiamese._training import BalancedBatchIterator

    X = np.arange(60, dtype=np.float32)[:, None]  # a row's value is its index
    for y, batch_size, shared in [
        (np.array([5] * 40 + [0] * 12 + [2] * 8), 12, True),
        (np.arange(60) % 10, 8, False),  # 4 of 10 classes per batch
        (np.stack([np.arange(60) % 2, np.arange(60) % 7], 1), 8, False),
    ]:
        batches = list(BalancedBatchIterator(Dataset(X, y), batch_size, random_state=0))
        assert len(batches) >= 5
        labels = [yb for _, yb in batches]
        assert all(yb is labels[0] for yb in labels) == shared
        for Xb, yb in batches:
            np.testing.assert_array_equal(yb.numpy(), y[Xb.numpy()[:, 0].astype(int)])


def test_each_class_is_drawn_as_often_as_the_others_when_not_all_fit():
    # 200 classes of 5, batches of 32 classes x 4: an epoch of 8 batches has
    # 256 places, so every class takes 1 or 2 of them (drawn independently
    # per batch, a quarter of the classes went untrained in an epoch), and
    # no class holds two places in one batch.
    y = np.repeat(np.arange(200), 5)
    sampler = BalancedBatchSampler(y, batch_size=128, random_state=0)
    batches = list(sampler)
    places = np.bincount(
        np.concatenate([np.unique(y[b]) for b in batches]), minlength=200
    )
    assert places.min() == 1 and places.max() == 2 and places.sum() == 256
    for b in batches:
        assert np.bincount(y[b]).max() == 4


@pytest.mark.parametrize("n_samples, batch_size", [(6, 8), (100, 128), (7, 6)])
def test_a_batch_holds_no_sample_twice_when_its_class_has_enough(n_samples, batch_size):
    # Each class is cycled through in passes; a pass that starts inside a
    # batch must not repeat a sample the batch already has (a plain
    # concatenation of permutations did, in most such batches).
    y = np.r_[np.zeros(1000, dtype=int), np.ones(n_samples, dtype=int)]
    sampler = BalancedBatchSampler(y, batch_size=batch_size, random_state=0)
    assert sampler.samples_per_class <= n_samples
    for _ in range(3):
        for b in sampler:
            assert len(np.unique(b)) == len(b)


def test_every_one_of_many_classes_is_drawn_in_an_epoch():
    # 20,000 classes of 3, 32 per batch: 625 batches, one place for each.
    y = np.repeat(np.arange(20_000), 3)
    sampler = BalancedBatchSampler(y, batch_size=96, random_state=0)
    drawn = np.concatenate(list(sampler))
    assert len(np.unique(y[drawn])) == 20_000
