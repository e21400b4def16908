"""Helpers shared by the test suite (import as ``helpers.<module>`` from tests/test_*.py)."""
