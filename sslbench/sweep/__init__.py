"""Hyperparameter sweeps with Optuna: search spaces, studies, workers, status."""
