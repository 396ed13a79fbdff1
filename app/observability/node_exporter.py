"""Per-node metrics endpoint for multi-node clusters: ``python -m app.observability.node_exporter --port 9464``.

Serves the merged ``PROMETHEUS_MULTIPROC_DIR`` of this node, so Prometheus can scrape every node
directly instead of whichever ingress replica the Serve proxy happens to pick.
"""

from __future__ import annotations

import argparse
import time

from prometheus_client import CollectorRegistry, start_http_server

from app.observability.metrics import LiveMultiProcessCollector, multiprocess_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9464)
    parser.add_argument("--host", default="0.0.0.0")
    args = parser.parse_args()
    path = multiprocess_dir()
    if not path:
        raise SystemExit("PROMETHEUS_MULTIPROC_DIR is not set: nothing to export")
    registry = CollectorRegistry()
    LiveMultiProcessCollector(registry, path=path)
    start_http_server(args.port, addr=args.host, registry=registry)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
