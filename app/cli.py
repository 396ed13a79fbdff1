"""`llmgw` command line: run the gateway locally, build tiny models, and the tool sub-commands."""

from __future__ import annotations

import importlib
import os
import signal
import tempfile
import threading
from pathlib import Path

import typer

from app.serve_env import apply_serve_env

apply_serve_env()  # before anything imports ray.serve: Serve reads its switches at import, in every process
cli = typer.Typer(help="llm-gateway: OpenAI-compatible LLM gateway on Ray Serve + vLLM.", no_args_is_help=True)
DEFAULT_CONFIG = "serve_config.cpu.yaml"
MODELS_DIR = Path(".cache/models")


@cli.command("tiny-model")
def tiny_model(
    out_dir: Path = typer.Argument(..., help="Folder to write the checkpoint to."),
    size: str = typer.Option("small", help="small | large"),
    seed: int = typer.Option(0),
    force: bool = typer.Option(False, help="Rebuild even if present."),
) -> None:
    """Build a tiny random-weight Llama checkpoint + locally trained BPE tokenizer (deterministic)."""
    from app.tiny_model import build_tiny_model

    path = build_tiny_model(out_dir, size=size, seed=seed, force=force)
    typer.echo(f"tiny {size} model ready at {path}")


def ensure_tiny_models(models_dir: Path = MODELS_DIR) -> None:
    from app.tiny_model import SIZES, build_tiny_model

    for size in SIZES:
        build_tiny_model(models_dir / f"tiny-{size}", size=size)


def start_gateway(
    config: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    num_cpus: int = 8,
    app_name: str = "llm-gateway",
    blocking: bool = False,
):
    """Start Ray locally, deploy the gateway from a Serve config file, return the handle."""
    import ray
    import yaml
    from ray import serve

    from app.deploy.bind_args import gateway_args
    from app.graph import build_app

    data = config if isinstance(config, dict) else yaml.safe_load(Path(config).read_text())
    app_args = gateway_args(data) if "applications" in data else data  # per-pool apps: run as one app here
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("RAY_worker_niceness", "0")  # Ray nices workers to 15; the engines must not starve
    from app.serve_env import gateway_env_while_starting

    apply_serve_env()  # HAProxy, throughput-optimised Serve, unless the environment says no
    from app.observability.metrics import prepare_multiprocess_dir

    # Every process Ray starts from here inherits the metrics dir: /metrics merges the replicas' samples.
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        prom_dir = prepare_multiprocess_dir(Path(tempfile.gettempdir()) / f"llmgw-prom-{os.getpid()}")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prom_dir)
    if not ray.is_initialized():
        from app.serve_env import private_haproxy_ports

        # Ray's processes take the int8 prefilter (unless the environment says no); this one keeps its own, and
        # this local Ray's HAProxy does not take another gateway's fixed ports.
        with private_haproxy_ports(), gateway_env_while_starting():
            ray.init(
                address="local",
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env={
                    "env_vars": {
                        "VLLM_CPU_KVCACHE_SPACE": os.environ["VLLM_CPU_KVCACHE_SPACE"],
                        "HF_HUB_OFFLINE": "1",
                        "TOKENIZERS_PARALLELISM": "false",
                    }
                },
            )
    serve.start(http_options={"host": host, "port": port})
    return serve.run(build_app(app_args), name=app_name, route_prefix="/", blocking=blocking)


@cli.command()
def run(
    config: Path = typer.Option(Path(DEFAULT_CONFIG), help="Serve config (YAML) with the gateway args."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    num_cpus: int = typer.Option(8, help="Logical CPUs Ray schedules with (not physical cores)."),
) -> None:
    """Run the gateway locally until Ctrl-C (builds the tiny models first if missing)."""
    ensure_tiny_models()
    local_admin_key()
    start_gateway(config, host=host, port=port, num_cpus=num_cpus)
    typer.echo(f"llm-gateway ready at http://{host}:{port}  (Ctrl-C to stop)")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    from ray import serve

    serve.shutdown()


def local_admin_key(env: str = "LLMGW_ADMIN_KEY", path: Path = Path(".cache/admin_key")) -> None:
    """Without $LLMGW_ADMIN_KEY: a local admin key in .cache/admin_key (0600), exported to the gateway."""
    if os.environ.get(env):
        return
    from app.policy.auth import ensure_local_admin_key

    key, created = ensure_local_admin_key(path)
    os.environ[env] = key  # the Ray processes started from here inherit it; `llmgw keys` reads the file
    typer.echo(f"admin key {'written to' if created else 'read from'} {path} (used by `llmgw keys`, `llmgw usage`)")


def _mount_optional(module: str, attr: str, name: str, help_text: str) -> None:
    """Sub-command groups live beside their policy code; mount those present."""
    try:
        sub = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return
    if isinstance(sub, typer.Typer):
        cli.add_typer(sub, name=name, help=help_text)
    else:
        cli.command(name, help=help_text)(sub)


_mount_optional("app.routing.cli", "router_app", "router", "Train and evaluate the routing classifier.")
_mount_optional("app.caching.cli", "cache_app", "cache", "Cache quality eval, stats, invalidation, flush.")
_mount_optional("app.policy.cli", "keys_app", "keys", "API keys: create, list, show, update, revoke, rotate.")
_mount_optional("app.policy.cli", "usage", "usage", "Usage per tenant and key: requests, tokens, spend, budget.")
_mount_optional("app.batch.cli", "batch_app", "batch", "Batches: submit JSONL (--wait), status, results, cancel.")
_mount_optional("app.prompts.cli", "prompts_app", "prompts", "Prompt registry: versions, labels, diff, experiments.")
_mount_optional("app.evaluation.cli", "eval_command", "eval", "Run a regression suite (checks + judge) on a prompt.")
_mount_optional("app.observability.cli", "canary_app", "canary", "Run canary requests against a gateway.")
_mount_optional("app.loadtest_cli", "loadtest_app", "loadtest", "Run a locust scenario headless.")
_mount_optional("quantize.cli", "quantize", "quantize", "AWQ 4-bit weight-only quantization of a local checkpoint.")
_mount_optional("app.deploy.cli", "config_app", "config", "Render Serve / KubeRay / launcher files (cluster/).")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
