"""Subcommands of `genshop`; each module defines NAME, HELP, add_arguments(parser), run(args)."""
