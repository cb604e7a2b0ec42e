"""`dfc-vae studio`: its flags and the start of the local web page (app/studio.py)."""

import argparse

from dfc_vae.commands._common import ATTRIBUTES_HELP, add_device_argument, add_run_argument, model_vectors, open_model
from dfc_vae.util.errors import UserError

# The library modules that do the work are imported in the functions that use them: cli.py imports every
# command to build the parser, and `dfc-vae --help` should not load them (commands/__init__.py).

HELP = "a local web page to explore a trained model: your photo, attribute sliders, blends, random faces"
ORDER = 75


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_argument(parser, model=True)
    parser.add_argument("--attributes", help=ATTRIBUTES_HELP)
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this computer only; 0.0.0.0 opens it to the network)")
    token = parser.add_mutually_exclusive_group()
    token.add_argument("--token", help="the secret the printed URL carries (default: a new random one at every start); "
                                       "16 or more letters, digits or -_.~")
    token.add_argument("--no-token", action="store_true",
                       help="ask for no token: any program or account that can reach the port may use the studio and "
                            "see its photos (docs/studio.md, Security)")
    add_device_argument(parser)


def run(args: argparse.Namespace) -> None:
    from dfc_vae.app.studio import require_web_libraries, serve
    from dfc_vae.app.studio_guard import check_token, new_token

    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port} is not a port number; give one between 1 and 65535, e.g. 7860")
    token = None if args.no_token else check_token(args.token) if args.token else new_token()
    require_web_libraries()
    loaded = open_model(args)
    vectors = model_vectors(args, loaded)
    serve(loaded, vectors, args.host, args.port, token)
