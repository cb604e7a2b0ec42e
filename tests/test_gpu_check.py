"""experiments/gpu_check.py on a CPU: without a GPU it says so in one line and exits with status 2;
its runner and report, and the checks a CPU can run, work here."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parents[1] / "experiments" / "gpu_check.py"
spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = importlib.util.module_from_spec(spec)
sys.modules["gpu_check"] = gpu_check  # its dataclasses look their module up there
spec.loader.exec_module(gpu_check)


@pytest.mark.slow  # starts the script in a process
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


def test_a_check_past_its_own_time_limit_fails_and_the_next_still_runs():
    import time

    results = gpu_check.run_checks([("slow", lambda: time.sleep(5) or "done", 0.2), ("next", lambda: "ran")])
    assert [(r.name, r.status) for r in results] == [("slow", "FAIL"), ("next", "pass")]
    assert "limit" in results[0].detail and results[0].seconds < 2


def test_the_measurements_come_first_and_every_check_has_its_own_limit():
    checks = gpu_check.Checks(Path("."), torch.device("cpu")).limited()
    assert [name for name, *_ in checks][:4] == ["device", "utilization", "sync_free", "real_loop"]
    assert all(limit > 0 for _, _, limit in checks)


def test_the_gpu_table_is_written_between_its_markers(tmp_path):
    from gpu_check_perf import TABLE_END, TABLE_START, write_gpu_table

    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# Benchmarks\n\n{TABLE_START}\nNot measured yet.\n{TABLE_END}\n\nthe rest\n")
    write_gpu_table(docs, "GPU NVIDIA H200, driver 550, CUDA 12.4; torch 2.x",
                    [("bf16", 64, "eager", "25,000", "5.3", "12%")])
    text = docs.read_text()
    assert "Not measured yet" not in text and text.endswith(f"{TABLE_END}\n\nthe rest\n")
    assert "on GPU NVIDIA H200, driver 550, CUDA 12.4" in text and "| bf16 | 64 | eager | 25,000 | 5.3 | 12% |" in text
    real = (Path(__file__).parents[1] / "docs" / "benchmarks.md").read_text()
    assert TABLE_START in real and TABLE_END in real  # where a run on a GPU machine writes it


@pytest.mark.slow  # trains (the dry runs of the training checks)
def test_every_new_check_runs_in_a_dry_run_on_the_cpu(tmp_path):
    checks = gpu_check.Checks(tmp_path, torch.device("cpu"), faces=160, size=64, dry=True)
    new = [c for c in checks.limited() if c[0] in ("utilization", "sync_free", "real_loop", "end_to_end", "memory")]
    results = gpu_check.run_checks(new, budget_s=3600)
    assert [(r.name, r.status) for r in results] == [(c[0], "pass") for c in new], [r.detail for r in results]
    assert checks.table_rows and all(row[2] == "eager" for row in checks.table_rows)
