"""One module per fault phase: each has ``async def run(run: loadtests.faults.runner.Run) -> None``."""
