"""Helpers shared by test modules: tiny corpora, raw-format fixture writers, trainer runs.

Imported as ``from tests.helpers import corpora`` (pyproject's ``pythonpath = ["."]`` puts the
repository root on ``sys.path``); nothing here is collected as a test.
"""
