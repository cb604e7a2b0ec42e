"""Random training batches gathered from the uint8 cache, on the GPU when the split fits there."""

from __future__ import annotations

import numpy as np
import torch

from dfc_vae.util.errors import UserError
from dfc_vae.util.images import to_tensor, to_unit_float


def gather_rows(images: np.ndarray, rows) -> np.ndarray:
    """Rows images[rows] of a memory-mapped (N, ...) cache, in the order asked, as a new array; the map
    is read in ascending order, which is what the page cache serves fastest."""
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    return images[rows[order]][np.argsort(order)]


UPLOAD_CHUNK_BYTES = 64 << 20  # the host memory an upload holds at once


def upload_rows(images: np.ndarray, rows, device: torch.device, chunk_bytes: int | None = None) -> torch.Tensor:
    """Rows images[rows] of a memory-mapped (N, ...) uint8 cache as one tensor on `device`, in the order
    asked, read from the map a chunk at a time: the host never holds more than one chunk (a whole
    training split is GBs at 128 px and above, on every rank at once under torchrun)."""
    rows = np.asarray(rows, dtype=np.int64)
    out = torch.empty((len(rows), *images.shape[1:]), dtype=torch.uint8, device=device)
    per = max(1, (chunk_bytes or UPLOAD_CHUNK_BYTES) // max(int(np.prod(images.shape[1:])), 1))
    for lo in range(0, len(rows), per):
        out[lo:lo + per].copy_(torch.from_numpy(gather_rows(images, rows[lo:lo + per])))
    return out


def fits_on_device(images: np.ndarray, count: int, device: torch.device) -> bool:
    """Whether `count` rows of `images` would take under half of the GPU's free memory (never on a CPU)."""
    if device.type != "cuda":
        return False
    return count * int(np.prod(images.shape[1:])) < 0.5 * torch.cuda.mem_get_info(device)[0]


class BatchSource:
    """Random batches of faces from a cache, as (B, 3, S, S) float tensors in [0, 1], channels_last.

    The order of epoch e is a permutation drawn from (seed, e), so a resumed run can rebuild it and
    continue from any batch. Under data parallelism every rank draws the same permutation and
    takes its own slice of each global batch. Incomplete last batches are dropped.
    """

    def __init__(self, images: np.ndarray, indices: np.ndarray, batch_size: int, device: torch.device,
                 seed: int = 0, flip: bool = False, rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise UserError(f"batch size {batch_size} must be divisible by the number of processes ({world_size})")
        if len(indices) < batch_size:
            raise UserError(f"the training split has {len(indices)} images, fewer than one batch of {batch_size}; "
                            "lower --batch-size or use more data")
        self.batch_size, self.device, self.seed, self.flip = batch_size, device, seed, flip
        self.rank, self.world_size = rank, world_size
        self.num_batches = len(indices) // batch_size
        self.indices = np.sort(indices)
        self.source = images  # memory-mapped cache: pages come from the OS page cache, not our heap
        self.on_device = None
        if fits_on_device(images, len(indices), device):  # the whole split on the GPU: batches gathered there
            self.on_device = upload_rows(images, self.indices, device)

    def floats(self, rows) -> torch.Tensor:
        """Cache rows `rows` of the split (ascending) as (N, 3, S, S) floats in [0, 1] on the device:
        gathered from the split held on the GPU, so nothing is read or copied from the host, else read
        from the map and copied there."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.on_device is None:
            return to_tensor(gather_rows(self.source, rows)).to(self.device)
        at = np.searchsorted(self.indices, rows)
        if not np.array_equal(self.indices[np.minimum(at, len(self.indices) - 1)], rows):
            raise ValueError("rows outside the training split")
        return to_unit_float(self.on_device[torch.from_numpy(at).to(self.device)])

    def batches(self, epoch: int, start: int = 0):
        """Yield the batches of `epoch` from batch number `start` on.

        On a GPU nothing is copied from the host per batch but the pixels of a split that does not
        fit there (pinned, asynchronous): the epoch's order and flips go to the device once and
        batches are gathered and flipped there, so the step never waits for a blocking copy."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.indices), generator=g).numpy()
        flips = (torch.rand(len(self.indices), generator=g) < 0.5).numpy()
        local = self.batch_size // self.world_size
        index_on_device = self.on_device is not None or self.device.type != "cpu"
        if index_on_device:
            order_dev = torch.from_numpy(order).to(self.device)
            flips_dev = torch.from_numpy(flips).to(self.device)
        for b in range(start, self.num_batches):
            lo = b * self.batch_size + self.rank * local
            idx = order[lo:lo + local]
            if self.on_device is not None:
                x = self.on_device[order_dev[lo:lo + local]]
            else:
                rows = self.indices[idx]
                x = torch.from_numpy(gather_rows(self.source, rows))
                if self.device.type == "cuda":
                    x = x.pin_memory().to(self.device, non_blocking=True)
            if self.flip and index_on_device:
                chosen = flips_dev[order_dev[lo:lo + local]].view(-1, 1, 1, 1)  # dim 2 of NHWC is the width
                x = torch.where(chosen, x.flip(2), x)
            elif self.flip:  # only the chosen images, on the uint8 batch
                chosen = torch.from_numpy(np.flatnonzero(flips[idx])).to(self.device)
                x[chosen] = x[chosen].flip(2)
            yield to_unit_float(x)
