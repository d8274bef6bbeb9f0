"""Partition assignment for the workers' consumer group.

One partition number holds all of a customer's events on every input topic, so a worker is
given whole partition numbers: partition p of every input topic. The assignment is sticky
(a worker keeps the partitions it owns, as far as a fair share allows, so a new worker takes
over only what it must and the others keep their state warm) and balanced (shares differ by
at most one). Each member tells the group the URL of its web server; the leader sends the
whole map back with every assignment, so any worker can forward a request for a customer to
the worker that owns the customer's partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import orjson
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)


def balance(partitions: int, owned: Mapping[str, list[int]]) -> dict[str, list[int]]:
    """Give every partition to one member: members keep what they own up to a fair share,
    the rest goes to the members with the fewest. Deterministic for the same input."""
    members = sorted(owned)
    base, extra = divmod(partitions, len(members))
    # The members that already own the most get the extra partitions, so fewer move.
    by_claim = sorted(members, key=lambda m: (-len(owned[m]), m))
    quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(by_claim)}
    result: dict[str, list[int]] = {m: [] for m in members}
    taken: set[int] = set()
    for member in by_claim:
        for partition in sorted(owned[member]):
            if len(result[member]) < quota[member] and 0 <= partition < partitions and (
                    partition not in taken):
                result[member].append(partition)
                taken.add(partition)
    free = [p for p in range(partitions) if p not in taken]
    for member in by_claim:
        while len(result[member]) < quota[member]:
            result[member].append(free.pop(0))
    return {m: sorted(ps) for m, ps in result.items()}


class CopartitionedAssignor(AbstractPartitionAssignor):
    """Assigns partition numbers across all subscribed topics; see the module docstring."""

    name = "valuestream-copartitioned"
    version = 0

    def __init__(self, url: str) -> None:
        self.url = url
        self.owned: list[int] = []  # partitions of the last assignment
        self.owners: dict[int, str] = {}  # partition -> URL of the worker owning it

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        user_data = orjson.dumps({"url": self.url, "owned": self.owned})
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), user_data)

    def assign(self, cluster: ClusterMetadata,
               members: Mapping[str, ConsumerProtocolMemberMetadata]
               ) -> dict[str, ConsumerProtocolMemberAssignment]:
        topics = sorted({t for m in members.values() for t in m.subscription})
        counts = {len(cluster.partitions_for_topic(t) or ()) for t in topics}
        partitions = min(counts) if counts else 0  # the worker refuses unequal counts
        claims, urls = {}, {}
        for member_id, metadata in members.items():
            data = orjson.loads(metadata.user_data) if metadata.user_data else {}
            claims[member_id] = list(data.get("owned", []))
            urls[member_id] = data.get("url", "")
        plan = balance(partitions, claims)
        owners = {p: urls[m] for m, ps in plan.items() for p in ps}
        user_data = orjson.dumps({"owners": {str(p): u for p, u in sorted(owners.items())}})
        return {
            member_id: ConsumerProtocolMemberAssignment(
                self.version, [(t, plan[member_id]) for t in topics], user_data)
            for member_id in members
        }

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        data = orjson.loads(assignment.user_data) if assignment.user_data else {}
        self.owners = {int(p): url for p, url in data.get("owners", {}).items()}
        self.owned = sorted({p for _, ps in assignment.assignment for p in ps})
