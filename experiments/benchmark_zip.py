"""Decoding CelebA into the cache straight from img_align_celeba.zip against from the unpacked folder.

    python experiments/benchmark_zip.py [--n 20000] [--rounds 5] [--workers 0] [--size 64] [--dir DIR]

Renders N synthetic faces in CelebA's official layout and makes the same copy as downloaded (the annotation
files and img_align_celeba.zip, no image folder), once with its members deflated and once stored, then
prepares the cache from each zip and from the folder, alternately (the order reversed every round, a fresh
cache folder each time), and unpacks the zip once a round (the step reading it in place saves). Prints
each round's images/s, the medians, and the ratios zip / folder: the median over rounds of each round's own
ratio, which drift in the machine's load between rounds does not move. Both paths run `dfc-vae prepare`'s code: opening the data, fingerprinting
and decoding in worker processes. The faces are synthetic (dfc_vae.data.synth); the table says so.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from dfc_vae.cli import ArgumentParser
from dfc_vae.data.cache import prepare_cache
from dfc_vae.data.celeba import ZIP_NAME
from dfc_vae.data.sources import open_faces
from dfc_vae.data.synth import render_celeba
from dfc_vae.util.argtypes import number
from dfc_vae.util.choices import IMAGE_SIZES
from dfc_vae.util.errors import exit_status
from dfc_vae.data.faces import SYNTHETIC_FACES
from dfc_vae.util.machine import describe_machine
from dfc_vae.util.tables import markdown_table


def as_downloaded(unpacked: Path, out: Path, method: int) -> Path:
    """`unpacked` (official layout) as CelebA is downloaded: its annotation files and img_align_celeba.zip,
    its members compressed with `method` (zipfile.ZIP_DEFLATED or ZIP_STORED)."""
    images = sorted((unpacked / "img_align_celeba").iterdir())
    if (out / ZIP_NAME).is_file():
        with zipfile.ZipFile(out / ZIP_NAME) as zf:
            if len(zf.namelist()) == len(images):  # made in an earlier run with the same --dir and --n
                return out
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(unpacked, out, ignore=shutil.ignore_patterns("img_align_celeba"))
    with zipfile.ZipFile(out / ZIP_NAME, "w", method) as zf:
        for path in images:
            zf.write(path, f"img_align_celeba/{path.name}")
    return out


def prepare_seconds(data: Path, cache: Path, size: int, workers: int | None) -> float:
    """Seconds to open `data` and decode it into a new cache in `cache`, as `dfc-vae prepare` does."""
    shutil.rmtree(cache, ignore_errors=True)
    t = time.perf_counter()
    prepare_cache(open_faces(data), size, None, cache, workers, progress=False)
    return time.perf_counter() - t


def unpack_seconds(zipped: Path, out: Path) -> float:
    """Seconds to unpack img_align_celeba.zip (what reading it in place saves)."""
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    shutil.unpack_archive(zipped / ZIP_NAME, out)
    return time.perf_counter() - t


def run(args: argparse.Namespace) -> None:
    base = Path(args.dir or tempfile.mkdtemp(prefix="dfc_zip_bench_"))
    folder = render_celeba(base / "folder", n=args.n, seed=0, layout="official", progress=sys.stderr.isatty())
    sources = {"zip, deflated": as_downloaded(folder, base / "deflated", zipfile.ZIP_DEFLATED),
               "zip, stored": as_downloaded(folder, base / "stored", zipfile.ZIP_STORED), "folder": folder}
    times: dict[str, list[float]] = {name: [] for name in [*sources, "unpacking the zip"]}
    rows = []
    for r in range(args.rounds):
        order = list(sources) if r % 2 == 0 else list(sources)[::-1]  # alternate: drift in load hits each alike
        for name in order:
            times[name].append(prepare_seconds(sources[name], base / "cache", args.size, args.workers or None))
        times["unpacking the zip"].append(unpack_seconds(sources["zip, deflated"], base / "unpacked"))
        rows.append((r + 1, *(f"{args.n / times[name][-1]:,.0f}" for name in times)))
    medians = {name: args.n / statistics.median(t) for name, t in times.items()}
    rows.append(("median", *(f"{m:,.0f}" for m in medians.values())))
    print(f"{args.n:,} {SYNTHETIC_FACES} at {args.size}x{args.size}, official crop, images/s; {describe_machine('cpu')}")
    print("\n".join(markdown_table(("round", *times), rows, ("right",) * (len(times) + 1))))
    def paired(name):  # the median over rounds of the ratio within a round: load drifts between rounds
        return statistics.median(f / z for z, f in zip(times[name], times["folder"]))

    end_to_end = statistics.median((u + f) / z for z, f, u in zip(times["zip, deflated"], times["folder"],
                                                                    times["unpacking the zip"]))
    print(f"zip / folder (median of each round's ratio): deflated {paired('zip, deflated'):.2f}, stored "
          f"{paired('zip, stored'):.2f}; the deflated zip against unpacking it, then the folder: {end_to_end:.2f}")


def main(argv=None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=number("int", min=1), default=20000, help="synthetic faces (default 20000)")
    parser.add_argument("--rounds", type=number("int", min=1), default=5, help="rounds of zip and folder (default 5)")
    parser.add_argument("--workers", type=number("int", min=0), default=0, help="decoding processes (0: one per core)")
    parser.add_argument("--size", type=int, default=64, choices=IMAGE_SIZES, help="image size (default 64)")
    parser.add_argument("--dir", help="working folder, kept (default: a new temporary folder)")
    args = parser.parse_args(argv)
    status = exit_status("benchmark_zip", lambda: run(args))
    if status:
        sys.exit(status)


if __name__ == "__main__":
    main()
