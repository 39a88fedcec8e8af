from django.dispatch import Signal

# Sent by the registry when an application registers or its metadata changes,
# with metadata= (the whole stored metadata) and now=.
application_reported = Signal()
