"""Images: the CNN encoder, augmentation, new classes, and the Omniglot loaders."""

import contextlib
import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sksiamese import SiameseClassifier, SiamesePairClassifier, _training
from sksiamese._augment import random_affine
from sksiamese._training import seeded
from sksiamese.datasets import load_omniglot_background, load_omniglot_one_shot
from sksiamese.datasets._omniglot import _decode_png

CNN = dict(
    encoder="cnn",
    embedding_dim=16,
    batch_size=100,
    max_epochs=8,
    early_stopping=False,
    random_state=0,
)

# The data folder sits beside the project; tests that need it skip without it.
OMNIGLOT = Path(
    os.environ.get(
        "SKSIAMESE_OMNIGLOT", Path(__file__).parents[2] / "shared/data/omniglot"
    )
)
needs_omniglot = pytest.mark.skipif(
    not (OMNIGLOT / "all_runs.zip").is_file(),
    reason=f"Omniglot zip files not found in {OMNIGLOT} "
    "(set SKSIAMESE_OMNIGLOT to their folder)",
)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    images = (X / 16.0).reshape(-1, 8, 8)
    return train_test_split(images, y, test_size=0.3, stratify=y, random_state=0)


@pytest.fixture(scope="module")
def fitted_cnn(digits):
    images, _, y, _ = digits
    return SiameseClassifier(**CNN).fit(images, y)


# -- the CNN encoder on images ---------------------------------------------------


