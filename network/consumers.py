from activity.choices import Stream
from activity.consumers import EventStreamConsumer


class NodesConsumer(EventStreamConsumer):
    stream = Stream.NODES


class BackendsConsumer(EventStreamConsumer):
    stream = Stream.BACKENDS
