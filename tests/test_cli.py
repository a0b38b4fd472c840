"""The ``sksiamese compare`` command, run in-process on small data."""

import csv
import json
import re
import runpy
import sys

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sksiamese import _cli
from sksiamese._cli import main, read_csv

FAST = ["--folds", "2", "--max-epochs", "2", "--quiet"]


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


@pytest.fixture(scope="module")
def cancer_csv(tmp_path_factory):
    """120 rows, 5 features with some blanks, string labels in the middle."""
    X, y = load_breast_cancer(return_X_y=True)
    rng = np.random.RandomState(0)
    keep = rng.choice(len(X), 120, replace=False)
    X, y = X[keep][:, :5], np.array(["malignant", "benign"])[y[keep]]
    rows = []
    for i, (x, label) in enumerate(zip(X, y, strict=True)):
        cells = [f"{v:.6g}" for v in x]
        if i % 9 == 0:
            cells[1] = "" if i % 2 else "NA"
        rows.append(cells[:2] + [label] + cells[2:])
    header = ["radius", "texture", "diagnosis", "perimeter", "area", "smoothness"]
    return write_csv(tmp_path_factory.mktemp("data") / "cancer.csv", header, rows)


@pytest.fixture(scope="module")
def wine_csv(tmp_path_factory):
    X, y = load_wine(return_X_y=True)
    rows = [[*(f"{v:.6g}" for v in x[:6]), int(t)] for x, t in zip(X, y, strict=True)]
    header = [f"f{j}" for j in range(6)] + ["cultivar"]
    return write_csv(tmp_path_factory.mktemp("data") / "wine.csv", header, rows)


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def compare(capsys, path, target, *args):
    """``sksiamese compare PATH --target TARGET`` with ``args``."""
    return run(capsys, "compare", path, "--target", target, *args)


