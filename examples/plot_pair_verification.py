"""
==========================================================
Same or different? Verifying pairs of pre-encoded vectors
==========================================================

Your data are pairs: two vectors per row, computed beforehand (text or image
embeddings), and a label saying whether the two are the same kind (1) or not
(0). :class:`~sksiamese.SiamesePairClassifier` learns a distance between the
two sides and says "same" when the distance is below a threshold.

Here the vectors are PCA codes of scikit-learn's bundled digit images, and a
pair is "same" when both images show the same digit. Training, calibration
and test pairs are built from three disjoint sets of images, so every test
pair holds two images the model has never seen.
"""

# %%
# Pairs of pre-encoded vectors
# ----------------------------
# The rows are laid out as in a CSV file: the 32 numbers of one side, then
# the 32 of the other. An array of shape ``(n_pairs, 2, 32)`` works too.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sksiamese import SiamesePairClassifier
from sksiamese.plotting import PairDistanceDisplay

images, digits = load_digits(return_X_y=True)
img_train, img_rest, dig_train, dig_rest = train_test_split(
    images, digits, test_size=0.5, stratify=digits, random_state=0
)
img_cal, img_test, dig_cal, dig_test = train_test_split(
    img_rest, dig_rest, test_size=0.6, stratify=dig_rest, random_state=0
)
pca = PCA(n_components=32, random_state=0).fit(img_train)
rng = np.random.RandomState(0)


def make_pairs(images, digits, n_pairs):
    """Rows of two PCA codes side by side; about half show the same digit."""
    codes = pca.transform(images)
    a = rng.randint(len(codes), size=n_pairs)
    same = rng.random_sample(n_pairs) < 0.5
    b = np.empty(n_pairs, dtype=int)
    for k, (i, is_same) in enumerate(zip(a, same, strict=True)):
        match = digits == digits[i]
        pool = np.flatnonzero(match if is_same else ~match)
        b[k] = rng.choice(pool[pool != i])
    return np.hstack([codes[a], codes[b]]), same.astype(int)


X_train, y_train = make_pairs(img_train, dig_train, 1000)
X_cal, y_cal = make_pairs(img_cal, dig_cal, 400)
X_test, y_test = make_pairs(img_test, dig_test, 1000)
print(f"training pairs {X_train.shape}, {y_train.mean():.0%} same")

# %%
# Train the twin network
# ----------------------
# Batches hold as many same as different pairs. ``predict_proba`` is
# calibrated on 10% of the training pairs held out, and ``predict`` says
# "same" where that probability exceeds 0.5.
clf = SiamesePairClassifier(max_epochs=40, random_state=0).fit(X_train, y_train)
proba = clf.predict_proba(X_test)[:, 1]
print(
    f"SiamesePairClassifier: accuracy {clf.score(X_test, y_test):.3f}, "
    f"ROC AUC {roc_auc_score(y_test, proba):.3f}"
)

# %%
# The usual baseline feeds symmetric features of the pair to a linear model.
half = X_train.shape[1] // 2


def pair_features(X):
    a, b = X[:, :half], X[:, half:]
    return np.hstack([np.abs(a - b), a * b])


baseline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
baseline.fit(pair_features(X_train), y_train)
print(
    "LogisticRegression on [|a - b|, a * b]: accuracy "
    f"{baseline.score(pair_features(X_test), y_test):.3f}, ROC AUC "
    f"{roc_auc_score(y_test, baseline.predict_proba(pair_features(X_test))[:, 1]):.3f}"
)

# %%
# Choose the threshold for the job
# --------------------------------
# Say a wrong "same" costs much more than a missed one: we want at most 2% of
# different pairs accepted, and as many same pairs as possible. That is the
# ``"max_tpr"`` strategy with ``min_tnr=0.98``, chosen on the calibration
# pairs, never on the test pairs.
default_threshold = clf.threshold_
clf.calibrate_threshold(X_cal, y_cal, strategy="max_tpr", min_tnr=0.98)
for name, threshold in [("default", default_threshold), ("max_tpr", clf.threshold_)]:
    rates = []
    for X_, y_ in [(X_cal, y_cal), (X_test, y_test)]:
        same = clf.pair_distance(X_[:, :half], X_[:, half:]) < threshold
        rates += [same[y_ == 1].mean(), 1 - same[y_ == 0].mean()]
    print(
        f"{name:>8} threshold {threshold:.3f}: calibration pairs TPR {rates[0]:.3f}, "
        f"TNR {rates[1]:.3f}; test pairs TPR {rates[2]:.3f}, TNR {rates[3]:.3f}"
    )

# %%
# Where the default threshold already rejects enough different calibration
# pairs, ``"max_tpr"`` keeps about the same threshold. A rate chosen on a few
# hundred calibration pairs is an estimate: on new pairs it holds only
# roughly, as the test pairs show. Check it on held-out pairs before relying
# on it, and calibrate on more pairs for a tighter estimate.

# %%
# Distances of same and different test pairs
# ------------------------------------------
# A good model puts the two histograms apart; the thresholds cut between them.
# :class:`~sksiamese.plotting.PairDistanceDisplay` draws them.
fig, (ax_hist, ax_roc) = plt.subplots(1, 2, figsize=(11, 4))
PairDistanceDisplay.from_estimator(
    clf,
    X_test,
    y_test,
    threshold=default_threshold,
    ax=ax_hist,
    bins=40,
    name="test pairs",
    threshold_kw={"label": "default threshold"},
)
ax_hist.axvline(
    clf.threshold_, color="C3", linestyle=":", label="min_tnr=0.98 (calibration)"
)
ax_hist.legend()

distance = clf.pair_distance(X_test[:, :half], X_test[:, half:])
fpr, tpr, _ = roc_curve(y_test, -distance)
ax_roc.plot(fpr, tpr, color="C2", label="SiamesePairClassifier")
for threshold, style, name in [
    (default_threshold, "ko", "default threshold"),
    (clf.threshold_, "C3s", "min_tnr=0.98 (calibration)"),
]:
    ax_roc.plot(
        np.mean(distance[y_test == 0] < threshold),
        np.mean(distance[y_test == 1] < threshold),
        style,
        label=name,
    )
ax_roc.set(xlabel="false positive rate (1 - TNR)", ylabel="true positive rate")
ax_roc.legend(loc="lower right")
fig.tight_layout()
plt.show()

# %%
# The threshold moves along the ROC curve; the network is not retrained, and
# ``predict_proba`` does not change. To tune the threshold by cross-validation
# instead of a calibration set, wrap the estimator in
# :class:`~sklearn.model_selection.TunedThresholdClassifierCV`.
