from activity.consumers import EventStreamConsumer
from applications.choices import APPLICATION_STREAM


class ApplicationsConsumer(EventStreamConsumer):
    stream = APPLICATION_STREAM
