"""scikit-learn's estimator checks on the default configuration.

Users run ``check_estimator`` on what they ship, which is usually the
defaults: the ensemble encoder of 8 members, 100 epochs with early stopping.
Slower than the small configurations of ``test_common.py``, so in a file of
its own (pytest-xdist runs it beside the others).
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sksiamese import SiameseClassifier


@parametrize_with_checks([SiameseClassifier(), SiameseClassifier(random_state=0)])
def test_default_estimator_passes_every_check(estimator, check):
    check(estimator)
