"""The `dfc-vae` subcommands, one module each (HELP, ORDER, add_arguments, run); cli.py finds them here."""
