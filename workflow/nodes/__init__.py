"""Executors of the built-in FlowGram node types."""
