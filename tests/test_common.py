"""scikit-learn's estimator checks."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sksiamese import SiameseClassifier

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
]


def expected_failed_checks(estimator):
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
