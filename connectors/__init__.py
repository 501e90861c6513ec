"""Connectors: pure readers of a source that yield records and return a checkpoint."""
