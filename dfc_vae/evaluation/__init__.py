"""Measuring a run: reconstruction metrics, the attribute classifier that scores edits, the
paper's Figures 5 and 6, the prior gap, and the evaluation report."""
