"""SIGKILL one master of a 3-master Redis Cluster mid-stream, then start it again.

The cluster has no replicas, so what the worker does is stop and resume: a batch whose write
touches the dead master's slots fails (each partition is one MULTI/EXEC in its own slot, and
the shared keys live in one slot too), nothing of it is produced or committed, and the worker
retries it with backoff from the committed offsets. A batch whose keys all live on the other
masters may still land and be predicted meanwhile (counted in the row's notes). When the node
is back (same port and directory: its slots and AOF), every order is predicted once at least,
and the windows in the cluster equal the in-memory replay: as in ``redis_restart``, every
acknowledged write is in the AOF (``appendfsync always``), and a batch applied twice is
counted once by dedup.
"""

from __future__ import annotations

import pytest

from stream_features.local_cluster import LocalCluster
from stream_features.settings import Settings
from tests.reliability.services import FaultStack, Spawn
from tests.reliability.tally import Row
from tests.reliability.test_redis_restart import Outage, redis_restart

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.cluster]

VICTIM = 1  # a master: the cluster has none other for its slots


def test_cluster_master_kill(
    served_on_cluster: Settings,
    scenario_cluster: LocalCluster,
    faults: FaultStack,
    spawn: Spawn,
    row: Row,
) -> None:
    for node in scenario_cluster.nodes:  # see redis_restart: the exact check needs it
        with node.client() as client:
            client.config_set("appendfsync", "always")
    url = scenario_cluster.url
    redis_restart(
        served_on_cluster,
        spawn,
        row,
        Outage(
            lambda: scenario_cluster.kill(VICTIM),
            lambda: scenario_cluster.restart(VICTIM),
            predicts_meanwhile=True,
        ),
        lambda events: faults.assert_windows_are_replay(events, served_on_cluster.lateness_s, url),
    )
