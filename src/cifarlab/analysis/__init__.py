"""Evaluation, statistics over replicates, the model profiler."""
