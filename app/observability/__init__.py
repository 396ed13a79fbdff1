"""Observability building blocks: tracing, metrics, cost, PII redaction, request log, canaries (no Ray imports)."""
