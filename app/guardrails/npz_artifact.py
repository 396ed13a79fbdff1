"""Reading and writing the guardrails' ``.npz`` artifacts: float32 arrays + a JSON header, no pickle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from app.mlp import ArtifactUnavailable


def read_npz(path: Path, names: tuple[str, ...], what: str,
             error: type[ArtifactUnavailable] = ArtifactUnavailable) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of the artifact at ``path``; ``error`` names ``what`` could not be read."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return json.loads(str(data["header"])), {k: data[k] for k in names}
    except (OSError, KeyError, ValueError) as exc:
        raise error(f"cannot read {what} artifact {path.name}: {exc}") from exc


def write_npz(path: Path, names: tuple[str, ...], arrays: dict[str, np.ndarray], header: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, header=np.asarray(json.dumps(header, sort_keys=True)),
                        **{k: np.asarray(arrays[k], dtype=np.float32) for k in names})
