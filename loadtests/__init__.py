"""Load tests (locust) and side-by-side benchmarks."""
