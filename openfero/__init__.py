"""The openfero command: one entry point over the services and operator tools."""
