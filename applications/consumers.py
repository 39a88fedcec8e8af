from activity.choices import Stream
from activity.consumers import EventStreamConsumer


class ApplicationsConsumer(EventStreamConsumer):
    stream = Stream.APPLICATIONS
