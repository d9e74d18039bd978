"""Benchmark and profiling suite for sepgconv (``python -m bench``)."""
