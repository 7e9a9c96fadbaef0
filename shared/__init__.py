"""Shared: the bottom layer, beneath both services.

Settings, the message envelope, the queue topology, the broker connection,
publishing until confirmed, logs and the event loop. It imports neither
service, nor the console, nor the openfero command (the import contracts in
pyproject.toml keep it so).
"""
