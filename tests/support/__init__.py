"""Helpers shared by the test suites (positive controls, fixtures)."""
