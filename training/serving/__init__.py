"""Serving a team's model: the OpenAI-compatible request shapes, the embedded engine (one base
model, many LoRA adapters switched per request) and the vLLM backend (adapters loaded into a
vLLM server at runtime). The HTTP routes live in `ingestion.api.openai`."""
