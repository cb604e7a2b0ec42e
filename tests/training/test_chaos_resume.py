"""Kill a small training run with SIGKILL at 5 random moments, resume it each time, and check
that it ends bitwise-identical to an uninterrupted run (CPU, --deterministic)."""

import importlib.util
from pathlib import Path
import pytest

spec = importlib.util.spec_from_file_location("chaos_resume", Path(__file__).parents[2] / "experiments" / "chaos_resume.py")
chaos = importlib.util.module_from_spec(spec)
spec.loader.exec_module(chaos)


@pytest.mark.slow  # trains in processes it kills
def test_killed_and_resumed_training_ends_identical_to_an_uninterrupted_run(tmp_path):
    from dfc_vae.data.synth import render_celeba

    data = render_celeba(tmp_path / "synth", n=160, seed=11, progress=False)
    result = chaos.chaos_trial(data, tmp_path / "work", kills=5, seed=7, loss="pvae", epochs=3)
    assert result["kills"] >= 3, result  # kills that came after the job had finished don't count
    assert result["differences"] == [], result
