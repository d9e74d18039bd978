"""Whole jobs: a sweep, one shape, the paper's models, the per-operator profile."""
