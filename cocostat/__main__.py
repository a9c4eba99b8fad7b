"""``python -m cocostat`` runs the command line."""

from cocostat.cli import main

main(prog_name="cocostat")
