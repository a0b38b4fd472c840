"""The only module that imports private scikit-learn helpers.

scikit-learn does not promise that these names stay put; keeping every such import
here means a future rename is fixed in one place.
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import validate_data

__all__ = [
    "_fit_context",
    "HasMethods",
    "Interval",
    "StrOptions",
    "validate_data",
    "validate_parameter_constraints",
]
