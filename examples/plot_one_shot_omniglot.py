"""
=====================================================
One-shot recognition of handwritten characters
=====================================================

A Siamese network learns what makes two drawings the same character; it can
then recognise characters it has never seen from a single drawing of each.

We train :class:`~sksiamese.SiameseClassifier` with the convolutional encoder
(``encoder="cnn"``) on characters of 8 Omniglot alphabets, briefly, then give it
one drawing of each of 20 characters from an alphabet it has never seen
(:meth:`~sksiamese.SiameseClassifier.fit_references`) and ask which of the 20 a
new drawing shows: the official 20-way one-shot task of Lake et al. (2015).

The data are the original Omniglot zip files, read from a local folder (nothing
is downloaded): ``images_background_small1.zip``,
``images_background_small2.zip`` and ``all_runs.zip`` of the
brendenlake/omniglot repository. Set ``SKSIAMESE_OMNIGLOT`` to their folder.
"""

# %%
# Load the characters
# -------------------
# Images come as ``(n, 28, 28)`` arrays of ink intensity, one label per
# character. The one-shot trials come in 20 runs of 20 characters each.
import os
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from sksiamese import SiameseClassifier
from sksiamese.datasets import load_omniglot_background, load_omniglot_one_shot

try:
    _here = Path(__file__).resolve().parent
except NameError:  # run interactively
    _here = Path.cwd()
candidates = [
    os.environ.get("SKSIAMESE_OMNIGLOT"),
    _here.parent.parent / "shared" / "data" / "omniglot",
    _here.parent / "shared" / "data" / "omniglot",
]
data_home = next(
    (Path(c) for c in candidates if c and (Path(c) / "all_runs.zip").is_file()),
    None,
)
if data_home is None:
    print(
        "Omniglot zip files not found: this example needs a folder holding "
        "images_background_small1.zip, images_background_small2.zip and "
        "all_runs.zip; set SKSIAMESE_OMNIGLOT to it. Skipping."
    )
    sys.exit(0)

background = load_omniglot_background(data_home)
trials = load_omniglot_one_shot(data_home)
print(background.DESCR)
print(trials.DESCR)

# %%
# Train on the background alphabets
# ---------------------------------
# The prototype loss (prototypical networks) classifies each image of a batch
# against the mean embedding of each character in the batch; batches hold 64
# characters with 4 drawings each. ``augment=True`` distorts every drawing by a
# small random affine transform each time it is drawn. Two passes over the data
# keep this example short; longer training, with the rotated characters added
# as new classes and batches of 128 characters x 2 drawings, does better
# (``benchmarks/omniglot.py``).
clf = SiameseClassifier(
    encoder="cnn",
    embedding_dim=64,
    loss="prototype",
    augment=True,
    batch_size=256,
    samples_per_class=4,
    max_epochs=2,
    lr=2e-3,
    early_stopping=False,
    validation_fraction=0.0,
    n_neighbors=1,
    random_state=0,
)
clf.fit(background.images, background.target)

# %%
# Answer the 400 official trials
# ------------------------------
# For each run, the one drawing of each of its 20 characters becomes the set of
# references, without retraining; then the 20 test drawings are classified.
labels = np.arange(20)
correct = 0
for support, queries, target in zip(
    trials.support, trials.queries, trials.query_target, strict=True
):
    clf.fit_references(support, labels)
    correct += (clf.predict(queries) == target).sum()
print(f"20-way one-shot accuracy: {correct / trials.query_target.size:.1%}")

# A reference point: the closest support image in pixel space.
pixel = [
    ((q[:, None] - s[None]) ** 2).sum((2, 3)).argmin(1) == t
    for s, q, t in zip(trials.support, trials.queries, trials.query_target, strict=True)
]
print(f"pixel-space nearest neighbour: {np.mean(pixel):.1%} (chance: 5%)")

# %%
# Look at a few trials
# --------------------
# Each row is one trial of the first run: the test drawing on the left, then the
# 20 references, the true one framed in green and, when the model chose another,
# the chosen one framed in red.
run = 0
clf.fit_references(trials.support[run], labels)
proba = clf.predict_proba(trials.queries[run])
n_rows = 4
fig, axes = plt.subplots(n_rows, 22, figsize=(13, 0.75 * n_rows + 0.5))
for row in range(n_rows):
    query, truth = trials.queries[run, row], trials.query_target[run, row]
    choice = int(proba[row].argmax())
    axes[row, 0].imshow(query, cmap="gray_r")
    axes[row, 0].set_title("test", fontsize=8)
    for c in range(20):
        ax = axes[row, c + 2]
        ax.imshow(trials.support[run, c], cmap="gray_r")
        if c == truth or c == choice:
            colour = "tab:green" if c == truth else "tab:red"
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3)
        if c == choice:
            ax.set_title(f"{proba[row, c]:.0%}", fontsize=8)
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
for ax in axes[:, 1]:
    ax.set_visible(False)
fig.suptitle("One drawing of each of 20 unseen characters; which one is the test?")
plt.show()
