"""The examples in the library's docstrings run and show what they claim (`doctest` over every
module of the package)."""

import doctest
import importlib
import pkgutil

import numpy as np
import pytest

import sparsenet

MODULES = sorted(m.name for m in pkgutil.walk_packages(sparsenet.__path__, "sparsenet.")
                 if not m.name.split(".")[-1].startswith("__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, globs={"np": np, **vars(module)}):
        runner.run(test)
    failed, attempted = runner.summarize(verbose=False)
    assert failed == 0, f"{failed} of {attempted} docstring examples of {name} failed (run doctest -v on it)"
