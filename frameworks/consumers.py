from activity.choices import Stream
from activity.consumers import EventStreamConsumer


class FrameworksConsumer(EventStreamConsumer):
    stream = Stream.FRAMEWORKS
