"""Input and output guardrails (pure Python, no ray)."""
