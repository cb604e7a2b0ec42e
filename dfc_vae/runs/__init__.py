"""A trained run: its settings (TrainConfig), its checkpoints, loading it, and faces as it sees
them (a split at its size and crop, encoded)."""
