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
    pool_apps: bool = typer.Option(False, help="serve target: each pool its own Serve application, so a pool's "
                                   "engine change restarts that pool alone (docs/deploy.md section 9)."),
) -> None:
    """Render one deploy file (or, with --target all, rewrite every committed one)."""
    if target == "all":
        for path in render_all(out or ROOT, profiles):
            typer.echo(f"wrote {path}")
        return
    try:
        text = (_pool_apps_text(profile, profiles, http_port) if pool_apps and target == "serve"
                else render(target, profile, profiles, http_port=http_port))
        if pool_apps and target != "serve":
            raise ValueError("--pool-apps applies to --target serve only")
    except (KeyError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        typer.echo(f"wrote {out}")


def _pool_apps_text(profile: str, profiles: Path, http_port: int | None) -> str:
    from app.deploy.bind_args import split_pool_apps
    from app.deploy.profiles import load_profile
    from app.deploy.render import dump_yaml, serve_config

    data = split_pool_apps(serve_config(load_profile(profile, profiles), http_port))
    return (f"# GENERATED from cluster/profiles.yaml (profile {profile}) by `llmgw config render --target serve "
            f"--profile {profile} --pool-apps`: each pool is its own Serve application.\n" + dump_yaml(data))
