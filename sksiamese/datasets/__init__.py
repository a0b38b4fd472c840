"""Datasets for examples and benchmarks: generators and loaders of local files."""

from ._omniglot import load_omniglot_background, load_omniglot_one_shot
from ._survey import make_survey

__all__ = []
__all__ += ["load_omniglot_background", "load_omniglot_one_shot"]
__all__ += ["make_survey"]
