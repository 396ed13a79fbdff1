"""Structured output: which JSON Schemas guided decoding can enforce, tool-choice schemas, and the
gateway's own validation of the final text (draft 2020-12) with one re-ask. Pure Python, no Ray."""
