"""Every change to the known fleet of nodes and backends, by job.

- lifecycle: which nodes and backends are watched (configured, reported, scanned,
  added and removed through the API);
- recording: what probes found, stored with the events it makes;
- rounds: the bookkeeping of probe cycles and sharded rounds;
- events: the shape and words of every event the network makes.

The status rules these apply are in network.status (no I/O), the shapes clients
see in network.api.serializers.
"""
