"""Making a run: the training loop (loop.py), its run directory and resume (rundir.py), the weight
average (average.py), logs (logs.py), end-of-epoch measures (measures.py), curves (curves.py) and
data parallelism (distributed.py)."""
