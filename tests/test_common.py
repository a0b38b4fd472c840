"""scikit-learn's estimator checks."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sksiamese import SiameseClassifier, SiamesePairClassifier

# Small, fast configurations; the checks fit many times on tiny data.
FAST = dict(
    hidden_layer_sizes=(16,),
    embedding_dim=8,
    max_epochs=20,
    batch_size=32,
    random_state=0,
)

ESTIMATORS = [
    SiameseClassifier(**FAST),
    SiamesePairClassifier(**{**FAST, "max_epochs": 10}),
]

# A row of SiamesePairClassifier's X holds two vectors side by side, so an odd
# number of columns is refused; y is 1 for same pairs and 0 for different ones.
_ODD_WIDTH = "the check's X has an odd number of columns, which cannot be pairs"
_LABELS = "the check's y is not 0/1, and y means same (1) or different (0)"
PAIR_EXPECTED_FAILURES = {
    "check_fit_score_takes_y": _ODD_WIDTH,
    "check_dont_overwrite_parameters": _ODD_WIDTH,
    "check_estimators_dtypes": _ODD_WIDTH,
    "check_pipeline_consistency": _ODD_WIDTH,
    "check_estimators_pickle": _ODD_WIDTH,
    "check_estimators_pickle(readonly_memmap=True)": _ODD_WIDTH,
    "check_f_contiguous_array_estimator": _ODD_WIDTH,
    "check_supervised_y_2d": _ODD_WIDTH,
    "check_transformer_data_not_an_array": _ODD_WIDTH,
    "check_transformer_general": _ODD_WIDTH,
    "check_transformer_general(readonly_memmap=True)": _ODD_WIDTH,
    "check_transformer_preserve_dtypes": _ODD_WIDTH,
    "check_methods_sample_order_invariance": _ODD_WIDTH,
    "check_methods_subset_invariance": _ODD_WIDTH,
    "check_dict_unchanged": _ODD_WIDTH,
    "check_fit2d_predict1d": _ODD_WIDTH,
    "check_classifier_data_not_an_array": _LABELS + " (it is [1, 2])",
    "check_classifiers_classes": _LABELS + " (strings, and [-1, 1])",
}


def expected_failed_checks(estimator):
    if isinstance(estimator, SiamesePairClassifier):
        return PAIR_EXPECTED_FAILURES
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_pair_estimator_passes_the_expected_failures_on_pairs():
    # What the checks above cannot run on the pair estimator (their X has an
    # odd width, their y is not 0/1), on pairs side by side and 0/1 labels.
    import copy
    import pickle

    import numpy as np
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline
    from sklearn.utils.estimator_checks import _NotAnArray

    rng = np.random.RandomState(0)
    a, same = rng.normal(size=(60, 3)), np.tile([0, 1], 30)
    noise = rng.normal(size=a.shape)
    b = np.where(same[:, None] == 1, a + 0.1 * noise, noise)
    X = np.hstack([a, b])
    estimator = SiamesePairClassifier(**{**FAST, "max_epochs": 5})
    params = copy.deepcopy(estimator.get_params())
    fitted = clone(estimator).fit(X, same)
    assert repr(fitted.get_params()) == repr(params)
    order = rng.permutation(60)
    for method in ("predict", "predict_proba", "decision_function", "transform"):
        whole = getattr(fitted, method)(X)
        parts = np.concatenate(
            [getattr(fitted, method)(X[i : i + 7]) for i in range(0, 60, 7)]
        )
        np.testing.assert_allclose(parts, whole, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(
            getattr(fitted, method)(X[order]), whole[order], rtol=1e-7, atol=1e-9
        )
    attributes = dict(vars(fitted))
    fitted.predict(X)
    assert vars(fitted).keys() == attributes.keys()
    proba = fitted.predict_proba(X)
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(fitted)).predict_proba(X), proba
    )
    np.testing.assert_array_equal(
        make_pipeline(clone(estimator)).fit(X, same).predict_proba(X), proba
    )
    np.testing.assert_array_equal(
        clone(estimator).fit(np.asfortranarray(X), same).predict_proba(X), proba
    )
    np.testing.assert_array_equal(
        clone(estimator).fit(_NotAnArray(X), _NotAnArray(same)).predict_proba(X), proba
    )
