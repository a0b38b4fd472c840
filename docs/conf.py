"""Sphinx configuration of the sksiamese documentation.

Build with ``make -C docs html`` (warnings are errors). By default everything
is built offline: no inventories, images or data are fetched. With
``SKSIAMESE_DOCS_INTERSPHINX=1`` (a build with network access, such as the
published documentation), references to scikit-learn, skorch, PyTorch, NumPy,
SciPy and imbalanced-learn become links to their documentation.
"""

import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Build from the source tree even when the package is not installed.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE / "sphinxext"))

from changelog import markdown_to_rst  # noqa: E402

import sksiamese  # noqa: E402

# -- Project -------------------------------------------------------------------

project = "sksiamese"
author = "The sksiamese developers"
copyright = "The sksiamese developers"
release = sksiamese.__version__
version = re.match(r"\d+\.\d+", release).group(0)

# -- General -------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "_templates", "Thumbs.db", ".DS_Store"]
root_doc = "index"
default_role = "literal"
add_function_parentheses = False
# Page tables of contents list methods by their own name, without the class.
toc_object_entries_show_parents = "hide"

# -- autodoc / autosummary / numpydoc ------------------------------------------

autosummary_generate = True
autodoc_typehints = "none"
# Members are listed by the autosummary template ``_templates/class.rst``, each
# documented once below its class.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True

# Links into other projects' documentation need their inventories, fetched at
# build time: only when asked for. Without them, references to those projects
# are shown as code, without a link. References to sksiamese itself must
# always resolve.
if os.environ.get("SKSIAMESE_DOCS_INTERSPHINX") == "1":
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "scipy": ("https://docs.scipy.org/doc/scipy", None),
        "sklearn": ("https://scikit-learn.org/stable", None),
        "skorch": ("https://skorch.readthedocs.io/en/stable", None),
        "torch": ("https://docs.pytorch.org/docs/stable", None),
        "imblearn": ("https://imbalanced-learn.org/stable", None),
        "matplotlib": ("https://matplotlib.org/stable", None),
    }
nitpicky = True
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(sklearn|skorch|torch|numpy|np|scipy|imblearn|matplotlib|pandas|joblib"
        r"|pickle|ray|optuna|tqdm|zipfile|json|os|pathlib)(\..*)?",
    ),
]

# -- sphinx-gallery ------------------------------------------------------------

# Where the Omniglot examples look for the zip files: $SKSIAMESE_OMNIGLOT, or a
# ``shared/data/omniglot`` folder next to the repository. Where there are none,
# they are still shown, with their code, but not run, so the build works on any
# machine.
_omniglot = [os.environ.get("SKSIAMESE_OMNIGLOT"), ROOT.parent / "shared/data/omniglot"]
_run_pattern = r"/plot_"
if not any(p and (Path(p) / "all_runs.zip").is_file() for p in _omniglot):
    _run_pattern = r"/plot_(?!.*omniglot)"

sphinx_gallery_conf = {
    "examples_dirs": [str(ROOT / "examples")],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": _run_pattern,
    "ignore_pattern": r"(__init__|conftest)\.py",
    "doc_module": ("sksiamese",),
    "backreferences_dir": "generated",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": False,
    "min_reported_time": 1,
    "show_memory": False,
    "matplotlib_animations": False,
}

# -- HTML ------------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"sksiamese {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_prev_next": False,
    "header_links_before_dropdown": 6,
    "navbar_align": "left",
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "secondary_sidebar_items": ["page-toc"],
}
html_sidebars = {"index": [], "getting_started": [], "changelog": []}
html_show_sourcelink = False
html_copy_source = False

# -- Changelog -------------------------------------------------------------------

# CHANGELOG.md (Keep a Changelog, Markdown) is converted to reStructuredText at
# each build and included by changelog.rst, so it is written in one place only.
GENERATED = HERE / "_generated"


def _write_changelog():
    GENERATED.mkdir(exist_ok=True)
    text = markdown_to_rst((ROOT / "CHANGELOG.md").read_text(encoding="utf-8"))
    target = GENERATED / "changelog.rst.inc"
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")


_write_changelog()

# -- API completeness --------------------------------------------------------------


def _public_names():
    """Every public name the package exports, as ``module.name``."""
    import importlib

    names = set()
    modules = ("sksiamese", "sksiamese.datasets", "sksiamese.plotting")
    for module_name in (*modules, "sksiamese.distributed"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in getattr(module, "__all__", []):
            if not name.startswith("_"):
                names.add(f"{module_name}.{name}")
    return names


def _documented_names():
    """Names listed in the autosummary tables of api.rst, as ``module.name``."""
    names, module = set(), None
    in_table = False
    for line in (HERE / "api.rst").read_text(encoding="utf-8").splitlines():
        match = re.match(r"\.\. currentmodule:: (\S+)", line)
        if match:
            module = match.group(1)
            continue
        if line.startswith(".. autosummary::"):
            in_table = True
            continue
        if in_table:
            stripped = line.strip()
            if not stripped or stripped.startswith(":"):
                continue
            if not line.startswith(" "):
                in_table = False
                continue
            names.add(f"{module}.{stripped}")
    return names


def _check_api_reference(app):
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    missing = sorted(_public_names() - _documented_names())
    if missing:
        logger.warning("public names missing from docs/api.rst: %s", ", ".join(missing))


# -- Docstrings inherited from scikit-learn ----------------------------------------

_SKLEARN_ROLES = re.compile(r":(ref|term):`(?:([^`<]*?)\s*<[^`>]*>|([^`]*))`")


def _unlink_sklearn_roles(app, what, name, obj, options, lines):
    """Keep the text of scikit-learn's own cross references, drop the link.

    Methods inherited from scikit-learn (``get_params``, ``score``,
    ``set_output``, ...) refer to labels and glossary terms of scikit-learn's
    documentation, which does not exist here.
    """
    module = getattr(obj, "__module__", None) or ""
    if not module.startswith("sklearn"):
        return
    for i, line in enumerate(lines):
        lines[i] = _SKLEARN_ROLES.sub(lambda m: m.group(2) or m.group(3), line)


def setup(app):
    app.connect("builder-inited", _check_api_reference)
    app.connect("autodoc-process-docstring", _unlink_sklearn_roles)
