"""Ray Serve deployments: thin classes wiring the pure-Python policy in ``app`` to Ray."""
