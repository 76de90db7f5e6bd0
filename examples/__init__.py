"""Example scripts: each has a `train_and_evaluate(...)` function and a short absl `main`."""
