"""Sphinx configuration: the API reference from the docstrings, and the Markdown pages (MyST).

Build (CI does, warnings are errors): ``sphinx-build -W --keep-going -b html docs docs/_build/html``.
autodoc imports the installed package, compiled modules included (their docstrings carry the
signatures: Cython's ``embedsignature``); the IOCP driver only imports on Windows, so its page is
written by hand.
"""

from __future__ import annotations

import horizon_core

project = "Horizon Sockets"
author = "The Horizon Sockets maintainers"
copyright = "2026, The Horizon Sockets maintainers"
release = horizon_core.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # the Google-style "Example:" sections
    "sphinx.ext.viewcode",
    "myst_parser",  # docs/*.md
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    "member-order": "bysource",
}
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"Horizon Sockets {release}"
