"""Create Jobs as fast as the dispatcher's own API call can, and nothing else.

Run as ``python -m bench.create_load KUBECONFIG JOBS THREADS`` by the
benchmark, in a process of its own: the API double's ceiling is then
measured with the API double where the dispatcher benchmarks have it, and the
client in another process, as a dispatcher is.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

from bench.measure import _reference_job_body
from dispatcher.jobs import JobCreator, load_api_client
from shared.settings import KubeSettings


def main(kubeconfig: str, jobs: int, threads: int) -> None:
    os.environ["KUBECONFIG"] = kubeconfig
    api_client, _ = load_api_client(timeout_s=30, connections=threads)
    creator = JobCreator(api_client, KubeSettings(job_namespace="default"), concurrency=threads)
    body = _reference_job_body()

    def create(i: int) -> None:
        creator._create_once({**body, "metadata": {**body["metadata"], "name": f"ceiling-{i}"}})

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, range(jobs)))
    creator.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
