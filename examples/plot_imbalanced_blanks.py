"""
=====================================================
Rare cases and blank answers in survey records
=====================================================

Survey or clinical records mix ordinal answers, yes/no questions and one-hot
groups; cases are rare (here 3%), and optional questions are left blank, often
for a reason. This example

1. generates such records with :func:`~sksiamese.datasets.make_survey`,
2. puts :class:`~sksiamese.SiameseClassifier` next to class-weighted
   baselines in a stratified 5-fold cross-validation,
3. compares three ways of feeding blanks to the network, and
4. chooses the decision threshold on held-out data with
   :meth:`~sksiamese.SiameseClassifier.calibrate_threshold`.

The table in ``benchmarks/imbalanced.py`` repeats the comparison on three more
imbalanced datasets, two bundled with scikit-learn and one real clinical set.
"""

# %%
# Survey records with rare cases and telling blanks
# -------------------------------------------------
# Cases answer half of the questions differently, and leave a "sensitive" half
# blank more often than controls do.
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import StratifiedKFold, cross_validate, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from sksiamese import SiameseClassifier
from sksiamese.datasets import make_survey

torch.set_num_threads(1)  # tiny networks: threads cost more than they give

X, y = make_survey(
    n_samples=3000, positive_fraction=0.03, random_state=0, as_frame=True
)
print(f"{len(X)} records, {X.shape[1]} columns, {y.sum()} cases")
X.head()

# %%
blank_rate = X.isna().groupby(y).mean().T
ax = blank_rate.plot.bar(figsize=(10, 3), width=0.8)
ax.set_ylabel("fraction left blank")
ax.legend(["controls", "cases"])
ax.set_title("Blanks by question: cases skip some questions more often")
plt.tight_layout()

# %%
# Side by side in cross-validation
# --------------------------------
# :class:`~sksiamese.SiameseClassifier` takes the blanks as they are: each
# becomes 0 (the training median after scaling) plus a "was blank" column.
# Logistic regression needs them imputed (here the median, plus the same
# indicator columns); the tree ensembles take blanks natively. The baselines
# weight classes; the Siamese network draws class-balanced batches instead.
X, y = X.to_numpy(), y.to_numpy()
models = {
    "Siamese": make_pipeline(StandardScaler(), SiameseClassifier(random_state=0)),
    "LogReg": make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True),
        StandardScaler(),
        LogisticRegression(class_weight="balanced", max_iter=5000),
    ),
    "RandomForest": RandomForestClassifier(
        n_estimators=300, class_weight="balanced_subsample", random_state=0
    ),
    "HistGB": HistGradientBoostingClassifier(class_weight="balanced", random_state=0),
}
metrics = {
    "average_precision": "average precision",
    "roc_auc": "ROC AUC",
    "balanced_accuracy": "balanced accuracy",
}
cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
results = {
    name: cross_validate(model, X, y, cv=cv, scoring=list(metrics))
    for name, model in models.items()
}
for name, res in results.items():
    cells = "  ".join(
        f"{label} {res['test_' + m].mean():.3f}" for m, label in metrics.items()
    )
    print(f"{name:<13} {cells}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), sharey=False)
for ax, (m, label) in zip(axes, metrics.items(), strict=True):
    means = [results[n]["test_" + m].mean() for n in models]
    stds = [results[n]["test_" + m].std() for n in models]
    ax.bar(list(models), means, yerr=stds, color=["C0", "C1", "C2", "C3"])
    ax.set_title(label)
    ax.set_ylim(min(means) - 0.15, 1.0)
    ax.tick_params(axis="x", rotation=30)
fig.suptitle("5-fold CV, 3% cases (mean and standard deviation over folds)")
fig.tight_layout()

# %%
# Blanks as blanks, as -1, or imputed
# -----------------------------------
# Mapping a blank to -1 puts it at the low end of every answer scale, so a
# blank looks like a strong "no"; the median makes it look like a typical
# answer. Both hide that a blank is an answer of its own.
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)


def blanks_to(value):
    return FunctionTransformer(lambda A: np.where(np.isnan(A), value, A))


