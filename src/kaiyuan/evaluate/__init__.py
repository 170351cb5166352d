"""Evaluation: generation exact match now; the benchmark harness, judge and arena come later."""
