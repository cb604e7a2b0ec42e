"""experiments/gpu_check.py on a CPU: without a GPU it says so in one line and exits with status 2;
its runner and report, and the checks a CPU can run, work here."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # trains models or starts processes

SCRIPT = Path(__file__).parents[1] / "experiments" / "gpu_check.py"
spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = importlib.util.module_from_spec(spec)
sys.modules["gpu_check"] = gpu_check  # its dataclasses look their module up there
spec.loader.exec_module(gpu_check)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the script runs its checks")
def test_without_a_gpu_it_says_so_in_one_line_and_exits_2(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "report.md")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA GPU" in lines[0]
    assert not (tmp_path / "report.md").exists()


def test_a_work_folder_that_is_a_file_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "work").write_text("not a folder")
    assert gpu_check.main(["--work", str(tmp_path / "work"), "--out", str(tmp_path / "report.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--work {tmp_path / 'work'} is a file; give a folder" in err[0]
    assert not (tmp_path / "report.md").exists()


def test_the_runner_reports_pass_fail_skip_and_keeps_to_its_budget():
    now = [0.0]

    def clock():
        return now[0]

    def ok():
        now[0] += 10
        return "fine"

    def skipped():
        raise gpu_check.Skip("one GPU visible")

    def broken():
        now[0] += 400
        raise RuntimeError("CUDA error: an illegal memory access\nmore lines")

    def exits():  # e.g. the benchmark's worker failing: raises SystemExit
        raise SystemExit("training worker for vae123 failed")

    results = gpu_check.run_checks([("ok", ok), ("two_gpus", skipped), ("boom", broken), ("late", ok)],
                                   budget_s=300, clock=clock)
    assert [(r.name, r.status) for r in results] == [("ok", "pass"), ("two_gpus", "skipped"), ("boom", "FAIL"),
                                                    ("late", "skipped")]
    assert gpu_check.run_checks([("worker", exits), ("next", lambda: "ran")])[1].status == "pass"
    assert results[2].detail == "RuntimeError: CUDA error: an illegal memory access"
    assert "budget" in results[3].detail and results[0].seconds == 10
    text = gpu_check.report(results, "a test machine", 410)
    assert text.startswith("# dfc_vae GPU check\n")
    assert "1 of 4 checks passed; FAILED: boom; 410 s in all." in text
    assert "| boom | FAIL | 400.0 | RuntimeError: CUDA error: an illegal memory access |" in text


def test_every_documented_check_is_run():
    names = [name for name, _ in gpu_check.Checks(Path(".")).all()]
    documented = [line.split()[0] for line in gpu_check.__doc__.split("Checks, in order")[1].splitlines()[1:]
                  if line.startswith("  ") and not line.startswith("    ")]
    assert names == documented


def test_the_checks_a_cpu_can_run_pass_on_a_cpu(tmp_path):
    checks = gpu_check.Checks(tmp_path, torch.device("cpu"), faces=96, size=32)
    assert checks.check_channels_last().startswith("batch (32, 3, 32, 32)")
    assert "all" in checks.check_fused_adam()
    with pytest.raises(AssertionError, match="not held on the GPU"):  # a CPU holds no split on a GPU
        checks.check_batches()
