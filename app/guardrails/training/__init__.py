"""Training and evaluation of the guardrail classifiers (never imported on the request path)."""
