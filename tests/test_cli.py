"""The ``sksiamese compare`` command, run in-process on small data."""

import csv
import json
import runpy
import sys

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_wine

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


def test_compare_csv_prints_a_table(capsys, cancer_csv):
    code, out, err = run(
        capsys,
        "compare",
        cancer_csv,
        "--target",
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
    progress = [line for line in err.splitlines() if "fold" in line]
    assert len(progress) == 4 * 2
    assert "SiameseClassifier fold 1/2 [1/8 fits" in progress[0]


def test_compare_json_multiclass(capsys, wine_csv):
    code, out, err = run(
        capsys,
        "compare",
        wine_csv,
        "--target",
        "cultivar",
        "--models",
        "siamese,logistic",
        "--scoring",
        "roc_auc,average_precision,log_loss,f1_macro",
        "--json",
        *FAST,
    )
    assert code == 0, err
    assert err == ""  # --quiet
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
        for name, s in r["scores"].items():
            assert len(s["folds"]) == 2
            assert s["mean"] == pytest.approx(np.mean(s["folds"]))
            if name != "log_loss":
                assert 0.0 <= s["mean"] <= 1.0
        assert all(t > 0 for t in r["fit_time"]["folds"])


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
    code, _, err = run(
        capsys,
        "compare",
        cancer_csv,
        "--target",
        "diagnosis",
        "--models",
        "logistic,forest",
        "--plot",
        str(path),
        *FAST,
    )
    assert code == 0, err
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_csv_reader_same_without_pandas(cancer_csv, monkeypatch):
    pytest.importorskip("pandas")
    X, y, names = read_csv(cancer_csv, "diagnosis")
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas fails
    X2, y2, names2 = read_csv(cancer_csv, "diagnosis")
    assert names == names2 == ["radius", "texture", "perimeter", "area", "smoothness"]
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert np.isnan(X[:, 1]).sum() == len(range(0, 120, 9))
    assert set(y.tolist()) == {"malignant", "benign"}


@pytest.mark.parametrize("pandas", [True, False])
def test_integer_labels_and_blank_tokens(tmp_path, monkeypatch, pandas):
    if pandas:
        pytest.importorskip("pandas")
    else:
        monkeypatch.setitem(sys.modules, "pandas", None)
    rows = [["1.5", "NA", "0"], [" 2", "?", "1"], ["", "3e2", "01"], ["4", "nan", "0"]]
    path = write_csv(tmp_path / "d.csv", ["a", "b", "y"], rows)
    X, y, _ = read_csv(path, "y")
    np.testing.assert_array_equal(
        X, [[1.5, np.nan], [2.0, np.nan], [np.nan, 300.0], [4.0, np.nan]]
    )
    assert y.tolist() == [0, 1, 1, 0]


def write_bad(tmp_path, header, rows):
    return write_csv(tmp_path / "bad.csv", header, rows)


BALANCED = [[str(i), str(i % 3), "ab"[i % 2]] for i in range(12)]


@pytest.mark.parametrize(
    "make, extra, message",
    [
        (lambda p: str(p / "missing.csv"), ["--target", "y"], "no such file"),
        (
            lambda p: write_bad(p, ["a", "b", "y"], BALANCED),
            ["--target", "label"],
            "no column 'label' in",
        ),
        (
            lambda p: write_bad(
                p, ["a", "colour", "y"], [[r[0], "red", r[2]] for r in BALANCED]
            ),
            ["--target", "y"],
            "column 'colour' is not numeric (e.g. 'red')",
        ),
        (
            lambda p: write_bad(p, ["a", "b", "y"], [r[:2] + ["a"] for r in BALANCED]),
            ["--target", "y"],
            "only one class ('a')",
        ),
        (
            lambda p: write_bad(
                p, ["a", "b", "y"], BALANCED[:-1] + [BALANCED[-1][:2] + [""]]
            ),
            ["--target", "y"],
            "the target column 'y' has 1 blank cell(s)",
        ),
        (
            lambda p: write_bad(
                p, ["a", "b", "y"], [r[:2] + ["0.5"] for r in BALANCED]
            ),
            ["--target", "y"],
            "holds non-integer numbers (e.g. '0.5')",
        ),
        (
            lambda p: write_bad(p, ["a", "b", "y"], BALANCED[:-2] + [["1", "2", "c"]]),
            ["--target", "y"],
            "class 'c' has only 1 sample(s)",
        ),
        (
            lambda p: write_bad(p, ["a", "a", "y"], BALANCED),
            ["--target", "y"],
            "duplicate column names: ['a']",
        ),
        (
            lambda p: write_bad(p, ["a", "b", "y"], []),
            ["--target", "y"],
            "has a header but no data rows",
        ),
        (
            lambda p: write_bad(p, ["a", "b", "y"], BALANCED),
            [],
            "--target COLUMN is needed with a DATA file",
        ),
    ],
    ids=[
        "missing-file",
        "unknown-column",
        "non-numeric",
        "one-class",
        "blank-label",
        "continuous-target",
        "tiny-class",
        "duplicate-columns",
        "no-rows",
        "no-target",
    ],
)
def test_bad_input_one_line_exit_2(capsys, tmp_path, make, extra, message):
    code, out, err = run(capsys, "compare", make(tmp_path), *extra, *FAST)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("sksiamese compare: error: ")
    assert message in err


def test_short_rows_are_refused_with_pandas(capsys, tmp_path):
    pytest.importorskip("pandas")
    path = tmp_path / "short.csv"
    # The target first: the missing field would be a feature, silently blank.
    rows = [f"{'ab'[i % 2]},{i},{i % 3}" for i in range(12)]
    path.write_text("y,a,b\n" + "\n".join(rows[:5] + ["b,7"] + rows[5:]) + "\n")
    code, _, err = run(capsys, "compare", str(path), "--target", "y", *FAST)
    assert code == 2
    assert "line 7 of" in err and "has 2 fields; the header has 3" in err
    # Quoted fields may hold the delimiter: those files are checked by csv.
    path.write_text('y,a,b\n"a,x",1,2\n"b,y",3\n')
    code, _, err = run(capsys, "compare", str(path), "--target", "y", *FAST)
    assert code == 2
    assert "line 3 of" in err and "has 2 fields; the header has 3" in err


def test_empty_last_cells_are_blanks_not_short_rows(tmp_path):
    from sksiamese._cli import read_csv

    path = tmp_path / "blanks.csv"
    path.write_text("y,a,b\na,1, \nb,2,NA\na,3,4\nb,4,\n")
    X, y, names = read_csv(str(path), "y")
    assert names == ["a", "b"]
    np.testing.assert_array_equal(X[:, 0], [1, 2, 3, 4])
    np.testing.assert_array_equal(np.isnan(X[:, 1]), [True, True, False, True])
    assert X[2, 1] == 4.0


def test_ragged_rows_are_refused_without_pandas(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    path = tmp_path / "ragged.csv"
    path.write_text("a,b,y\n1,2,a\n3,b\n")
    code, _, err = run(capsys, "compare", str(path), "--target", "y", *FAST)
    assert code == 2
    assert "line 3 of" in err and "has 2 fields; the header has 3" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["compare", "--folds", "1"], "argument --folds: must be at least 2"),
        (["compare", "--scoring", "r2"], "unknown score ['r2']"),
        (["compare", "--models", "svm"], "unknown model ['svm']"),
        (["compare", "--target", "y"], "--target needs a DATA file"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_usage_exit_2(capsys, args, message):
    code, out, err = run(capsys, *args)
    assert code == 2
    assert message in err
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

    def get_params(self, deep=True):
        return {}

    def set_params(self, **params):
        return self


def test_a_failing_model_is_reported_and_others_kept(capsys, monkeypatch, cancer_csv):
    real = _cli.make_models

    def with_broken(names, **kwargs):
        return {"Broken": _Broken(), **real(names, **kwargs)}

    monkeypatch.setattr(_cli, "make_models", with_broken)
    code, out, err = run(
        capsys,
        "compare",
        cancer_csv,
        "--target",
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


def test_python_dash_m_and_version(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["sksiamese", "--version"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("sksiamese", run_name="__main__")
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("sksiamese ")
