"""Measurements too long for the test suite, and the Docker smoke test's requests: run as
modules from the repository root, e.g. ``python -m scripts.strip_accuracy``."""
