"""Tests of the model backends (real weights are marked slow)."""
