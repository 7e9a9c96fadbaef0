"""python -m dispatcher: run a dispatcher worker."""

from dispatcher.cli import main

main()
