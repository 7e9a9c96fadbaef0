"""Dispatcher: consumes alert messages and creates the Jobs that remediate them.

Layers, top to bottom: consuming -> handling -> {rendering, definitions, jobs}.
Rendering does no I/O. The dispatcher never imports ingest.
"""
