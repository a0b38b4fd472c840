"""DataFrame input and pandas output (``set_output``)."""

import re

import numpy as np
import pytest
from sklearn.datasets import load_wine
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sksiamese import SiameseClassifier

pd = pytest.importorskip("pandas")

SMALL = dict(hidden_layer_sizes=(16,), embedding_dim=3, max_epochs=3, random_state=0)
# The default encoder's 8 members each embed in 3 dimensions, side by side.
WIDTH = 8 * 3


@pytest.fixture(scope="module")
def wine_frame():
    X, y = load_wine(return_X_y=True, as_frame=True)
    X = X.iloc[:, :6].copy()
    X.index = [f"wine{i}" for i in range(len(X))]  # not a default RangeIndex
    X.iloc[::10, 1] = np.nan
    return X, y.set_axis(X.index)


@pytest.fixture(scope="module")
def fitted(wine_frame):
    X, y = wine_frame
    return SiameseClassifier(**SMALL).fit(X, y)


def test_feature_names_in_from_a_dataframe(fitted, wine_frame):
    X, _ = wine_frame
    np.testing.assert_array_equal(fitted.feature_names_in_, X.columns)
    assert fitted.n_features_in_ == 6
    names = fitted.get_feature_names_out()
    assert names.tolist() == [f"siameseclassifier{i}" for i in range(WIDTH)]


def test_no_feature_names_from_an_array(wine_frame):
    X, y = wine_frame
    clf = SiameseClassifier(**SMALL).fit(X.to_numpy(), y.to_numpy())
    assert not hasattr(clf, "feature_names_in_")


def test_set_output_pandas_gives_named_embedding_columns(fitted, wine_frame):
    X, _ = wine_frame
    clf = SiameseClassifier(**SMALL).set_output(transform="pandas")
    clf.fit(X, wine_frame[1])
    out = clf.transform(X)
    assert isinstance(out, pd.DataFrame)
    assert out.columns.tolist() == clf.get_feature_names_out().tolist()
    assert out.index.equals(X.index)
    np.testing.assert_array_equal(out.to_numpy(), fitted.transform(X))
    # fit_transform goes through transform, so it is a DataFrame as well.
    clf2 = SiameseClassifier(**SMALL).set_output(transform="pandas")
    pd.testing.assert_frame_equal(clf2.fit_transform(X, wine_frame[1]), out)
    # Predictions stay arrays of labels.
    assert isinstance(clf.predict(X), np.ndarray)


def test_default_output_is_an_array(fitted, wine_frame):
    assert isinstance(fitted.transform(wine_frame[0]), np.ndarray)


def test_dataframe_and_array_predict_alike(fitted, wine_frame):
    X, _ = wine_frame
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        from_array = fitted.predict_proba(X.to_numpy())
    np.testing.assert_array_equal(fitted.predict_proba(X), from_array)


def test_columns_in_another_order_are_refused(fitted, wine_frame):
    X, _ = wine_frame
    msg = "The feature names should match those that were passed during fit."
    with pytest.raises(ValueError, match=re.escape(msg)):
        fitted.predict(X[X.columns[::-1]])


def test_pipeline_with_pandas_output(wine_frame):
    X, y = wine_frame
    pipe = make_pipeline(StandardScaler(), SiameseClassifier(**SMALL))
    pipe.set_output(transform="pandas").fit(X, y)
    out = pipe.transform(X)
    assert out.columns.tolist() == [f"siameseclassifier{i}" for i in range(WIDTH)]
    np.testing.assert_array_equal(pipe[-1].feature_names_in_, X.columns)
    assert pipe.get_feature_names_out().tolist() == out.columns.tolist()


def test_columns_that_are_not_numbers_are_named(fitted, wine_frame):
    # scikit-learn's messages name a value ("could not convert string to
    # float: 'low'") or a dtype ("Cannot cast DatetimeArray to dtype
    # float64"), not the column; numbers in an object column still pass.
    X, y = wine_frame
    X = X.assign(
        band=np.where(X["alcohol"] > 13, "high", "low"),
        grade=pd.Categorical(np.where(X["ash"] > 2.4, "a", "b")),
        as_text=X["magnesium"].astype(object),
    )
    msg = (
        "SiameseClassifier takes numbers (NaN for blanks), but these columns of "
        f"X are not numbers: 'band' ({X['band'].dtype}), 'grade' (category). "
        "Encode them first, for example one-hot with OneHotEncoder"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        SiameseClassifier(**SMALL).fit(X, y)
    dates = X.iloc[:, :6].assign(alcohol=pd.Timestamp("2024-01-01"))
    with pytest.raises(TypeError, match=re.escape("X are not numbers: 'alcohol'")):
        fitted.predict(dates)


def test_text_and_categorical_columns_through_a_column_transformer():
    # Real data with a column of answers, as survey records have them:
    # scikit-learn's breast-cancer table, the mean radius given as a band
    # ("small", "medium", "large", or blank) instead of a number, and blank
    # cells elsewhere. One-hot encode the band, pass the numbers on as they
    # are (blanks included), and keep the column names with pandas output.
    from sklearn.compose import make_column_selector, make_column_transformer
    from sklearn.datasets import load_breast_cancer
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import OneHotEncoder

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :8].copy()
    band = pd.cut(
        X.pop("mean radius"), [0, 12, 16, 40], labels=["small", "medium", "large"]
    )
    # A category column (pd.cut's dtype): the selector of the user guide
    # takes it, and text columns, object or string.
    X.insert(0, "radius band", band)
    X.loc[X.index[::13], "radius band"] = np.nan
    X.loc[X.index[::7], "mean texture"] = np.nan
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, stratify=y, random_state=0
    )
    encode = make_column_transformer(
        (
            OneHotEncoder(handle_unknown="ignore", sparse_output=False),
            make_column_selector(dtype_include=[object, "string", "category"]),
        ),
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    model = make_pipeline(encode, SiameseClassifier(max_epochs=30, random_state=0))
    model.set_output(transform="pandas").fit(X_train, y_train)
    clf = model[-1]
    # Three bands and the blank band one-hot, then the seven numeric columns.
    assert clf.feature_names_in_.tolist()[:4] == [
        "radius band_large",
        "radius band_medium",
        "radius band_small",
        "radius band_nan",
    ]
    assert clf.n_features_in_ == 11
    assert roc_auc_score(y_test, model.predict_proba(X_test)[:, 1]) > 0.95
