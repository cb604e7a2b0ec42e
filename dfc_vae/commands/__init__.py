"""The `dfc-vae` subcommands, one module each (HELP, ORDER, add_arguments, run); cli.py finds them here.

cli.py imports every one of them to build the parser, so what a command imports at its top is paid by every
`dfc-vae` call, `--help` included: the standard library, util, and what its flags are built from (the settings
of runs/config.py and app/demo.py, the allowed values). The library modules that do its work (runs, editing,
evaluation, training, sharing, the studio) are imported inside the functions that use them.
"""