def test_compare_csv_prints_a_table(capsys, cancer_csv):
    code, out, err = compare(
        capsys,
        cancer_csv,
        "diagnosis",
        "--folds",
        "2",
        "--max-epochs",
        "2",
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("cancer.csv: 120 samples, 5 features, 2 classes")
    assert "blank cells" in lines[0]
    header = next(line for line in lines if line.startswith("model"))
    for column in ("balanced_accuracy", "roc_auc", "average_precision", "fit time"):
        assert column in header
    rows = {line.split()[0]: line for line in lines if "±" in line}
    assert set(rows) == set(_cli.MODELS.values())
    for row in rows.values():
        means = [float(v) for v in row.split()[1::3][:3]]
        assert all(0.5 < m <= 1.0 for m in means), row
    # The progress goes to stderr, one line per fit when it is not a terminal.
    progress = [line for line in err.splitlines() if " fits, " in line]
    assert len(progress) == 4 * 2
    assert "SiameseClassifier fold 1/2 [1/8 fits" in progress[0]


def test_compare_json_multiclass(capsys, wine_csv):
    code, out, err = compare(
        capsys,
        wine_csv,
        "cultivar",
        "--models",
        "siamese,logistic",
        "--scoring",
        "roc_auc,average_precision,log_loss,f1_macro",
        "--json",
        *FAST,
    )
    assert code == 0, err
    assert " fits, " not in err  # --quiet: no progress, only warnings
    result = json.loads(out)
    assert result["dataset"]["n_classes"] == 3
    assert result["dataset"]["classes"] == [0, 1, 2]
    assert result["dataset"]["target"] == "cultivar"
    assert result["cv"]["folds"] == 2
    assert [r["model"] for r in result["results"]] == [
        "SiameseClassifier",
        "LogisticRegression",
    ]
    for r in result["results"]:
        assert r["error"] is None
        assert set(r["scores"]) == {
            "roc_auc",
            "average_precision",
            "log_loss",
            "f1_macro",
        }
        for s in r["scores"].values():
            assert len(s["folds"]) == 2
            assert s["mean"] == pytest.approx(np.mean(s["folds"]))
        # Both models tell the cultivars apart on 6 features (0.96 and 0.97
        # ROC AUC, 0.94 average precision, 0.87 and 0.89 F1 when written).
        assert r["scores"]["roc_auc"]["mean"] > 0.9
        assert r["scores"]["average_precision"]["mean"] > 0.85
        assert r["scores"]["f1_macro"]["mean"] > 0.75
        assert r["scores"]["log_loss"]["mean"] < 0.6
        assert all(t > 0 for t in r["fit_time"]["folds"])
    # The scores of the logistic regression are scikit-learn's, on the same
    # folds (stratified, shuffled with random_state=0).
    X, y = read_csv(wine_csv, "cultivar")[:2]
    expected = cross_validate(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        X,
        y,
        cv=StratifiedKFold(2, shuffle=True, random_state=0),
        scoring=["roc_auc_ovr", "f1_macro", "neg_log_loss"],
    )
    scores = result["results"][1]["scores"]
    np.testing.assert_allclose(scores["roc_auc"]["folds"], expected["test_roc_auc_ovr"])
    np.testing.assert_allclose(scores["f1_macro"]["folds"], expected["test_f1_macro"])
    np.testing.assert_allclose(
        scores["log_loss"]["folds"], -expected["test_neg_log_loss"]
    )


def test_builtin_data_is_the_default(capsys):
    code, out, err = run(capsys, "compare", "--models", "logistic", "--json", *FAST)
    assert code == 0, err
    result = json.loads(out)
    assert result["dataset"]["name"].startswith("breast_cancer")
    assert result["dataset"]["n_samples"] == 569
    assert result["dataset"]["blanks"] == 0


def test_same_seed_same_scores(capsys, cancer_csv):
    args = ["compare", cancer_csv, "--target", "diagnosis", "--models", "siamese"]
    args += ["--json", *FAST]
    first = json.loads(run(capsys, *args)[1])
    second = json.loads(run(capsys, *args)[1])
    assert first["results"][0]["scores"] == second["results"][0]["scores"]


def test_plot_writes_an_image(capsys, cancer_csv, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "compare.png"
    code, _, err = compare(
        capsys,
        cancer_csv,
        "diagnosis",
        "--models",
        "logistic,forest",
        "--plot",
        str(path),
        *FAST,
    )
    assert code == 0, err
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _result(model, scores, fit_time=(0.01, 0.02), error=None):
    """One model's entry of cross_validate_models' results."""
    return {
        "model": model,
        "scores": {name: list(values) for name, values in scores.items()},
        "fit_time": list(fit_time),
        "error": error,
        "warnings": {},
    }


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def test_plot_marks_a_score_computed_on_no_fold_n_a(tmp_path):
    # Constant predictions leave tuned_balanced_accuracy NaN on every fold.
    pytest.importorskip("matplotlib")
    nan = float("nan")
    results = [
        _result("Logistic", {"roc_auc": [0.8, 0.9], _cli.TUNED: [nan, nan]}),
        _result("Boosting", {"roc_auc": [nan, nan], _cli.TUNED: [nan, nan]}),
    ]
    path = tmp_path / "chart.png"
    fig = _cli.plot_comparison(results, ["roc_auc", _cli.TUNED], str(path))
    assert path.read_bytes()[:4] == b"\x89PNG"
    auc, tuned, _ = fig.axes
    lo, hi = auc.get_xlim()
    assert lo < 0.8 and 0.9 < hi <= 1.01
    assert _texts(auc) == ["0.850", "n/a"]
    assert _texts(tuned) == ["n/a", "n/a"]
    assert list(tuned.get_xticks()) == []
    assert tuned.get_xlabel() == "not computed on any fold"


def test_csv_reader(cancer_csv):
    X, y, names = read_csv(cancer_csv, "diagnosis")
    assert names == ["radius", "texture", "perimeter", "area", "smoothness"]
    assert X.shape == (120, 5)
    assert np.isnan(X[:, 1]).sum() == len(range(0, 120, 9))
    assert not np.isnan(np.delete(X, 1, axis=1)).any()
    assert set(y.tolist()) == {"malignant", "benign"}


def test_integer_labels_and_blank_tokens(tmp_path):
    rows = [["1.5", "NA", "0"], [" 2", "?", "1"], ["", "3e2", "01"], ["4", "nan", "0"]]
    path = write_csv(tmp_path / "d.csv", ["a", "b", "y"], rows)
    X, y, _ = read_csv(path, "y")
    np.testing.assert_array_equal(
        X, [[1.5, np.nan], [2.0, np.nan], [np.nan, 300.0], [4.0, np.nan]]
    )
    assert y.tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize(
    "labels",
    [
        ["12345678901234567890", "98765432109876543210"],
        ["1e20", "2e20"],
    ],
)
def test_labels_beyond_int64_are_read_as_text(tmp_path, labels):
    # They came out as objects (an "unknown" target that no score took) or,
    # written as floats, wrapped round to negative numbers.
    rows = [[str(i), labels[i % 2]] for i in range(6)]
    path = write_csv(tmp_path / "d.csv", ["a", "y"], rows)
    _, y, _ = read_csv(path, "y")
    assert y.tolist() == [labels[i % 2] for i in range(6)]


def test_quoted_fields_may_hold_the_delimiter(tmp_path):
    path = tmp_path / "quoted.csv"
    path.write_text('y,a,b\n"a,x",1,2\n"b,y",3,4\n')
    X, y, _ = read_csv(str(path), "y")
    assert y.tolist() == ["a,x", "b,y"]
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])


