"""Resilience policy: circuit breakers, retries with backoff, provider wire clients, the fallback chain."""
