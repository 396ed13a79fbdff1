"""Evaluation: deterministic checks, LLM-as-judge, regression suites and online scoring."""