@pytest.mark.parametrize("delimiter, given", [("\t", "tab"), ("\t", "\\t"), (";", ";")])
def test_other_delimiters(capsys, tmp_path, delimiter, given):
    path = tmp_path / "d.csv"
    lines = [delimiter.join(["a", "b", "y"])]
    lines += [delimiter.join([str(i), str(i % 3), "ab"[i % 2]]) for i in range(12)]
    path.write_text("\n".join(lines) + "\n")
    code, out, err = compare(
        capsys,
        str(path),
        "y",
        "--delimiter",
        given,
        "--models",
        "logistic",
        "--json",
        *FAST,
    )
    assert code == 0, err
    assert json.loads(out)["dataset"]["n_features"] == 2


def write_bad(tmp_path, header, rows):
    return write_csv(tmp_path / "bad.csv", header, rows)


ROWS = [[str(i), str(i % 3), "ab"[i % 2]] for i in range(12)]


def _csv(header, rows, encoding="utf-8"):
    return ("\n".join(",".join(r) for r in [header, *rows]) + "\n").encode(encoding)


# Bad files and the one line each is refused with (exit status 2).
BAD_FILES = {
    "missing-file": (None, ["--target", "y"], "no such file"),
    "directory": ("directory", ["--target", "y"], "no such file"),
    "unknown-column": (
        _csv(["a", "b", "y"], ROWS),
        ["--target", "label"],
        r"no column 'label' in .*; the columns are 'a', 'b', 'y'$",
    ),
    "other-delimiter": (
        _csv(["a;b;y"], [[";".join(r)] for r in ROWS]),
        ["--target", "y"],
        r"the columns are 'a;b;y'; the header is one column holding ';': if that "
        r"separates the fields, pass --delimiter ';'",
    ),
    "tab-delimiter": (
        _csv(["a\tb\ty"], [["\t".join(r)] for r in ROWS]),
        ["--target", "y"],
        r"holding tab: if that separates the fields, pass --delimiter tab",
    ),
    "non-numeric": (
        _csv(["a", "colour", "y"], [[r[0], "red", r[2]] for r in ROWS]),
        ["--target", "y"],
        r"column 'colour' is not numeric: line 2 of .* holds 'red'; encode it as "
        r"numbers, or drop it$",
    ),
    "stray-text-cell": (
        _csv(
            ["a", "b", "y"],
            [[r[0], "-" if i == 7 else r[1], r[2]] for i, r in enumerate(ROWS)],
        ),
        ["--target", "y"],
        r"column 'b' is not numeric: line 9 of .* holds '-', the first of 1 cell\(s\) "
        r"that are neither numbers nor blanks \(an empty cell, NA, ...\); fix those "
        r"cells, or drop the column$",
    ),
    "one-class": (
        _csv(["a", "b", "y"], [[*r[:2], "a"] for r in ROWS]),
        ["--target", "y"],
        r"the target has only one class \('a'\)",
    ),
    "blank-label": (
        _csv(["a", "b", "y"], [*ROWS[:-1], [*ROWS[-1][:2], ""]]),
        ["--target", "y"],
        r"the target column 'y' has 1 blank cell\(s\)",
    ),
    "continuous-target": (
        _csv(["a", "b", "y"], [[*r[:2], "0.5"] for r in ROWS]),
        ["--target", "y"],
        r"holds non-integer numbers \(e.g. '0.5'\)",
    ),
    "tiny-class": (
        _csv(["a", "b", "y"], [*ROWS, ["1", "2", "c"]]),
        ["--target", "y"],
        r"class 'c' has only 1 sample\(s\)",
    ),
    "duplicate-columns": (
        _csv(["a", "a", "y"], ROWS),
        ["--target", "y"],
        r"duplicate column names: \['a'\]",
    ),
    "index-column": (
        _csv(["", "a", "b", "y"], [[str(i), *r] for i, r in enumerate(ROWS)]),
        ["--target", "y"],
        r"column 1 of .* has no name; a row index written by pandas",
    ),
    "all-blank-column": (
        _csv(["a", "empty", "y"], [[r[0], "", r[2]] for r in ROWS]),
        ["--target", "y"],
        r"column 'empty' is blank in every row; drop it",
    ),
    "infinite-value": (
        _csv(["a", "b", "y"], [["1e400", *ROWS[0][1:]], *ROWS[1:]]),
        ["--target", "y"],
        "column 'a' holds infinite values",
    ),
    "short-row": (
        _csv(["y", "a", "b"], [[r[2], r[0], r[1]] for r in ROWS[:5]] + [["b", "7"]]),
        ["--target", "y"],
        r"line 7 of .* has 2 fields; the header has 3",
    ),
    "long-row": (
        _csv(["a", "b", "y"], [*ROWS, ["1", "2", "a", "9"]]),
        ["--target", "y"],
        r"line 14 of .* has 4 fields; the header has 3",
    ),
    "binary-file": (
        bytes(range(256)) * 4,
        ["--target", "y"],
        "cannot read .*'utf-8' codec can't decode",
    ),
    "latin-1-file": (
        _csv(["a", "b", "y"], [[*r[:2], "\xe9"] for r in ROWS], "latin-1"),
        ["--target", "y"],
        "cannot read .*'utf-8' codec",
    ),
    "empty-file": (b"", ["--target", "y"], "is empty; expected a header row"),
    "header-only": (
        _csv(["a", "b", "y"], []),
        ["--target", "y"],
        "has a header but no data rows",
    ),
    "no-target": (_csv(["a", "b", "y"], ROWS), [], "--target COLUMN is needed"),
    "binary-score-on-3-classes": (
        _csv(["a", "b", "y"], [[*r[:2], "abc"[i % 3]] for i, r in enumerate(ROWS)]),
        ["--target", "y", "--scoring", "f1"],
        r"score 'f1' cannot be computed on this target: Target is multiclass",
    ),
    "tuned-on-3-classes": (
        _csv(["a", "b", "y"], [[*r[:2], "abc"[i % 3]] for i, r in enumerate(ROWS)]),
        ["--target", "y", "--scoring", "tuned_balanced_accuracy"],
        r"tuned_balanced_accuracy tunes the threshold of two classes; the target "
        r"has 3",
    ),
    "plot-format": (
        _csv(["a", "b", "y"], ROWS),
        ["--target", "y", "--plot", "out.txt"],
        r"--plot: cannot write a chart to 'out.txt'; name a file ending in one of: "
        r".*\.png",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_input_one_line_exit_2(capsys, tmp_path, case):
    content, extra, pattern = BAD_FILES[case]
    if case == "plot-format":
        pytest.importorskip("matplotlib")
    path = tmp_path / "data.csv"
    if content == "directory":
        path = tmp_path
    elif content is not None:
        path.write_bytes(content)
    code, out, err = run(capsys, "compare", str(path), *extra, *FAST)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("sksiamese compare: error: ")
    assert re.search(pattern, err.strip()), err


def test_plot_clips_only_scores_bounded_by_1(tmp_path):
    pytest.importorskip("matplotlib")
    results = [
        _result(
            "Logistic",
            {"roc_auc": [0.9, 1.0, 1.0], "positive_likelihood_ratio": [3.0, 5.0, 4.0]},
        )
    ]
    scoring = ["roc_auc", "positive_likelihood_ratio"]
    fig = _cli.plot_comparison(results, scoring, str(tmp_path / "chart.png"))
    auc, ratio, _ = fig.axes
    lo, hi = auc.get_xlim()
    assert lo < 0.92 and 1.0 < hi < 1.01  # mean ± std: 0.920 to 1.014
    lo, hi = ratio.get_xlim()
    assert lo < 3.18 and 4.82 < hi  # mean ± std: 3.18 to 4.82, not cut at 1


def _never_trained(names, **kwargs):
    raise AssertionError("a model was made before the input was checked")


@pytest.mark.parametrize("case", ["directory", "read-only folder", "read-only file"])
def test_unwritable_plot_path_refused_before_training(
    capsys, monkeypatch, tmp_path, case
):
    pytest.importorskip("matplotlib")
    import os

    data = tmp_path / "d.csv"
    data.write_bytes(_csv(["a", "b", "y"], ROWS))
    folder = tmp_path / "out"
    folder.mkdir()
    plot = folder / "chart.png"
    if case == "directory":
        plot.mkdir()
        message = (
            f"--plot: {plot} is a directory; name the chart's file, such as "
            f"{plot / 'compare.png'}"
        )
    else:
        if case == "read-only file":
            plot.write_bytes(b"")
        denied = str(folder if case == "read-only folder" else plot)
        access = os.access
        # Permissions are not enforced for root: refuse them by hand.
        monkeypatch.setattr(
            os, "access", lambda p, mode: str(p) != denied and access(p, mode)
        )
        message = f"--plot: cannot write to {plot}: permission denied"
    monkeypatch.setattr(_cli, "make_models", _never_trained)
    code, out, err = compare(capsys, str(data), "y", "--plot", str(plot), *FAST)
    assert (code, out) == (2, "")
    assert err == f"sksiamese compare: error: {message}\n"


def test_plot_save_error_is_one_line(capsys, monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    import errno

    from matplotlib.figure import Figure

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full_disk)
    data = tmp_path / "d.csv"
    data.write_bytes(_csv(["a", "b", "y"], ROWS))
    plot = tmp_path / "chart.png"
    code, out, err = compare(
        capsys, str(data), "y", "--models", "logistic", "--plot", str(plot), *FAST
    )
    assert code == 2
    assert "LogisticRegression" in out  # the scores are printed all the same
    assert err == (
        f"sksiamese compare: error: --plot: cannot save the chart to {plot}: "
        "No space left on device\n"
    )


def test_empty_last_cells_are_blanks_not_short_rows(tmp_path):
    from sksiamese._cli import read_csv

    path = tmp_path / "blanks.csv"
    path.write_text("y,a,b\na,1, \nb,2,NA\na,3,4\nb,4,\n")
    X, y, names = read_csv(str(path), "y")
    assert names == ["a", "b"]
    np.testing.assert_array_equal(X[:, 0], [1, 2, 3, 4])
    np.testing.assert_array_equal(np.isnan(X[:, 1]), [True, True, False, True])
    assert X[2, 1] == 4.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["compare", "--folds", "1"], "argument --folds: must be at least 2"),
        (
            ["compare", "--random-state", str(2**32)],
            "argument --random-state: must be at most 4294967295; got 4294967296",
        ),
        (["compare", "--random-state", "-1"], "must be at least 0; got -1"),
        (["compare", "--scoring", "r2"], "unknown score ['r2']"),
        (["compare", "--scoring", "adjusted_rand_score"], "unknown score"),
        (["compare", "--delimiter", ";;"], "must be one character, or tab"),
        (["compare", "--delimiter", ""], "must be one character, or tab"),
        (["compare", "--models", "svm"], "unknown model ['svm']"),
        (["compare", "--target", "y"], "--target needs a DATA file"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_usage_exit_2(capsys, args, message):
    code, out, err = run(capsys, *args)
    assert code == 2
    assert message in err.splitlines()[-1]
    assert re.match(r"sksiamese( compare)?: error: ", err.splitlines()[-1])
    assert "Traceback" not in err


def test_no_command_prints_help(capsys):
    code, _, err = run(capsys)
    assert code == 2
    assert "compare" in err


def test_plot_without_matplotlib(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = run(capsys, "compare", "--plot", str(tmp_path / "x.png"), *FAST)
    assert code == 2
    assert "pip install 'sksiamese[plot]'" in err


class _Broken:
    def fit(self, X, y):
        raise RuntimeError("cannot fit\nsecond line")

    def predict_proba(self, X):
        raise AssertionError("never fitted")

    def get_params(self, deep=True):
        return {}

    def set_params(self, **params):
        return self


def test_a_failing_model_is_reported_and_others_kept(capsys, monkeypatch, cancer_csv):
    real = _cli.make_models

    def with_broken(names, **kwargs):
        return {"Broken": _Broken(), **real(names, **kwargs)}

    monkeypatch.setattr(_cli, "make_models", with_broken)
    code, out, err = compare(
        capsys,
        cancer_csv,
        "diagnosis",
        "--models",
        "logistic",
        "--json",
        *FAST,
    )
    assert code == 1
    broken, logistic = json.loads(out)["results"]
    assert broken["error"] == "fold 1: RuntimeError: cannot fit"
    assert broken["scores"]["roc_auc"]["mean"] is None
    assert logistic["error"] is None and logistic["scores"]["roc_auc"]["mean"] > 0.5


def test_a_model_failing_on_a_later_fold_has_no_mean(capsys, monkeypatch, tmp_path):
    from sklearn.linear_model import LogisticRegression

    class FailsOnFold2(LogisticRegression):
        """Its probabilities fail on the second fold, after its labels were
        scored."""

        fits = 0

        def fit(self, X, y):
            type(self).fits += 1
            return super().fit(X, y)

        def predict_proba(self, X):
            if type(self).fits == 2:
                raise RuntimeError("out of memory")
            return super().predict_proba(X)

    monkeypatch.setattr(
        _cli, "make_models", lambda names, **kw: {"Flaky": FailsOnFold2()}
    )
    data = tmp_path / "d.csv"
    data.write_bytes(_csv(["a", "b", "y"], ROWS))
    args = ["--scoring", "accuracy,roc_auc", "--folds", "3", "--quiet"]
    code, out, _ = compare(capsys, str(data), "y", *args)
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith("Flaky"))
    assert row.split() == ["Flaky", "-", "-", "-"]
    FailsOnFold2.fits = 0
    code, out, _ = compare(capsys, str(data), "y", *args, "--json")
    assert code == 1
    (result,) = json.loads(out)["results"]
    assert result["error"] == "fold 2: RuntimeError: out of memory"
    for summary in [*result["scores"].values(), result["fit_time"]]:
        assert summary["mean"] is None and summary["std"] is None
        first, *rest = summary["folds"]
        assert first > 0 and rest == [None, None]


def test_plot_when_every_model_failed(capsys, monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(_cli, "make_models", lambda names, **kw: {"Broken": _Broken()})
    data = tmp_path / "d.csv"
    data.write_bytes(_csv(["a", "b", "y"], ROWS))
    plot = tmp_path / "chart.png"
    code, _, err = compare(capsys, str(data), "y", "--plot", str(plot), *FAST)
    assert code == 1
    assert not plot.exists()
    assert err == (
        f"sksiamese compare: warning: --plot: no chart saved to {plot}: every "
        "model failed\n"
    )


def test_python_dash_m_and_version(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["sksiamese", "--version"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("sksiamese", run_name="__main__")
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("sksiamese ")


def test_compare_values_near_the_float64_limit(tmp_path, capsys):
    # Documented success: SiameseClassifier scales even 1e307-sized features.
    rows = [[f"{(i + 1) * 1e306:.6g}", r[1], r[2]] for i, r in enumerate(ROWS)]
    path = tmp_path / "huge.csv"
    path.write_bytes(_csv(["a", "b", "y"], rows))
    code, out, err = compare(
        capsys,
        str(path),
        "y",
        "--models",
        "siamese",
        "--json",
        *FAST,
    )
    assert code == 0, err
    (result,) = json.loads(out)["results"]
    assert result["error"] is None
    assert all(np.isfinite(v["mean"]) for v in result["scores"].values())


def test_scikit_learn_scorer_names_are_accepted(capsys, cancer_csv, wine_csv, tmp_path):
    args = ["--models", "logistic", "--json", *FAST]
    code, out, err = compare(
        capsys,
        cancer_csv,
        "diagnosis",
        "--scoring",
        "neg_log_loss,roc_auc",
        *args,
    )
    assert code == 0, err
    scores = json.loads(out)["results"][0]["scores"]
    assert scores["neg_log_loss"]["mean"] < 0 and scores["roc_auc"]["mean"] > 0.5
    # String labels: scikit-learn's f1 needs a positive label 1, and says so.
    code, _, err = compare(
        capsys,
        cancer_csv,
        "diagnosis",
        "--scoring",
        "f1",
        *args,
    )
    assert (
        code == 2 and "score 'f1' cannot be computed on this target: pos_label=1" in err
    )
    rows = [[str(i), str((i * 7) % 5), str(i % 2)] for i in range(24)]
    path = write_csv(tmp_path / "binary.csv", ["a", "b", "y"], rows)
    code, out, err = run(
        capsys, "compare", path, "--target", "y", "--scoring", "f1", *args
    )
    assert code == 0, err
    # scikit-learn's f1 of the logistic regression on the same folds.
    expected = cross_validate(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        np.array([[float(v) for v in row[:2]] for row in rows]),
        np.array([int(row[2]) for row in rows]),
        cv=StratifiedKFold(2, shuffle=True, random_state=0),
        scoring="f1",
    )["test_score"]
    f1 = json.loads(out)["results"][0]["scores"]["f1"]
    np.testing.assert_allclose(f1["folds"], expected)
    assert f1["mean"] == pytest.approx(expected.mean())
    code, out, err = compare(
        capsys,
        wine_csv,
        "cultivar",
        "--scoring",
        "roc_auc_ovr,f1_weighted",
        *args,
    )
    assert code == 0, err
    assert json.loads(out)["results"][0]["scores"]["roc_auc_ovr"]["mean"] > 0.9


def test_default_scores_follow_the_target(capsys, wine_csv, tmp_path):
    # Three classes: no tuned threshold; a class of under 20%: G-mean too.
    code, out, err = compare(
        capsys,
        wine_csv,
        "cultivar",
        "--models",
        "logistic",
        "--json",
        *FAST,
    )
    assert code == 0, err
    assert json.loads(out)["scoring"] == [
        "roc_auc",
        "average_precision",
        "balanced_accuracy",
    ]
    # Two classes, one in 8 rows rare: tuned balanced accuracy and the
    # geometric mean of the recalls (imbalanced-learn).
    rows = [[str(i), str((i * 7) % 5), "b" if i % 8 == 0 else "a"] for i in range(48)]
    path = write_csv(tmp_path / "rare.csv", ["a", "b", "y"], rows)
    code, out, err = compare(
        capsys,
        path,
        "y",
        "--models",
        "logistic",
        "--json",
        *FAST,
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["scoring"] == [
        "roc_auc",
        "average_precision",
        "balanced_accuracy",
        "tuned_balanced_accuracy",
        "geometric_mean",
    ]
    scores = result["results"][0]["scores"]
    assert all(len(scores[s]["folds"]) == 2 for s in result["scoring"])


def test_warnings_of_fit_are_reported_once_per_model(capsys, cancer_csv, monkeypatch):
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    # A model that warns in every fit: lbfgs cut short on unscaled columns.
    model = make_pipeline(SimpleImputer(), LogisticRegression(max_iter=2))
    monkeypatch.setattr(
        _cli, "make_models", lambda names, **kw: {"LogisticRegression": model}
    )
    code, out, err = compare(
        capsys,
        cancer_csv,
        "diagnosis",
        "--models",
        "logistic",
        "--scoring",
        "roc_auc",
        *FAST,
    )
    assert code == 0, err
    lines = [line for line in err.splitlines() if "ConvergenceWarning" in line]
    assert len(lines) == 1, err
    assert lines[0].startswith(
        "sksiamese compare: warning: LogisticRegression: ConvergenceWarning: lbfgs"
    )
    assert lines[0].endswith("(in 2 of 2 folds)")


def test_warnings_of_scoring_are_reported_once_per_model(capsys, tmp_path):
    # Separable classes: no false positive, so the likelihood ratio is
    # ill-defined (UndefinedMetricWarning) on every fold.
    rows = [[str(i + 50 * (i >= 10)), str(i % 3), str(int(i >= 10))] for i in range(20)]
    path = write_csv(tmp_path / "separable.csv", ["a", "b", "y"], rows)
    code, _, err = compare(
        capsys,
        path,
        "y",
        "--models",
        "logistic",
        "--scoring",
        "positive_likelihood_ratio",
        *FAST,
    )
    assert code == 0, err
    assert err.startswith(
        "sksiamese compare: warning: LogisticRegression: UndefinedMetricWarning: "
        "`positive_likelihood_ratio` is ill-defined"
    )
    assert err.endswith("(in 2 of 2 folds)\n") and err.count("\n") == 1


def test_reference_page_documents_every_option_and_score():
    from pathlib import Path

    page = Path(__file__).parents[1] / "docs" / "cli.rst"
    if not page.is_file():
        pytest.skip("docs/ is not part of this installation")
    text = page.read_text(encoding="utf-8")
    compare = next(
        action.choices["compare"]
        for action in _cli.build_parser()._actions
        if hasattr(action, "choices") and action.choices
    )
    options = [o for a in compare._actions for o in a.option_strings if o != "-h"]
    missing = [
        o for o in [*options, *_cli.SCORES, *_cli.MODELS] if f"``{o}" not in text
    ]
    assert not [m for m in missing if m != "--help"], missing