def test_cnn_embeds_in_passes_sized_by_its_activations(fitted_cnn, digits):
    # 8x8 images through 64 filters: 4,096 values a row at the widest, so on
    # a CPU 128 rows a pass (2^19 values) rather than 2,048, and one image
    # alone costs a pass of 128 (a 105x105 image alone took 9 s on 2 CPU
    # threads when padded to 1,024). A sample's embedding is the same alone
    # as among the others.
    _, test, _, _ = digits
    module = fitted_cnn.net_.module_
    kind = torch.device(fitted_cnn.net_.device).type
    most = _training._EMBED_VALUES[kind] // (64 * 8 * 8)
    rows = min(_training.EMBED_ROWS[kind], 1 << (most.bit_length() - 1))
    if kind == "cpu":
        assert rows == 128
    passes = []
    hook = module.register_forward_pre_hook(
        lambda module, args: passes.append(len(args[0]))
    )
    try:
        E = fitted_cnn.transform(test)
        alone = np.concatenate(
            [fitted_cnn.transform(test[i : i + 1]) for i in (0, 300)]
        )
    finally:
        hook.remove()
    assert passes == [rows] * (-(-len(test) // rows)) + [rows, rows]
    if kind == "cpu":
        np.testing.assert_array_equal(alone, E[[0, 300]])
    else:  # a GPU's convolutions need not be exact across places in a batch
        np.testing.assert_allclose(alone, E[[0, 300]], rtol=1e-5, atol=1e-6)


def test_cnn_on_image_arrays(fitted_cnn, digits):
    _, images_test, _, y_test = digits
    assert fitted_cnn.image_shape_ == (1, 8, 8)
    assert fitted_cnn.n_features_in_ == 64
    assert fitted_cnn.transform(images_test).shape == (len(images_test), 16)
    assert fitted_cnn.predict_proba(images_test).shape == (len(images_test), 10)
    assert fitted_cnn.score(images_test, y_test) > 0.8
    # The same images with a channel axis, or as flat rows, are the same input.
    np.testing.assert_array_equal(
        fitted_cnn.predict(images_test[:, None]), fitted_cnn.predict(images_test)
    )
    np.testing.assert_array_equal(
        fitted_cnn.predict(images_test.reshape(len(images_test), -1)),
        fitted_cnn.predict(images_test),
    )


def test_flat_rows_with_image_shape_equal_image_arrays(fitted_cnn, digits):
    images, images_test, y, _ = digits
    flat = SiameseClassifier(image_shape=(8, 8), **CNN).fit(
        images.reshape(len(images), -1), y
    )
    assert flat.image_shape_ == (1, 8, 8)
    np.testing.assert_allclose(
        flat.transform(images_test), fitted_cnn.transform(images_test), atol=1e-5
    )


# A CNN small enough to fit in a few milliseconds, and images for it.
TINY_CNN = dict(
    encoder="cnn",
    embedding_dim=4,
    encoder_params={"channels": 4, "n_blocks": 1},
    max_epochs=1,
    random_state=0,
)
tiny_images = np.random.RandomState(0).rand(12, 8, 8)
tiny_y = np.repeat([0, 1], 6)


@pytest.mark.parametrize("image_shape", [(8, 8), (1, 8, 8), np.array([8, 8])])
@pytest.mark.parametrize("channel_axis", [False, True])
def test_image_shape_may_repeat_the_shape_of_image_arrays(image_shape, channel_axis):
    images = tiny_images[:, None] if channel_axis else tiny_images
    clf = SiameseClassifier(image_shape=image_shape, **TINY_CNN).fit(images, tiny_y)
    assert clf.image_shape_ == (1, 8, 8)


@pytest.mark.parametrize("image_shape", [(4, 16), (3, 5, 5), (2, 8, 8), (64,)])
@pytest.mark.parametrize("cls", [SiameseClassifier, SiamesePairClassifier])
def test_image_shape_other_than_that_of_image_arrays_is_refused(image_shape, cls):
    images, y = tiny_images, tiny_y
    if cls is SiamesePairClassifier:
        images, y = np.stack([images, images[::-1]], axis=1), np.tile([0, 1], 6)
    msg = (
        f"image_shape={image_shape!r} does not match the images of X, of shape "
        "(channels, height, width) (1, 8, 8)"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        cls(image_shape=image_shape, **TINY_CNN).fit(images, y)


@pytest.mark.parametrize("cls", [SiameseClassifier, SiamesePairClassifier])
@pytest.mark.parametrize("channels", [1, 3])
def test_images_with_channels_last_are_refused(cls, channels):
    # (n, 8, 8, 3) colour images were read as 8 channels of 8 x 3 pixels, and
    # trained on without complaint.
    images = np.repeat(tiny_images[..., None], channels, axis=3)
    y = tiny_y
    if cls is SiamesePairClassifier:
        images, y = np.stack([images, images[::-1]], axis=1), np.tile([0, 1], 6)
    msg = (
        f"X holds images of shape (8, 8, {channels}), which encoder='cnn' reads "
        f"as (channels, height, width): 8 channels of 8 x {channels} pixels. For "
        "images with their channels last, pass np.moveaxis(X, -1, -3)"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        cls(**TINY_CNN).fit(images, y)
    moved = cls(**TINY_CNN).fit(np.moveaxis(images, -1, -3), y)
    assert moved.image_shape_ == (channels, 8, 8)
    # Said twice, the shape stands.
    kept = cls(image_shape=(8, 8, channels), **TINY_CNN).fit(images, y)
    assert kept.image_shape_ == (8, 8, channels)


def test_images_as_nested_lists_are_the_image_arrays():
    arrays = SiameseClassifier(**TINY_CNN).fit(tiny_images, tiny_y)
    lists = SiameseClassifier(**TINY_CNN).fit(tiny_images.tolist(), tiny_y)
    assert lists.image_shape_ == (1, 8, 8)
    expected = arrays.transform(tiny_images)
    np.testing.assert_array_equal(lists.transform(tiny_images), expected)
    np.testing.assert_array_equal(arrays.transform(tiny_images.tolist()), expected)
    np.testing.assert_array_equal(
        arrays.transform(tiny_images[:, None].tolist()), expected
    )


def test_encoder_params_shape_the_cnn(digits):
    images, X_test, y, y_test = digits
    params = dict(CNN, max_epochs=2)
    clf = SiameseClassifier(encoder_params={"channels": 8, "n_blocks": 2}, **params)
    clf.fit(images, y)
    convs = [m for m in clf.net_.module_.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 8]
    assert clf.score(X_test, y_test) > 0.5


@pytest.mark.parametrize(
    "encoder, encoder_params, message",
    [
        ("cnn", {"width": 8}, "may set 'channels' and 'n_blocks'; got unknown"),
        ("cnn", {"channels": 0}, "encoder_params['channels'] must be a positive"),
        ("mlp", {"channels": 8}, "encoder_params are for encoder='cnn'"),
    ],
)
def test_encoder_params_that_would_be_ignored_are_refused(
    digits, encoder, encoder_params, message
):
    images, _, y, _ = digits
    clf = SiameseClassifier(
        **dict(CNN, encoder=encoder, encoder_params=encoder_params, max_epochs=1)
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        clf.fit(images.reshape(len(images), -1), y)


def test_images_of_another_shape_are_refused(fitted_cnn):
    msg = "X has images of shape (1, 4, 16), but SiameseClassifier was fitted on"
    with pytest.raises(ValueError, match=re.escape(msg)):
        fitted_cnn.predict(np.zeros((3, 4, 16)))


@pytest.mark.parametrize("shape", [(0, 8, 8), (0, 1, 8, 8)])
def test_no_images_get_scikit_learns_message(fitted_cnn, shape):
    # numpy's reshape failed first: it cannot infer a width from no rows.
    with pytest.raises(ValueError, match=re.escape("0 sample(s)")):
        fitted_cnn.predict(np.zeros(shape))
    with pytest.raises(ValueError, match=re.escape("0 sample(s)")):
        SiameseClassifier(encoder="cnn").fit(np.zeros(shape), [])


# -- augmentation ----------------------------------------------------------------


def test_random_affine_keeps_shape_and_is_small():
    gen = torch.Generator().manual_seed(0)
    image = torch.zeros(1, 1, 16, 16)
    image[..., 6:10, 4:12] = 1.0
    batch = image.reshape(1, -1).repeat(64, 1)
    out = random_affine(batch, (1, 16, 16), gen)
    assert out.shape == batch.shape and out.dtype == batch.dtype
    # Each image is distorted differently, but stays close to the original.
    assert len(torch.unique(out, dim=0)) == len(out)
    mass = out.sum(1) / batch.sum(1)
    assert ((mass > 0.7) & (mass < 1.3)).all()
    # Pairs (batch, 2, n_features) keep their layout.
    pairs = batch.reshape(32, 2, -1)
    assert random_affine(pairs, (1, 16, 16), gen).shape == pairs.shape


def test_random_affine_keeps_a_uniform_background():
    # Border padding: a constant image (scaled background) stays constant.
    batch = torch.full((8, 3 * 10 * 10), -0.7)
    out = random_affine(batch, (3, 10, 10), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, batch)


def test_random_affine_is_seeded():
    batch = torch.rand(4, 64)
    a = random_affine(batch, (1, 8, 8), torch.Generator().manual_seed(3))
    b = random_affine(batch, (1, 8, 8), torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("fails", [False, True])
def test_seeded_cuda_fit_runs_cudnn_deterministically_then_restores(fails):
    # Two seeded CNN fits differed on a GPU: cuDNN's autotuner and its
    # non-deterministic backward kernels. A fit on CUDA switches both for its
    # duration only (CUDA itself is not needed to see the switch).
    cudnn = torch.backends.cudnn
    before = cudnn.deterministic, cudnn.benchmark
    cudnn.benchmark = True
    try:
        with pytest.raises(RuntimeError) if fails else contextlib.nullcontext():
            with seeded(0, "cuda"):
                assert cudnn.deterministic and not cudnn.benchmark
                if fails:
                    raise RuntimeError("the fit failed")
        assert (cudnn.deterministic, cudnn.benchmark) == (before[0], True)
        with seeded(0, "cpu"):
            assert (cudnn.deterministic, cudnn.benchmark) == (before[0], True)
    finally:
        cudnn.deterministic, cudnn.benchmark = before


def test_seeded_leaves_cudnn_alone_when_told(monkeypatch):
    # What benchmarks/omniglot.py --cudnn-default measures against.
    monkeypatch.setattr(_training, "_DETERMINISTIC_CUDNN", False)
    cudnn = torch.backends.cudnn
    before = cudnn.deterministic, cudnn.benchmark
    with seeded(0, "cuda"):
        assert (cudnn.deterministic, cudnn.benchmark) == before


def test_augment_trains_repeatably_and_changes_training(fitted_cnn, digits):
    images, images_test, y, y_test = digits
    aug = SiameseClassifier(augment=True, **CNN).fit(images, y)
    again = SiameseClassifier(augment=True, **CNN).fit(images, y)
    np.testing.assert_array_equal(
        aug.transform(images_test), again.transform(images_test)
    )
    assert not np.allclose(
        aug.transform(images_test), fitted_cnn.transform(images_test)
    )
    assert aug.score(images_test, y_test) > 0.8


def test_augment_needs_images(iris):
    X, y = iris
    msg = (
        "augment=True distorts images, but X holds feature vectors: set "
        "image_shape to the (height, width) or (channels, height, width) of its "
        "rows, or pass X as (n, H, W) or (n, C, H, W) images with encoder='cnn' "
        "or a torch module."
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        SiameseClassifier(augment=True, max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match=re.escape(msg)):
        SiameseClassifier(augment=True).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="augment"):
        SiameseClassifier(augment="yes", max_epochs=1).fit(X, y)


def _linear_64_to_3():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))


@pytest.mark.parametrize(
    "encoder",
    [
        dict(encoder="mlp", encoder_params=None, hidden_layer_sizes=(4,)),
        dict(encoder="cnn"),
        dict(encoder=_linear_64_to_3(), encoder_params=None),
    ],
    ids=["mlp", "cnn", "module"],
)
def test_augment_takes_the_images_its_error_asks_for(encoder):
    params = dict(TINY_CNN, augment=True, **encoder)
    # Flat rows with image_shape, for any encoder.
    flat = tiny_images.reshape(len(tiny_images), -1)
    clf = SiameseClassifier(image_shape=(8, 8), **params).fit(flat, tiny_y)
    assert clf.net_.iterator_train__augment == (1, 8, 8)
    # Arrays of images, for encoder="cnn" and torch modules.
    if encoder["encoder"] != "mlp":
        clf = SiameseClassifier(**params).fit(tiny_images, tiny_y)
        assert clf.net_.iterator_train__augment == (1, 8, 8)


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("image_shape", [None, (8, 8)], ids=["arrays", "flat"])
@pytest.mark.parametrize(
    "encoder, name",
    [("cnn", "'cnn'"), (_linear_64_to_3(), "Sequential")],
    ids=["cnn", "module"],
)
def test_image_encoders_refuse_blanks(encoder, name, image_shape, augment):
    images = tiny_images.copy()
    images[0, 0, 0] = np.nan
    if image_shape is not None:
        images = images.reshape(len(images), -1)
    clf = SiameseClassifier(
        **dict(TINY_CNN, encoder=encoder, image_shape=image_shape, augment=augment)
    )
    msg = f"encoder={name} does not accept blanks (NaN) in images"
    with pytest.raises(ValueError, match=re.escape(msg)):
        clf.fit(images, tiny_y)


def test_partial_fit_distorts_images_as_fit_does(digits):
    images, _, y, _ = digits
    params = dict(CNN, max_epochs=1)
    plain = SiameseClassifier(**params).partial_fit(images, y, classes=np.arange(10))
    aug = SiameseClassifier(augment=True, **params)
    aug.partial_fit(images, y, classes=np.arange(10))
    assert aug.net_.iterator_train__augment == (1, 8, 8)
    assert plain.net_.iterator_train__augment is None
    assert not np.allclose(aug.transform(images[:20]), plain.transform(images[:20]))


# -- new classes from one example each ------------------------------------------


def test_fit_references_one_shot_on_new_digits(digits):
    images, images_test, y, y_test = digits
    old = y < 5
    clf = SiameseClassifier(loss="prototype", **CNN).fit(images[old], y[old])
    new_test = y_test >= 5
    rng = np.random.RandomState(0)
    accuracies = []
    for _ in range(5):
        # One reference of each new class, drawn from the training half.
        refs = [rng.choice(np.flatnonzero(y == c)) for c in range(5, 10)]
        clf.fit_references(images[refs], y[refs])
        assert clf.classes_.tolist() == [5, 6, 7, 8, 9]
        accuracies.append(clf.score(images_test[new_test], y_test[new_test]))
    # 5-way one-shot on digits never seen in training: chance is 20%.
    assert np.mean(accuracies) > 0.4


# -- Omniglot loaders: on small files made here, and on the real ones ------------


def _png(pixels, mode):
    """A PNG of ``pixels`` written by Pillow: mode "1" (0/1), "L" (0-255) or
    "I;16" (0-65535)."""
    from PIL import Image

    if mode == "1":
        image = Image.fromarray(pixels.astype(bool))
    elif mode == "L":
        image = Image.fromarray(pixels.astype(np.uint8))
    else:
        image = Image.fromarray(pixels.astype(np.uint16))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("mode, top", [("1", 1), ("L", 255), ("I;16", 65535)])
def test_png_decoder_gives_grey_levels_in_0_1(mode, top):
    rng = np.random.RandomState(0)
    pixels = rng.randint(0, top + 1, size=(10, 21))
    decoded = _decode_png(_png(pixels, mode))
    assert decoded.dtype == np.float64
    np.testing.assert_array_equal(decoded * top, pixels)


def test_png_decoder_refuses_what_is_not_an_image():
    with pytest.raises(ValueError, match="Not a readable PNG image"):
        _decode_png(b"not an image at all")


def _drawing(seed, size=12):
    """A white image with a random black stroke, as Omniglot has them."""
    pixels = np.ones((size, size), dtype=int)
    rng = np.random.RandomState(seed)
    r, c = rng.randint(2, size - 2, size=2)
    pixels[r - 2 : r + 2, c] = 0
    return _png(pixels, mode="1")


@pytest.fixture(scope="module")
def fake_omniglot(tmp_path_factory):
    """Two background splits sharing the alphabet Greek, and two one-shot runs."""
    folder = tmp_path_factory.mktemp("omniglot")
    splits = {
        "images_background_small1": {"Greek": 2, "Korean": 1},
        "images_background_small2": {"Greek": 2, "Tagalog": 3},
    }
    for split, alphabets in splits.items():
        with zipfile.ZipFile(folder / f"{split}.zip", "w") as zf:
            for alphabet, n_chars in alphabets.items():
                for c in range(1, n_chars + 1):
                    for d in range(1, 4):
                        name = f"{split}/{alphabet}/character{c:02d}/{c}_{d:02d}.png"
                        zf.writestr(name, _drawing(100 * len(alphabet) + 10 * c + d))
    with zipfile.ZipFile(folder / "all_runs.zip", "w") as zf:
        for run in ("run01", "run02"):
            lines = []
            for item, cls in ((1, 3), (2, 1), (3, 2)):
                lines.append(
                    f"{run}/test/item{item:02d}.png {run}/training/class{cls:02d}.png"
                )
                zf.writestr(f"{run}/test/item{item:02d}.png", _drawing(item))
                zf.writestr(f"{run}/training/class{item:02d}.png", _drawing(50 + item))
            zf.writestr(f"{run}/class_labels.txt", "\n".join(lines) + "\n")
    return folder


def test_background_loader_keeps_shared_drawings_once(fake_omniglot):
    data = load_omniglot_background(fake_omniglot, image_size=6)
    assert data.target_names.tolist() == [
        "Greek/character01",
        "Greek/character02",
        "Korean/character01",
        "Tagalog/character01",
        "Tagalog/character02",
        "Tagalog/character03",
    ]
    assert data.images.shape == (18, 6, 6)
    assert data.images.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(data.target), [3] * 6)
    assert data.alphabet.tolist().count("Greek") == 6
    # Ink is 1, background 0; area averaging keeps the amount of ink.
    full = load_omniglot_background(fake_omniglot, image_size=None)
    assert full.images.shape == (18, 12, 12)
    assert set(np.unique(full.images)) == {0.0, 1.0}
    np.testing.assert_allclose(
        data.images.sum((1, 2)) * 4, full.images.sum((1, 2)), rtol=1e-5
    )
    images, target = load_omniglot_background(fake_omniglot, return_X_y=True)
    assert images.shape == (18, 28, 28) and target.shape == (18,)


def test_one_shot_loader_orders_support_by_class(fake_omniglot):
    trials = load_omniglot_one_shot(fake_omniglot, image_size=None)
    assert trials.support.shape == (2, 3, 12, 12)
    assert trials.queries.shape == (2, 3, 12, 12)
    np.testing.assert_array_equal(trials.query_target, [[2, 0, 1], [2, 0, 1]])
    expected = 1.0 - _decode_png(_drawing(51))
    np.testing.assert_array_equal(trials.support[1, 0], expected)


def test_loaders_name_a_missing_folder_or_file(tmp_path, fake_omniglot):
    missing = tmp_path / "nowhere"
    with pytest.raises(
        FileNotFoundError, match="The Omniglot folder .* does not exist"
    ):
        load_omniglot_background(missing)
    with pytest.raises(FileNotFoundError, match="'all_runs.zip' was not found"):
        load_omniglot_one_shot(tmp_path)
    with pytest.raises(FileNotFoundError, match="'images_background.zip' was not"):
        load_omniglot_background(fake_omniglot, archives=("images_background.zip",))
    with pytest.raises(ValueError, match="image_size must be at least 1"):
        load_omniglot_one_shot(fake_omniglot, image_size=0)


@needs_omniglot
def test_real_omniglot_background():
    data = load_omniglot_background(OMNIGLOT)
    # 136 + 156 characters, of which Greek (24) and Latin (26) are in both.
    assert data.images.shape == (4840, 28, 28)
    assert len(data.target_names) == 242
    np.testing.assert_array_equal(np.bincount(data.target), np.full(242, 20))
    assert len(np.unique(data.images.reshape(len(data.images), -1), axis=0)) == 4840
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    # Strokes are thin: most of each image is background.
    assert (data.images.mean((1, 2)) < 0.3).all()


@needs_omniglot
def test_real_omniglot_one_shot_trials():
    trials = load_omniglot_one_shot(OMNIGLOT)
    assert trials.support.shape == (20, 20, 28, 28)
    assert trials.queries.shape == (20, 20, 28, 28)
    for target in trials.query_target:
        assert sorted(target) == list(range(20))
