"""Loaders of the Omniglot handwritten characters from their original zip files.

The zip files are read directly; nothing is downloaded. The PNG images are
decoded by Pillow, the ``images`` extra (``pip install "sksiamese[images]"``).
"""

import io
import posixpath
import zipfile
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

BACKGROUND_ARCHIVES = (
    "images_background_small1.zip",
    "images_background_small2.zip",
)
ONE_SHOT_ARCHIVE = "all_runs.zip"


def load_omniglot_background(
    path, image_size=28, *, archives=BACKGROUND_ARCHIVES, return_X_y=False
):
    """Load the Omniglot background (training) characters from local zip files.

    Omniglot (Lake et al., 2015) holds 20 drawings of each of 1,623 characters
    from 50 alphabets. Its "background" alphabets are meant for training; the
    one-shot evaluation (:func:`load_omniglot_one_shot`) uses other alphabets.
    By default the two minimal background splits are read; the alphabets Greek
    and Latin are in both, and each drawing is kept once. Pillow decodes the
    images (``pip install "sksiamese[images]"``).

    Parameters
    ----------
    path : str or path-like
        Folder holding the zip files, e.g. ``images_background_small1.zip``.
    image_size : int or None, default=28
        Side of the square images returned, resized from 105 x 105 pixels by
        area averaging. None keeps the original size.
    archives : tuple of str, default=("images_background_small1.zip", \
"images_background_small2.zip")
        Zip files to read inside ``path``, e.g. ``("images_background.zip",)``
        for the full 30-alphabet background set.
    return_X_y : bool, default=False
        Return ``(images, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with:

        images : ndarray of shape (n_images, image_size, image_size)
            float32 ink intensity: 1 for a stroke, 0 for the background.
        target : ndarray of shape (n_images,)
            Index of the character in ``target_names``.
        target_names : ndarray of shape (n_characters,)
            ``"Alphabet/characterNN"`` for each character.
        alphabet : ndarray of shape (n_images,)
            Alphabet of each image.
        DESCR : str
            Short description of the data.

    (images, target) : tuple if ``return_X_y`` is True

    Raises
    ------
    FileNotFoundError
        If ``path`` or one of the ``archives`` does not exist.

    References
    ----------
    .. [1] B. M. Lake, R. Salakhutdinov and J. B. Tenenbaum, "Human-level concept
       learning through probabilistic program induction", Science 350(6266),
       2015.

    Examples
    --------
    >>> from sksiamese.datasets import load_omniglot_background
    >>> data = load_omniglot_background("omniglot/")  # doctest: +SKIP
    >>> data.images.shape, len(data.target_names)  # doctest: +SKIP
    ((4840, 28, 28), 242)
    """
    image_size = _check_image_size(image_size)
    folder = _check_folder(path)
    if isinstance(archives, str):
        archives = (archives,)
    seen = set()
    images, keys, alphabets = [], [], []
    for name in archives:
        with zipfile.ZipFile(_check_file(folder, name)) as zf:
            for member in sorted(zf.namelist()):
                parts = member.split("/")
                if not member.lower().endswith(".png") or len(parts) < 3:
                    continue
                alphabet, character, drawing = parts[-3:]
                if (alphabet, character, drawing) in seen:
                    continue  # the same drawing in another split
                seen.add((alphabet, character, drawing))
                images.append(_read(zf, member, image_size))
                keys.append(f"{alphabet}/{character}")
                alphabets.append(alphabet)
    if not images:
        raise ValueError(f"No PNG images were found in {list(archives)} in {path}.")
    target_names, target = np.unique(np.array(keys), return_inverse=True)
    images = np.stack(images)
    if return_X_y:
        return images, target
    return Bunch(
        images=images,
        target=target,
        target_names=target_names,
        alphabet=np.array(alphabets),
        DESCR=(
            f"Omniglot background characters: {len(images)} images of "
            f"{len(target_names)} characters from {len(set(alphabets))} alphabets, "
            f"{images.shape[1]}x{images.shape[2]} pixels, ink = 1."
        ),
    )


