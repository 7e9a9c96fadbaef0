"""The test brokers clean up after runs that could not: only nodes whose run is gone are ended."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT
from tests.own_broker import OwnBroker, _pids_of_node, remove_leftovers

# A run that starts a node and is then killed, before any teardown: it prints the node's name and folder.
ABORTED_RUN = """
import os, signal, sys
from tests.own_broker import OwnBroker
broker = OwnBroker()
broker.start()
print(broker.node, broker.dir, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_nodes_of_an_aborted_run_are_ended_and_those_of_a_live_run_are_kept() -> None:
    # Given a node whose run was killed, and one of this (live) run
    aborted = subprocess.run([sys.executable, "-c", ABORTED_RUN], cwd=ROOT, capture_output=True, text=True, timeout=120)
    node, folder = aborted.stdout.split()
    assert _pids_of_node(node), "the aborted run's node should still be running"
    live = OwnBroker()
    try:
        # When leftovers are removed
        removed = remove_leftovers()
        # Then the aborted run's node is gone with its folder, and ours is untouched
        assert node in removed
        deadline = time.monotonic() + 10
        while _pids_of_node(node) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _pids_of_node(node)
        assert not Path(folder).exists()
        assert live.dir.exists() and live.node not in removed
    finally:
        live.remove()
