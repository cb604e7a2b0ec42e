import argparse

from ..argtypes import nonnegative_int

HELP = "decode every face once into the uint8 cache that training reads"
ORDER = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..config import TrainConfig

    d = TrainConfig()
    parser.add_argument("--data", required=True, help="CelebA root (official, torchvision or Kaggle layout)")
    parser.add_argument("--image-size", type=int, default=d.image_size, choices=(32, 64, 128))
    parser.add_argument("--crop", default=d.crop, choices=("official", "center148"),
                        help="official: DFC-VAE's (30, 40, 168, 178) box; center148: the central 148x148")
    parser.add_argument("--cache-dir", help="where the cache goes (default: $DFC_VAE_CACHE or ~/.cache/dfc_vae)")
    parser.add_argument("--workers", type=nonnegative_int, default=0, help="decoding processes (0: one per CPU core)")


def run(args: argparse.Namespace) -> None:
    import time

    from ..celeba import find_celeba
    from ..data import prepare_cache

    root = find_celeba(args.data)
    t = time.perf_counter()
    cache = prepare_cache(root, args.image_size, args.crop, args.cache_dir, args.workers or None)
    dt = time.perf_counter() - t
    print(f"{len(cache.ids)} faces of {root.description} at {args.image_size}x{args.image_size} ({args.crop} crop) "
          f"in {cache.path} ({dt:.1f} s)")
