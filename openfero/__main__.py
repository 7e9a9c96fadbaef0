"""python -m openfero: the openfero command."""

from openfero.cli import main

main(prog_name="openfero")
