"""Datasets for examples and benchmarks: generators and loaders of local files."""

__all__ = []
