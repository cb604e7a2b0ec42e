import argparse

HELP = "a local web page to explore a trained model: your photo, attribute sliders, blends, random faces"
ORDER = 75


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory made by `dfc-vae train`")
    parser.add_argument("--attributes", help="attribute-vector file from `dfc-vae attributes` (one slider per attribute)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this computer only; 0.0.0.0 opens it to the network)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def run(args: argparse.Namespace) -> None:
    from dfc_vae.util.errors import UserError
    from dfc_vae.app.studio import require_web_libraries, serve

    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port} is not a port number; give one between 1 and 65535, e.g. 7860")
    require_web_libraries()
    from dfc_vae.editing.attributes import load_attribute_vectors
    from dfc_vae.runs.run import load_run

    loaded = load_run(args.run, args.device)
    vectors = load_attribute_vectors(args.attributes, loaded.config.latent_dim) if args.attributes else None
    serve(loaded, vectors, args.host, args.port)
