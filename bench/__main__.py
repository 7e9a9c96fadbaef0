"""python -m bench: run every benchmark and write the report."""

from bench.run import main

main()
