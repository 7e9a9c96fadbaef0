"""python -m ingest: run the webhook service."""

from ingest.cli import main

main()
