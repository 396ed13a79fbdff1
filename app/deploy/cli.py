"""`llmgw config render`: write the Serve / KubeRay / launcher files from cluster/profiles.yaml."""

from __future__ import annotations

from pathlib import Path

import typer

from app.deploy.profiles import PROFILES_PATH, ROOT
from app.deploy.render import TARGET_NAMES, render, render_all

config_app = typer.Typer(help="Render deploy files from cluster/profiles.yaml.", no_args_is_help=True)


@config_app.command("render")
def render_cmd(
    target: str = typer.Option(..., help=f"{' | '.join(TARGET_NAMES)} | all (all: every committed file)"),
    profile: str = typer.Option("gpu", help="gpu | cpu (a profile in the profiles file)"),
    out: Path | None = typer.Option(None, help="File to write (default: stdout); for --target all the root dir."),
    http_port: int | None = typer.Option(None, help="Override http_options.port (serve target)."),
    profiles: Path = typer.Option(PROFILES_PATH, help="The profiles file."),
    one_app: bool = typer.Option(False, help="serve target: everything in one Serve application (default: each "
                                 "pool its own: a pool's engine change restarts that pool alone; docs/deploy.md 9)."),
) -> None:
    """Render one deploy file (or, with --target all, rewrite every committed one)."""
    if target == "all":
        for path in render_all(out or ROOT, profiles):
            typer.echo(f"wrote {path}")
        return
    try:
        text = render(target, profile, profiles, http_port=http_port, one_app=one_app)
    except (KeyError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        typer.echo(f"wrote {out}")
