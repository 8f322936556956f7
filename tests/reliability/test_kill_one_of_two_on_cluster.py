"""``kill_one_of_two`` with the workers' state on a real 3-master Redis Cluster: the write-behind
goes one MULTI/EXEC per partition (a partition's keys share a hash slot), the survivor loads
the victim's partitions from the cluster, and every order is predicted."""

from __future__ import annotations

import pytest

from stream_features.settings import Settings
from tests.reliability.services import Spawn
from tests.reliability.tally import Row
from tests.reliability.test_kill_one_of_two import kill_one_of_two

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.cluster]


def test_kill_one_of_two_on_cluster(served_on_cluster: Settings, spawn: Spawn, row: Row) -> None:
    kill_one_of_two(served_on_cluster, spawn, row)
