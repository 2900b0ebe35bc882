"""Package discovery for sscl: every package under the three source roots, found at build time.

The import package ``sscl`` is assembled from three directories (``package_dir``): ``sscl/``
itself, ``data/`` as ``sscl.data`` and ``kernels/`` as ``sscl.kernels``. setuptools' automatic
discovery cannot follow that mapping (``packages.find`` names packages after their directories),
so the list of packages is computed here: each root and every regular package (a directory with
an ``__init__.py``) below it. A new subpackage such as ``sscl/contrastive/`` is then in the wheel
without editing a list; a directory of modules without ``__init__.py`` is not, and
``tests/test_packaging.py`` fails on it. Metadata and package data live in pyproject.toml.
"""

from setuptools import find_packages, setup

#: Import name -> source directory of the three roots.
PACKAGE_DIRS = {"sscl": "sscl", "sscl.data": "data", "sscl.kernels": "kernels"}


def sscl_packages() -> list[str]:
    """Every package under the roots, by import name (e.g. ``sscl.data.formats``)."""
    found = []
    for name, directory in PACKAGE_DIRS.items():
        found.append(name)
        found += [f"{name}.{sub}" for sub in find_packages(directory)]
    return sorted(found)


setup(packages=sscl_packages(), package_dir=PACKAGE_DIRS)
