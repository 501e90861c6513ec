"""Tacit: a team's private context, learned into its own LoRA adapter."""
__version__ = "0.1.0"