encodings = {
    "blank = 0 + indicator\n(default)": [],
    "blank -> -1": [blanks_to(-1.0)],
    "median imputation": [SimpleImputer(strategy="median")],
}
blank_scores = {}
for name, steps in encodings.items():
    model = make_pipeline(*steps, StandardScaler(), SiameseClassifier(random_state=0))
    model.fit(X_train, y_train)
    proba = model.predict_proba(X_test)[:, 1]
    blank_scores[name] = {
        "average precision": average_precision_score(y_test, proba),
        "ROC AUC": roc_auc_score(y_test, proba),
    }
    cells = "  ".join(f"{k} {v:.3f}" for k, v in blank_scores[name].items())
    print(f"{name.replace(chr(10), ' '):<32} {cells}")

fig, ax = plt.subplots(figsize=(7, 3))
width = 0.38
for i, metric in enumerate(["average precision", "ROC AUC"]):
    values = [s[metric] for s in blank_scores.values()]
    ax.bar(np.arange(3) + (i - 0.5) * width, values, width, label=metric)
ax.set_xticks(np.arange(3), list(blank_scores))
ax.set_ylim(0.4, 1.1)
ax.legend(loc="upper center", ncols=2)
ax.set_title("SiameseClassifier, three encodings of blanks (held-out 30%)")
fig.tight_layout()

# %%
# Choosing the decision threshold
# -------------------------------
# ``predict`` returns the class most probable at the training frequencies
# (``class_prior_``), so with 3% cases it favours "control", as a logistic
# regression without class weights does. A user often wants another trade-off: a
# recall of at least 90%, or the best balanced accuracy or F1. Hold out part
# of the training data, fit on the rest, and let
# :meth:`~sksiamese.SiameseClassifier.calibrate_threshold` choose. It moves
# ``predict`` and ``decision_function`` together and leaves the calibrated
# probabilities of ``predict_proba`` alone. (To tune the threshold by
# cross-validation instead, wrap the estimator in scikit-learn's
# :class:`~sklearn.model_selection.TunedThresholdClassifierCV`; the benchmark
# compares both.)
X_fit, X_held, y_fit, y_held = train_test_split(
    X_train, y_train, test_size=0.25, stratify=y_train, random_state=0
)
scaler = StandardScaler().fit(X_fit)
clf = SiameseClassifier(random_state=0).fit(scaler.transform(X_fit), y_fit)
Z_held, Z_test = scaler.transform(X_held), scaler.transform(X_test)

rows = {"default (0.5)": clf.threshold_}
for label, kwargs in {
    "balanced accuracy": dict(strategy="balanced_accuracy"),
    "F1": dict(strategy="f_beta"),
    "recall >= 0.9": dict(strategy="max_tnr", min_tpr=0.9),
}.items():
    rows[label] = clf.calibrate_threshold(Z_held, y_held, **kwargs).threshold_

proba = clf.predict_proba(Z_test)[:, 1]
for label, threshold in rows.items():
    pred = (proba > threshold).astype(int)
    print(
        f"{label:<18} threshold {threshold:.3f}  "
        f"recall {recall_score(y_test, pred):.2f}  "
        f"precision {precision_score(y_test, pred, zero_division=0):.2f}  "
        f"balanced accuracy {balanced_accuracy_score(y_test, pred):.3f}"
    )

fig, ax = plt.subplots(figsize=(8.5, 3))
bins = np.linspace(0, 1, 41)
ax.hist(proba[y_test == 0], bins=bins, alpha=0.6, label="controls", log=True)
ax.hist(proba[y_test == 1], bins=bins, alpha=0.8, label="cases", log=True)
colors = ["k", "C2", "C3", "C4"]
for (label, threshold), color in zip(rows.items(), colors, strict=True):
    ax.axvline(threshold, color=color, linestyle="--", label=label)
ax.set_xlabel("predicted probability of a case (test records)")
ax.set_ylabel("records")
ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
fig.tight_layout()
plt.show()

# %%
# The default ``predict`` picks the class most probable at the share of cases
# in the training data; a threshold chosen on held-out records adapts it to
# the trade-off a study needs, at the cost of setting some training records
# aside for it (``class_weight="balanced"`` gives balanced decisions without
# one).
