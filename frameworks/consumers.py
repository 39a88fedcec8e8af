from activity.consumers import EventStreamConsumer
from frameworks.choices import FRAMEWORK_STREAM


class FrameworksConsumer(EventStreamConsumer):
    stream = FRAMEWORK_STREAM
