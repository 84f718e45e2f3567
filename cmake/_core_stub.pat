# _core.testing (hooks for the tests) stays out of the shipped stub: it is no public API, and
# nanobind would type it as an import of a top-level module "_core", which mypy cannot find.
^_core\.testing$:
