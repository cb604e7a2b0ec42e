"""How fast dfc_vae is, every row measured in this run on this machine.

    python experiments/benchmark.py [--n 202599] [--out docs/benchmarks.md]
    python experiments/benchmark.py --studio

Rows:
  data    images/s of torchvision.datasets.CelebA + CenterCrop/Resize/ToTensor in a DataLoader
          (2 workers, the usual PyTorch pipeline) against dfc_vae's first pass (decode once into
          the uint8 cache) and its cached epochs (random batches gathered from the cache);
  train   images/s of one training step (forward, loss, backward, Adam) at batch 64, 64x64, for
          vae123, vae345 and pvae, in fp32 (CPU) and in bf16 where training uses it (CUDA, CPUs
          with native bf16); FLOPs per step counted from the model itself
          (torch.utils.flop_counter over one whole step, VGG included) and the achieved FLOP/s
          divided by this machine's dense matmul FLOP/s in the same precision, measured here
          (utilization, as nanoGPT's estimate_mfu), and by its fastest 3x3 convolution's (the
          stricter ratio where convolutions outrun matrix products); peak resident memory;
  encode  encoder inference images/s (what attribute vectors over all of CelebA cost);
  studio  (`--studio`, instead of the rows above) one update of `dfc-vae studio` at 64x64 on a face:
          encode + decode + render (PNG), and a slider move alone (decode + render), in ms.
The faces are synthetic (dfc_vae.data.synth) and VGG19 has random weights (speed does not depend on
them); the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dfc_vae.data.faces import SYNTHETIC_FACES
from dfc_vae.model.losses import LOSS_NAMES, RANDOM_VGG
from dfc_vae.util.choices import FIXED_PRECISIONS
from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import output_folder
from dfc_vae.util.machine import describe_machine
from dfc_vae.util.tables import markdown_table

BATCH = 64
SIZE = 64
RATE_COLUMNS = ("", "", "right", "right")  # the tables' alignment: the rate and the ratio right-aligned


# ----------------------------------------------------------------------------- machine peak


def matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float = 1.0) -> tuple[float, str]:
    """The machine's dense matmul FLOP/s in `dtype`: the fastest of torch.matmul on square matrices
    (BLAS: MKL on x86 CPUs, cuBLAS) and, on a CPU, the same matrix product through oneDNN (the
    convolution library, as a 1x1 convolution), since on some CPUs (AMD EPYC here) oneDNN's kernels
    outrun MKL's: the higher the peak, the stricter the utilization ratio."""
    results = []
    for n in ((4096, 8192) if device.type == "cuda" else (1024, 2048, 4096)):
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        results.append((_rate(lambda: a @ b, 2 * n**3, device, seconds), f"{n}x{n} torch.matmul"))
    if device.type == "cpu":  # (64*32*32 x 1024) @ (1024 x 1024) through oneDNN
        x = torch.randn(64, 1024, 32, 32, dtype=dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(1024, 1024, 1, 1, dtype=dtype).contiguous(memory_format=torch.channels_last)
        flops = 2 * 64 * 32 * 32 * 1024 * 1024
        results.append((_rate(lambda: torch.nn.functional.conv2d(x, w), flops, device, seconds),
                        "65536x1024 @ 1024x1024 through oneDNN (1x1 convolution)"))
    best, what = max(results)
    return best, f"{str(dtype).removeprefix('torch.')} {what}; best of " + ", ".join(f"{r / 1e9:.0f}" for r, _ in results)


def conv_peak(device: torch.device, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """FLOP/s of the fastest channels_last 3x3 convolution among a few shapes of the loss network.

    Reported beside the matmul peak because on some machines (AMD EPYC with MKL here) oneDNN's 3x3
    convolutions outrun every matrix product we measure: a step made of them can then exceed 100%
    of the matmul peak, and this second ratio is the stricter one."""
    best = 0.0
    for b, c, s in ((8, 64, 32), (64, 128, 32), (64, 256, 16)):
        x = torch.randn(b, c, s, s, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(c, c, 3, 3, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        best = max(best, _rate(lambda: torch.nn.functional.conv2d(x, w, padding=1), 2 * b * s * s * c * c * 9,
                               device, seconds))
    return best


def _rate(fn, flops: float, device: torch.device, seconds: float) -> float:
    for _ in range(2):  # warm-up
        fn()
    _sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        reps += 1
        if device.type == "cuda" and reps % 20:
            continue
        _sync(device)
    _sync(device)
    return flops * reps / (time.perf_counter() - t0)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- data rows


def torchvision_loader_rate(root: Path, images: int) -> float:
    """The usual pipeline: torchvision CelebA, PIL transforms, DataLoader with 2 workers."""
    from torchvision import datasets, transforms

    # torchvision checks the md5 sums of the official annotation files; our synthetic faces come
    # with files in the same format but other contents, so the check would refuse them.
    datasets.CelebA._check_integrity = lambda self: True
    tf = transforms.Compose([transforms.CenterCrop(148), transforms.Resize(SIZE), transforms.ToTensor()])
    ds = datasets.CelebA(str(root), split="all", target_type="attr", transform=tf, download=False)
    ds = torch.utils.data.Subset(ds, range(min(images, len(ds))))
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=2, drop_last=True)
    # the clock starts when the first batch has arrived: the steady rate, without starting the workers
    # (which a run of --baseline-images pays once and an epoch of CelebA hardly notices)
    t0, n = None, 0
    for x, _ in loader:
        if t0 is None:
            t0 = time.perf_counter()
            continue
        n += len(x)
    return n / (time.perf_counter() - t0)


def first_pass_rate(root: Path, cache_dir: Path) -> tuple[float, object]:
    from dfc_vae.data.cache import prepare_cache

    t0 = time.perf_counter()
    cache = prepare_cache(root, SIZE, "official", cache_dir, progress=False)
    return len(cache.ids) / (time.perf_counter() - t0), cache


def cached_epoch_rates(cache, device: torch.device, flip: bool) -> tuple[float, float]:
    """(first epoch, later epochs) images/s of batches from the cache, each ending on `device`.

    The first epoch of a process also maps the cache's pages into it (one page fault per 4 KiB);
    training runs many epochs, so the later ones are the rate that matters.
    """
    from dfc_vae.data.batches import BatchSource

    source = BatchSource(cache.images, np.arange(len(cache.ids)), BATCH, device, seed=0, flip=flip)

    def epochs(which) -> float:
        t0, n = time.perf_counter(), 0
        for epoch in which:
            for x in source.batches(epoch):
                n += len(x)
        _sync(device)
        return n / (time.perf_counter() - t0)

    return epochs([0]), epochs([1, 2, 3])


def encode_rate(cache, device: torch.device, precision: str, images: int = 8192) -> float:
    from dfc_vae.model.network import DFCVAE
    from dfc_vae.util.device import autocast_for

    model = DFCVAE().to(device, memory_format=torch.channels_last).eval()
    x = cache.images[: min(images, len(cache.ids))]
    with torch.no_grad(), autocast_for(device, precision):
        for i in range(2):  # warm-up
            model.encode(_batch(x[:256], device))
        _sync(device)
        t0 = time.perf_counter()
        for i in range(0, len(x), 256):
            model.encode(_batch(x[i:i + 256], device))
        _sync(device)
    return len(x) / (time.perf_counter() - t0)


def _batch(u8: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.array(u8)).to(device).permute(0, 3, 1, 2).float().div_(255)


def studio_latency(device: torch.device, repeats: int = 50) -> tuple[float, float]:
    """Median milliseconds of one studio update at 64x64 through dfc_vae.app.studio.Studio (the code the
    page's requests run): an uploaded aligned JPEG read, encoded, decoded and rendered as PNG; and
    a slider move alone (z + alpha v decoded and rendered). An untrained model: speed does not
    depend on the weights."""
    import io

    from dfc_vae.editing.attributes import AttributeVectors
    from dfc_vae.runs.config import TrainConfig
    from dfc_vae.model.network import DFCVAE
    from dfc_vae.runs.run import LoadedRun
    from dfc_vae.app.studio import Studio, png_bytes
    from dfc_vae.data.synth import render_face

    config = TrainConfig(image_size=SIZE, crop="official")  # a run records its resolved crop; CelebA-aligned faces here
    run = LoadedRun(Path("benchmark"), DFCVAE(config.model_config()).to(device).eval(), config, {}, 0, device)
    vectors = AttributeVectors(["Smiling"], torch.randn(1, config.latent_dim), np.ones(1), np.ones(1))
    buf = io.BytesIO()
    render_face({"Smiling": 0}, np.random.default_rng(0)).save(buf, format="JPEG", quality=95)
    photo = buf.getvalue()
    studio = Studio(run, vectors)
    try:
        def upload():
            face, _ = studio.add_photo(photo, already_aligned=True)
            png_bytes(studio.render(face))
            return face

        def slider(face, alpha):
            png_bytes(studio.render(face, {"Smiling": alpha}))

        face = upload()  # warm-up
        full, move = [], []
        for i in range(repeats):
            t0 = time.perf_counter()
            upload()
            full.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            slider(face, (i % 40) / 10 - 2)
            move.append(time.perf_counter() - t0)
    finally:
        studio.close()
    return float(np.median(full) * 1e3), float(np.median(move) * 1e3)


def studio_row(device: torch.device) -> tuple:
    full, move = studio_latency(device)
    return ("studio", f"one update at {SIZE}x{SIZE}: read + encode + decode + render an uploaded face "
            f"(a slider move alone: {move:.1f} ms)", 1e3 / full, f"{full:.1f} ms (target < 100 ms)")


# ----------------------------------------------------------------------------- training rows


def train_worker(loss: str, cache_path: str, device_name: str, seconds: float, compile: bool, precision: str,
                 batch: int = BATCH) -> dict:
    """Time training steps of `loss` (run in its own process, so its peak memory is its own).

    On CUDA the GPU's peak is taken over the timed steps alone (reset after the warm-up) and the
    share of it that is the training split held on the GPU (BatchSource) is reported apart."""
    from torch.utils.flop_counter import FlopCounterMode

    from dfc_vae.runs.config import TrainConfig
    from dfc_vae.data.batches import BatchSource
    from dfc_vae.data.cache import open_cache
    from dfc_vae.model.losses import DFCLoss
    from dfc_vae.model.network import DFCVAE
    from dfc_vae.training.step import TrainStep, make_optimizer, make_step_fn

    device = torch.device(device_name)
    cache = open_cache(cache_path)
    # the model's size is the cache's: the benchmark's caches are SIZE, a dry run's smaller
    cfg = TrainConfig(loss=loss, vgg_weights="random", batch_size=batch, image_size=cache.images.shape[1])
    # page the whole cache in first: its share of the peak RSS is then its mapped pages (/proc/self/smaps, below)
    int(np.asarray(cache.images).sum(dtype=np.uint64))
    source = BatchSource(cache.images, np.arange(len(cache.ids)), batch, device, seed=0)
    torch.manual_seed(0)
    model = DFCVAE(cfg.model_config()).to(device, memory_format=torch.channels_last)
    loss_fn = DFCLoss(loss, vgg_weights="random").to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg)
    forward_loss = make_step_fn(TrainStep(model), loss_fn, device, compile, precision)

    def step(x):
        out, _ = forward_loss(x, torch.randn(batch, cfg.latent_dim, device=device))
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        return out["loss"]

    batches = (x for epoch in range(10**6) for x in source.batches(epoch))
    eager = make_step_fn(TrainStep(model), loss_fn, device, compile=False, precision=precision)
    with FlopCounterMode(display=False) as counter:  # one eager step: FLOPs of the math itself
        out, _ = eager(next(batches), torch.randn(batch, cfg.latent_dim, device=device))
        out["loss"].backward()
    optimizer.zero_grad(set_to_none=True)
    flops = counter.get_total_flops()
    for _ in range(3 if compile else 1):  # warm-up (and compilation)
        step(next(batches))
    _sync(device)
    _reset_peak_rss()  # the peak below is that of training steps, not of the FLOP count's bookkeeping
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    steps, t0 = 0, time.perf_counter()
    while steps < 2 or time.perf_counter() - t0 < seconds:
        last = step(next(batches))
        steps += 1
    float(last)  # the one host sync
    dt = time.perf_counter() - t0
    status = Path("/proc/self/status").read_text() if Path("/proc/self/status").exists() else ""
    peak = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM")), None)
    if peak is None:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    gpu_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    gpu_cache = source.on_device.nbytes if source.on_device is not None else 0
    return {"loss": loss, "images_per_s": steps * batch / dt, "flops_per_step": flops, "steps": steps, "batch": batch,
            "peak_rss": peak, "cache_rss": _mapped_bytes(cache.path / "images.npy"), "gpu_peak": gpu_peak,
            "gpu_cache": gpu_cache}


def _reset_peak_rss() -> None:
    """Start VmHWM (peak resident memory) afresh from the current RSS (Linux: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _mapped_bytes(path: Path) -> int | None:
    """Resident bytes of this process's memory maps of `path` (Linux /proc/self/smaps), else None."""
    try:
        lines = Path("/proc/self/smaps").read_text().splitlines()
    except OSError:
        return None
    total, inside, name = 0, False, str(Path(path).resolve())
    for line in lines:
        if not line.split(maxsplit=1)[0].endswith(":"):  # a mapping's header ("start-end perms ... path")
            inside = line.rstrip().endswith(name)
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1]) * 1024
    return total


def run_train_worker(loss, cache, device, seconds, compile, precision, batch: int = BATCH) -> dict:
    cmd = [sys.executable, __file__, "--_train-worker", loss, "--_cache", str(cache.path), "--device", str(device),
           "--train-seconds", str(seconds), "--precision", precision, "--batch", str(batch)] + (["--compile"] if compile else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"training worker for {loss} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main


def arithmetic(precision: str, device: torch.device) -> str:
    """The precision as a row names it: fp32 training on CUDA runs its convolutions in TF32 where
    cuDNN allows it (PyTorch's default), faster than the true-fp32 matmul peak it is divided by."""
    if precision == "fp32" and device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        return "fp32 (cuDNN convolutions in TF32)"
    return precision


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=202599, help="synthetic faces to render (default: as many as CelebA has)")
    p.add_argument("--baseline-images", type=int, default=4096, help="images the torchvision DataLoader reads")
    p.add_argument("--train-seconds", type=float, default=25.0, help="timed seconds per training row")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--compile", action="store_true", help="time training through torch.compile")
    p.add_argument("--precision", default="all", choices=("all",) + FIXED_PRECISIONS,
                   help="training rows' arithmetic: all = fp32 and, where the hardware has native bf16, bf16 "
                        "(each against the matmul peak of its own precision)")
    p.add_argument("--batch", type=int, default=BATCH, help=f"batch size of the training rows (default {BATCH})")
    p.add_argument("--losses", default=",".join(LOSS_NAMES), help="training rows to time, comma-separated ('' for none)")
    p.add_argument("--work", help="folder for the synthetic faces (kept for later runs) and the cache "
                                  "(default: a temporary folder)")
    p.add_argument("--out", help="also write the table as markdown to this file")
    p.add_argument("--studio", action="store_true", help="time only the studio's update latency (seconds, not minutes)")
    p.add_argument("--_train-worker", help=argparse.SUPPRESS)
    p.add_argument("--_cache", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.baseline_images < 2 * BATCH:
        p.error(f"--baseline-images must be at least {2 * BATCH} (two batches: the first one starts the clock)")
    if args.batch < 1:
        p.error("--batch must be at least 1")
    if args.work:
        try:
            output_folder(args.work, "--work", " for the synthetic faces and the cache")
        except UserError as e:
            p.error(str(e))
    return args


def studio_table(device: torch.device) -> str:
    what, measured, rate, ratio = studio_row(device)
    table = markdown_table(["what", "measured", "updates/s", "time"], [(what, measured, f"{rate:,.1f}", ratio)],
                           align=RATE_COLUMNS)
    return f"machine: {describe_machine(device)}; torch {torch.__version__}\n\n" + "\n".join(table)


def training_precisions(requested: str, device: torch.device) -> list[str]:
    """The training rows' precisions: `requested`, or for 'all' fp32 on a CPU and bf16 wherever
    training uses it by default."""
    from dfc_vae.util.device import resolve_precision

    if requested != "all":
        return [requested]
    return (["fp32"] if device.type == "cpu" else []) + (["bf16"] if resolve_precision("auto", device) == "bf16" else [])


def data_rows(faces: Path, root: Path, cache_dir: Path, device: torch.device, baseline_images: int) -> tuple[list, object]:
    """The torchvision DataLoader, dfc_vae's first pass and its cached epochs; and the cache made."""
    tv = torchvision_loader_rate(faces, baseline_images)
    rows = [("data", "torchvision CelebA + CenterCrop/Resize/ToTensor, DataLoader 2 workers", tv, "1.0x")]
    first, cache = first_pass_rate(root, cache_dir)
    rows.append(("data", f"dfc_vae first pass: decode once into the uint8 cache ({os.cpu_count()} workers)",
                 first, f"{first / tv:.1f}x"))
    for flip in (False, True):
        first, later = cached_epoch_rates(cache, device, flip)
        what = "with --flip (random horizontal flips)" if flip else "default (no flips)"
        rows.append(("data", f"dfc_vae cached epochs 2-4, {what}: batches of {BATCH} on {device.type} "
                     f"(epoch 1, mapping the cache's pages: {first:,.0f} images/s)", later, f"{later / tv:.0f}x"))
    return rows, cache


def train_rows(cache, device: torch.device, args: argparse.Namespace, peaks: dict, conv_peaks: dict) -> list:
    """One row per precision and loss, each timed in its own process."""
    rows = []
    for prec, (peak, _) in peaks.items():
        for loss in filter(None, args.losses.split(",")):
            r = run_train_worker(loss, cache, device, args.train_seconds, args.compile, prec, args.batch)
            util = r["images_per_s"] / args.batch * r["flops_per_step"] / peak
            rows.append(("train", f"{loss}, {arithmetic(prec, device)}, batch {args.batch}, {SIZE}x{SIZE}: "
                         f"{r['flops_per_step'] / 1e9:.0f} GFLOP/step, {memory_text(r)}", r["images_per_s"],
                         f"{util:.0%} of the {prec} matmul peak ({util * peak / conv_peaks[prec]:.0%} of the 3x3 conv's)"))
    return rows


def memory_text(r: dict) -> str:
    """A training worker's peak memory, with the cache's and (on a GPU) the held split's shares apart."""
    mem = f"peak RSS {r['peak_rss'] / 2**30:.2f} GiB"
    if r["cache_rss"] is not None:
        mem += f" = {(r['peak_rss'] - r['cache_rss']) / 2**30:.2f} GiB + the cache's {r['cache_rss'] / 2**30:.2f} GiB"
    if r["gpu_peak"]:
        mem += f", GPU peak {r['gpu_peak'] / 2**30:.2f} GiB"
        if r["gpu_cache"]:
            mem += (f" = {(r['gpu_peak'] - r['gpu_cache']) / 2**30:.2f} GiB + the training split held on "
                    f"the GPU {r['gpu_cache'] / 2**30:.2f} GiB")
    return mem


def header_lines(device: torch.device, args: argparse.Namespace, peaks: dict, conv_peaks: dict,
                 cache_gib: float) -> list[str]:
    """What the table was measured on: machine, peaks, data."""
    return [f"machine: {describe_machine(device)}; torch {torch.__version__}",
            *(f"{prec} matmul peak measured in this run: {peak / 1e9:.1f} GFLOP/s ({what}"
              + ("; true fp32, TF32 off for matmuls" if prec == "fp32" and device.type == "cuda"
                 and not torch.backends.cuda.matmul.allow_tf32 else "") + ")"
              for prec, (peak, what) in peaks.items()),
            *(f"{prec} 3x3 convolution (oneDNN/cuDNN, channels_last), fastest of 3 shapes: {conv / 1e9:.1f} GFLOP/s"
              for prec, conv in conv_peaks.items()),
            f"data: {args.n} {SYNTHETIC_FACES}, cache {cache_gib:.3f} GiB; "
            f"{RANDOM_VGG} (speed does not depend on them)"
            + ("; training through torch.compile" if args.compile else "")]


def full_table(args: argparse.Namespace, device: torch.device) -> str:
    """Render the faces, measure every row, and return the markdown (header lines and the table)."""
    from dfc_vae.util.device import resolve_precision
    from dfc_vae.data.synth import render_celeba

    precisions = training_precisions(args.precision, device)
    if args.work:
        Path(args.work).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        work = Path(work)
        # with --work the faces are kept there and reused by later runs (the cache is always made afresh)
        faces = Path(args.work) / f"faces-{args.n}" if args.work else work / "faces"
        t0 = time.perf_counter()
        root = render_celeba(faces / "celeba", n=args.n, seed=0, progress=False)  # torchvision's layout too
        print(f"{args.n} synthetic faces ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
        peaks = {prec: matmul_peak(device, dtypes[prec]) for prec in precisions}
        conv_peaks = {prec: conv_peak(device, dtypes[prec]) for prec in precisions}
        rows, cache = data_rows(faces, root, work / "cache", device, args.baseline_images)
        rows += train_rows(cache, device, args, peaks, conv_peaks)
        default_precision = resolve_precision("auto", device)  # what inference uses here by default
        enc = encode_rate(cache, device, default_precision)
        rows.append(("encode", f"encoder inference (posterior means), batch 256, {default_precision}", enc, ""))
        cache_gib = cache.images.nbytes / 2**30
    table = markdown_table(["what", "measured", "images/s", "ratio"], [(a, b, f"{c:,.1f}", d) for a, b, c, d in rows],
                           align=RATE_COLUMNS)
    return "\n".join(header_lines(device, args, peaks, conv_peaks, cache_gib)) + "\n\n" + "\n".join(table) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    from dfc_vae.util.device import resolve_device

    device = resolve_device(args.device)
    if args._train_worker:
        print(json.dumps(train_worker(args._train_worker, args._cache, str(device), args.train_seconds, args.compile,
                                      args.precision, args.batch)))
        return 0
    if args.studio:
        print(studio_table(device))
        return 0
    text = full_table(args, device)
    print(text)
    if args.out:
        from dfc_vae.util.fileio import write_text

        write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
