"""The dispatcher's two choices: where definitions come from, where Jobs go; and what each one brings."""

from __future__ import annotations

import contextlib

from kubernetes import client

from dispatcher import assembling
from dispatcher.handling import PrintingSink
from dispatcher.jobs import JobCreator, OperariusStatusWriter
from dispatcher.silencing import SilenceKeeper
from dispatcher.storming import StormControl
from shared.settings import AlertmanagerSettings, BrokerSettings, DispatcherSettings, KubeSettings, OutcomeSettings, StormSettings
from tests.conftest import DEFINITIONS
from tests.kube_double import KubeDouble

BROKER = BrokerSettings(queue_prefix="oftest-assembling")


def sink(stack: contextlib.AsyncExitStack, api: client.ApiClient | None, dry_run: bool, kube: KubeSettings, track: bool = True) -> assembling.Sink:
    catalog = assembling.definition_source(stack, KubeSettings(definitions_path=str(DEFINITIONS)), None)
    return assembling.job_sink(stack, api, DispatcherSettings(dry_run=dry_run), kube, BROKER, OutcomeSettings(track=track), AlertmanagerSettings(), StormSettings(), catalog)


def test_the_cluster_is_used_only_when_it_is_the_definition_source_or_the_sink() -> None:
    from_files = KubeSettings(definitions_path=str(DEFINITIONS))
    assert not assembling.uses_cluster(from_files, DispatcherSettings(dry_run=True))
    assert assembling.uses_cluster(from_files, DispatcherSettings(dry_run=False))
    assert assembling.uses_cluster(KubeSettings(), DispatcherSettings(dry_run=True))


async def test_definitions_from_files_are_known_at_once() -> None:
    async with contextlib.AsyncExitStack() as stack:
        catalog = assembling.definition_source(stack, KubeSettings(definitions_path=str(DEFINITIONS)), None)
        assert catalog.synced and len(catalog) > 0


async def test_a_dry_run_prints_and_brings_nothing_else() -> None:
    # Given no cluster at all: a dry run needs none to print Jobs
    async with contextlib.AsyncExitStack() as stack:
        made = sink(stack, None, dry_run=True, kube=KubeSettings(definitions_path=str(DEFINITIONS)))
    # Then no status, no silence before a Job, no outcome leader; each line says it is a dry run
    assert isinstance(made.jobs, PrintingSink)
    assert (made.status, made.silences, made.tracking, made.storm) == (None, None, None, None)
    assert made.log_fields == {"dry_run": True}


async def test_the_cluster_sink_brings_status_silences_and_the_outcome_leader(api: client.ApiClient, kube_double: KubeDouble) -> None:
    kube = KubeSettings(definitions_namespace="default", job_namespace="default")
    async with contextlib.AsyncExitStack() as stack:
        made = sink(stack, api, dry_run=False, kube=kube)
        assert isinstance(made.jobs, JobCreator) and isinstance(made.status, OperariusStatusWriter) and isinstance(made.silences, SilenceKeeper)
        assert made.tracking is not None and made.tracking.lease == "default/oftest-assembling-outcomes"
        assert isinstance(made.storm, StormControl)
        assert made.log_fields == {}
        creator = made.jobs
    # and closing the stack closes what it started
    assert creator._pool._shutdown and made.status.pool._shutdown


async def test_without_tracking_or_operarii_in_the_cluster_the_sink_brings_neither(api: client.ApiClient, kube_double: KubeDouble) -> None:
    kube = KubeSettings(definitions_path=str(DEFINITIONS), definitions_namespace="default", job_namespace="default")
    async with contextlib.AsyncExitStack() as stack:
        made = sink(stack, api, dry_run=False, kube=kube, track=False)
    assert isinstance(made.jobs, JobCreator) and isinstance(made.silences, SilenceKeeper)
    assert (made.status, made.tracking) == (None, None)  # Operarii in files have no status to write
