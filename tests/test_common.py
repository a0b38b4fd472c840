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
