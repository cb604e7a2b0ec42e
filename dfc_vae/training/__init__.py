"""Making a run: the training loop, its run directory and resume, the weight average, logs,
curves and data parallelism."""
