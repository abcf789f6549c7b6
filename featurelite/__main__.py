"""``python -m featurelite``: the command line."""

from .cli import main

main(prog_name="featurelite")
