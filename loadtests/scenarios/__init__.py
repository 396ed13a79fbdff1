"""Locust scenarios, one locustfile per module; shared user behaviour in ``common``."""
