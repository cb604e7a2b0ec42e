"""A run's logs: the rows of metrics.csv and epochs.csv, TensorBoard's events, and the window of
step statistics a metrics row summarizes, kept on the device between rows."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dfc_vae.training.distributed import Processes, sum_over_processes
from dfc_vae.model.losses import ACTIVE_UNIT_THRESHOLD
from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import write_text

METRIC_COLUMNS = ["step", "epoch", "loss", "recon", "kl", "active_units", "images_per_s", "elapsed_s"]
EPOCH_COLUMNS = ["epoch", "step", "eval_loss", "eval_recon", "eval_kl", "active_units", "images", "kl_uncalibrated",
                 "kl_calibrated"]


class CSVLog:
    """Appends rows to a CSV; on resume, first drops rows past the checkpoint's step."""

    def __init__(self, path: Path, columns: list[str], keep_until: int | None, key: str):
        self.path, self.columns = path, columns
        rows = []
        if keep_until is not None and path.is_file():
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    try:
                        if row.get(key) and int(row[key]) <= keep_until:
                            rows.append(row)
                    except ValueError:  # a half-written last line of a killed run
                        pass
        buf = io.StringIO()
        w = csv.DictWriter(buf, columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        write_text(path, buf.getvalue())

    def append(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns, extrasaction="ignore").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


@dataclass
class Logs:
    """Where rows go (rank 0 alone writes: elsewhere they are None) and the progress bar."""
    metrics: CSVLog | None
    epochs: CSVLog | None
    writer: Any  # TensorBoard's SummaryWriter, with --tensorboard
    bar: Any


def tensorboard_writer():
    """torch.utils.tensorboard's SummaryWriter, or a UserError saying how to install it."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # the optional extra `tensorboard`, only with --tensorboard
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package; install it with "
                        "`pip install 'dfc_vae[tensorboard]'` (or `pip install tensorboard`), or drop --tensorboard") from None
    return SummaryWriter


def add_scalars(writer, prefix: str, row: dict, step: int) -> None:
    """A row's numbers as TensorBoard scalars `prefix/column` at `step` (nothing without a writer)."""
    if writer is not None:
        for key, value in row.items():
            if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                writer.add_scalar(f"{prefix}/{key}", value, step)


class StepWindow:
    """Loss sums and posterior-mean moments since the last log, kept on the device (no sync).

    Each step's loss terms (batch means, model/losses.py) are summed weighted by the step's images,
    so a row is the mean per image over the window whatever the size of its batches."""

    def __init__(self, latent_dim: int, device: torch.device):
        self.sums = torch.zeros(3, device=device)
        self.mu_sum = torch.zeros(latent_dim, device=device)
        self.mu_sq = torch.zeros(latent_dim, device=device)
        self.steps = 0
        self.n = 0

    @torch.no_grad()
    def add(self, out: dict, mu: torch.Tensor) -> None:
        terms = torch.stack([out["loss"].detach(), out["recon"].detach(), out["kl"].detach()]).float()
        self.sums += terms * mu.shape[0]
        mu = mu.detach().float()
        self.mu_sum += mu.sum(0)
        self.mu_sq += mu.pow(2).sum(0)
        self.steps += 1
        self.n += mu.shape[0]

    def read(self, procs: Processes | None = None) -> dict:
        """The window's mean loss terms per image, active units and image count (n) over the global
        batches of all processes, as one process would log them for the same batches; then starts a
        new window."""
        moments, n = self._global(procs)
        sums, mu_sum, mu_sq = moments[:3], *moments[3:].chunk(2)
        loss, recon, kl = (sums / max(n, 1)).tolist()
        mean = mu_sum / max(n, 1)
        var = mu_sq / max(n, 1) - mean.pow(2)
        row = {"loss": loss, "recon": recon, "kl": kl, "active_units": int((var > ACTIVE_UNIT_THRESHOLD).sum()), "n": n}
        self.sums.zero_(), self.mu_sum.zero_(), self.mu_sq.zero_()
        self.steps = self.n = 0
        return row

    def _global(self, procs: Processes | None) -> tuple[torch.Tensor, int]:
        """The sums and the image count of all processes (a collective under data parallelism: every
        process calls it)."""
        moments = torch.cat([self.sums, self.mu_sum, self.mu_sq])
        if procs is None or procs.world == 1:
            return moments, self.n
        count = torch.tensor([self.n], dtype=moments.dtype, device=moments.device)
        total = sum_over_processes(torch.cat([moments, count]), procs)
        return total[:-1], int(total[-1].item())

    def state(self, procs: Processes | None = None) -> dict:
        """What a checkpoint keeps of the window: the sums of all processes, so that a run resumed from
        it logs the next row as the uninterrupted run does (a collective, as `read`)."""
        moments, n = self._global(procs)
        return {"moments": moments.cpu(), "steps": self.steps, "n": n}

    def load_state(self, state: dict, procs: Processes | None = None) -> None:
        """Restore `state`'s sums into rank 0's window (the other ranks start empty: rows sum over all)."""
        if procs is not None and not procs.is_main:
            return
        moments = state["moments"].to(self.sums.device)
        latent = len(self.mu_sum)
        self.sums.copy_(moments[:3]), self.mu_sum.copy_(moments[3:3 + latent]), self.mu_sq.copy_(moments[3 + latent:])
        self.steps, self.n = state["steps"], state["n"]
