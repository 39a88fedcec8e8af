"""The gateway: Ollama's and the OpenAI-compatible API in front of the whole fleet.

Clients talk to it as to one Ollama server (under /ollama/ on the dashboard's port,
or at the root of a port of its own); each request goes to a good node for its
model (routing.py), waits for a free slot of that node (limits.py), is forwarded
and its reply relayed as it arrives (proxy.py), and becomes a request record,
model activity and metrics (records.py). docs/ARCHITECTURE.md has the picture.
"""
