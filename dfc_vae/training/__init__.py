"""Making a run: the Trainer (loop.py), the parts of its optimizer step (step.py), stopping on a signal
(interrupt.py), its run directory and resume (rundir.py), the weight average (average.py), logs
(logs.py), end-of-epoch measures (measures.py), curves (curves.py) and data parallelism (distributed.py)."""