def load_omniglot_one_shot(path, image_size=28):
    """Load the 400 official 20-way one-shot trials of Omniglot.

    The trials come in 20 runs. Each run has one drawing of each of 20
    characters (the support set, from alphabets not in the background set) and
    20 test drawings, one of each character by another drawer; a trial asks
    which of the 20 support images shows the character of a test image.
    Pillow decodes the images (``pip install "sksiamese[images]"``).

    Parameters
    ----------
    path : str or path-like
        Folder holding ``all_runs.zip``.
    image_size : int or None, default=28
        Side of the square images returned, resized from 105 x 105 pixels by
        area averaging. None keeps the original size.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with:

        support : ndarray of shape (n_runs, 20, image_size, image_size)
            ``support[r, c]`` is the one drawing of class ``c`` in run ``r``.
        queries : ndarray of shape (n_runs, 20, image_size, image_size)
            Test drawings of each run.
        query_target : ndarray of shape (n_runs, 20)
            Class (index into ``support[r]``) of each test drawing.
        DESCR : str
            Short description of the data.

        Images are float32 ink intensities: 1 for a stroke, 0 for the background.

    Raises
    ------
    FileNotFoundError
        If ``path`` or ``all_runs.zip`` does not exist.

    Examples
    --------
    >>> from sksiamese.datasets import load_omniglot_one_shot
    >>> trials = load_omniglot_one_shot("omniglot/")  # doctest: +SKIP
    >>> trials.support.shape, trials.query_target.shape  # doctest: +SKIP
    ((20, 20, 28, 28), (20, 20))
    """
    image_size = _check_image_size(image_size)
    folder = _check_folder(path)
    support, queries, targets = [], [], []
    with zipfile.ZipFile(_check_file(folder, ONE_SHOT_ARCHIVE)) as zf:
        label_files = sorted(n for n in zf.namelist() if n.endswith("class_labels.txt"))
        if not label_files:
            raise ValueError(f"No class_labels.txt was found in {ONE_SHOT_ARCHIVE}.")
        for label_file in label_files:
            # Lines are "runNN/test/itemNN.png runNN/training/classMM.png",
            # paths from the folder that holds the runs.
            top = posixpath.dirname(posixpath.dirname(label_file))
            pairs = [
                [posixpath.join(top, name) for name in line.split()]
                for line in zf.read(label_file).decode().splitlines()
                if line.strip()
            ]
            classes = sorted({cls for _, cls in pairs})
            code = {cls: i for i, cls in enumerate(classes)}
            support.append(np.stack([_read(zf, c, image_size) for c in classes]))
            queries.append(np.stack([_read(zf, q, image_size) for q, _ in pairs]))
            targets.append(np.array([code[cls] for _, cls in pairs]))
    support, queries = np.stack(support), np.stack(queries)
    return Bunch(
        support=support,
        queries=queries,
        query_target=np.stack(targets),
        DESCR=(
            f"Omniglot one-shot trials: {len(support)} runs of "
            f"{support.shape[1]}-way one-shot classification, "
            f"{queries.shape[0] * queries.shape[1]} trials, "
            f"{support.shape[2]}x{support.shape[3]} pixels, ink = 1."
        ),
    )


# -- helpers -----------------------------------------------------------------


def _check_image_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise TypeError(f"image_size must be an int or None; got {image_size!r}.")
    if image_size < 1:
        raise ValueError(f"image_size must be at least 1; got {image_size}.")
    return int(image_size)


def _check_folder(path):
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"The Omniglot folder {str(path)!r} does not exist. It must hold the "
            "original zip files (images_background_small1.zip, "
            "images_background_small2.zip, all_runs.zip from the "
            "brendenlake/omniglot repository); nothing is downloaded."
        )
    return folder


def _check_file(folder, name):
    file = folder / name
    if not file.is_file():
        present = sorted(p.name for p in folder.glob("*.zip"))
        raise FileNotFoundError(
            f"{name!r} was not found in the Omniglot folder {str(folder)!r}; "
            f"zip files there: {present}."
        )
    return file


def _read(zf, member, image_size):
    return _ink(_decode_png(zf.read(member)), image_size)


def _ink(pixels, image_size):
    """Grey levels in [0, 1] (white background) to ink in [0, 1], resized."""
    ink = 1.0 - pixels
    if image_size is not None and ink.shape != (image_size, image_size):
        ink = _area_resize(ink, image_size, image_size)
    return ink.astype(np.float32)


def _area_weights(n_in, n_out):
    """``(n_out, n_in)`` matrix averaging the input cells each output cell covers."""
    edges = np.linspace(0.0, n_in, n_out + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    cells = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, cells + 1) - np.maximum(lo, cells), 0.0, None)
    return overlap / overlap.sum(1, keepdims=True)


def _area_resize(image, height, width):
    rows = _area_weights(image.shape[0], height)
    cols = _area_weights(image.shape[1], width)
    return rows @ image @ cols.T


def _decode_png(data):
    """Grey levels in [0, 1] of a PNG image, as a 2-D float array."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:  # an optional dependency
        raise ImportError(
            "Reading the Omniglot images needs Pillow: "
            'pip install "sksiamese[images]" (or pip install pillow).'
        ) from exc
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"Not a readable PNG image: {exc}") from None
    with image:
        if image.mode == "1":  # Omniglot's: one bit per pixel
            return np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16"):
            return np.asarray(image, dtype=np.float64) / 65535.0
        return np.asarray(image.convert("L"), dtype=np.float64) / 255.0
