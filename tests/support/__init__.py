"""Helpers shared by the tests: importable as ``support.*`` (pytest's ``pythonpath`` puts tests/ on the path)."""
