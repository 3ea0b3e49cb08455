"""Sphinx configuration for the Chrononaut documentation."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

from sqlalchemy.exc import SAWarning

ROOT = Path(__file__).resolve().parent.parent
# autodoc imports the package from this source tree, installed or not.
sys.path.insert(0, str(ROOT))
# autodoc reads the declared columns of the unmapped mixins, which SQLAlchemy reports.
warnings.filterwarnings(
    "ignore", message="Unmanaged access of declarative attribute", category=SAWarning
)

_version_line = re.search(
    r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE
)

project = "Chrononaut"
author = "The Chrononaut developers"
copyright = "The Chrononaut developers"
release = _version_line.group(1) if _version_line else "unknown"
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True

html_theme = "alabaster"
html_static_path: list[str] = []
