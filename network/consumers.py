from activity.consumers import EventStreamConsumer
from network.choices import BACKEND_STREAM, NODE_STREAM


class NodesConsumer(EventStreamConsumer):
    stream = NODE_STREAM


class BackendsConsumer(EventStreamConsumer):
    stream = BACKEND_STREAM
