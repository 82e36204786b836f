"""Copied to kafka-python's `test/__init__.py` (its sdist lacks it): without it `test` would
resolve to the standard library's `test` package, not the sdist's `test/` folder."""
