"""The product's one webhook sender (Standard Webhooks: signed, retried, deduplicated, SSRF-guarded)."""
