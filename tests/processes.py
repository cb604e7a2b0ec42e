"""Two processes in one gloo group on this machine, for tests of what processes agree on."""

from __future__ import annotations


def _join_group(target, rank, port, results):
    import os

    import torch

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    results[rank] = target(rank)
    torch.distributed.destroy_process_group()


def in_two_processes(target) -> dict:
    """{rank: target(rank)} for ranks 0 and 1, each run in its own spawned process inside one gloo
    process group; `target` must be a module-level function (spawn imports it by name)."""
    import multiprocessing as mp
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        results = manager.dict()
        procs = [ctx.Process(target=_join_group, args=(target, r, port, results)) for r in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0, 0]
        return dict(results)
