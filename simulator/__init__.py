"""Faithful simulators of the far side (Ollama nodes, llama.cpp RPC servers).

They run on loopback, for tests, benchmarks and demos only: the dashboard itself
never imports them (an import-linter contract keeps it so).
"""
