"""Offline training of the digitserve models on MNIST (``python -m training --help``).

Builds on ``model`` (architectures, checkpoints, preprocessing); never imports ``app``.
"""
