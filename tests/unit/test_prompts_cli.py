"""`llmgw prompts ...` through the admin dispatcher against the real Redis (DB 9, unique prefix)."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from app.api.prompts import PromptAdmin, dispatch
from app.cli import cli
from app.errors import InvalidRequestError, MethodNotAllowedError, NotFoundError
from app.prompts.experiment_store import Experiments
from app.prompts.registry import PromptRegistry
from app.prompts.store import MemoryPromptStore
from tests.prompt_fixtures import REDIS_URL, redis_prefix, template

runner = CliRunner()


@pytest.fixture()
def prefix():
    yield from redis_prefix()


def run(prefix: str, *args: str):
    result = runner.invoke(cli, ["prompts", *args, "--redis-url", REDIS_URL, "--prefix", prefix])
    return result


def test_cli_lifecycle(prefix: str, tmp_path) -> None:
    v1, v2 = tmp_path / "v1.yaml", tmp_path / "v2.yaml"
    v1.write_text(yaml.safe_dump(template()))
    v2.write_text(yaml.safe_dump(template("Be brief with {{ customer }} about {{ product }}.")))
    r = run(prefix, "create", "support", "--file", str(v1), "--tenant", "acme", "--note", "first", "--label",
            "production")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["version"] == 1
    assert run(prefix, "create", "support", "--file", str(v2), "--tenant", "acme").exit_code == 0
    r = run(prefix, "diff", "support", "1", "2", "--tenant", "acme")
    assert r.exit_code == 0 and "Be brief with" in r.output and "+++ support@2" in r.output
    assert run(prefix, "promote", "support", "2", "--tenant", "acme").exit_code == 0
    r = run(prefix, "show", "support", "--tenant", "acme", "--json")
    assert json.loads(r.output)["labels"] == {"production": 2}
    r = run(prefix, "delete", "support", "2", "--tenant", "acme")
    assert r.exit_code == 1 and "409" not in r.output and "is labelled production" in r.output
    r = run(prefix, "label", "support", "42", "1", "--tenant", "acme")
    assert r.exit_code == 1 and "collide with version numbers" in r.output
    assert run(prefix, "rollback", "support", "--tenant", "acme").exit_code == 0
    r = run(prefix, "render", "support", "--tenant", "acme", "--var", "customer=Ann", "--var", "product=Ray")
    assert json.loads(r.output)["prompt"] == "support@1"
    r = run(prefix, "list", "--tenant", "globex", "--json")
    assert json.loads(r.output)["data"] == []  # another tenant sees nothing
    r = run(prefix, "list", "--tenant", "acme")
    assert r.exit_code == 0 and "production→1" in r.output
    assert run(prefix, "list").exit_code != 0  # the namespace must be named


def test_cli_experiment(prefix: str, tmp_path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(yaml.safe_dump(template()))
    for _ in range(2):
        assert run(prefix, "create", "support", "--file", str(f), "--global", "--label", "production").exit_code == 0
    r = run(prefix, "experiment", "start", "--name", "ab1", "--prompt", "support", "--variant", "a:50",
            "--variant", "b:50:version=1", "--shadow", "version=1,sample=0.1,budget=2", "--global")
    assert r.exit_code == 0, r.output
    r = run(prefix, "experiment", "start", "--name", "ab2", "--prompt", "support", "--variant", "a:1", "--global")
    assert r.exit_code == 1 and "already has a running experiment" in r.output
    r = run(prefix, "experiment", "status", "ab1", "--global")
    assert r.exit_code == 0 and "shadow spent 0.0000 of 2.00 USD" in r.output
    r = run(prefix, "experiment", "status", "ab1", "--global", "--json")
    assert sorted(json.loads(r.output)["variants"]) == ["a", "b", "shadow"]
    assert run(prefix, "experiment", "stop", "ab1", "--global").exit_code == 0
    r = run(prefix, "experiment", "status", "ab1", "--global", "--json")
    assert json.loads(r.output)["experiment"]["status"] == "stopped"


async def test_dispatch_paths() -> None:
    registry = PromptRegistry(MemoryPromptStore())
    admin = PromptAdmin(registry, Experiments(registry))
    body = {"tenant": "acme", "name": "p", "template": template()}
    assert (await dispatch(admin, "POST", "/admin/prompts", {}, body))["version"] == 1
    with pytest.raises(MethodNotAllowedError):
        await dispatch(admin, "PUT", "/admin/prompts", {}, body)
    with pytest.raises(NotFoundError):
        await dispatch(admin, "GET", "/admin/prompts/p/nothing", {"tenant": "acme"}, None)
    with pytest.raises(NotFoundError):
        await dispatch(None, "GET", "/admin/prompts", {}, None)
    with pytest.raises(InvalidRequestError, match="tenant"):
        await dispatch(admin, "GET", "/admin/prompts", {}, None)
    shown = await dispatch(admin, "GET", "/admin/prompts/p", {"tenant": "acme", "version": "1"}, None)
    assert shown["selected"]["template"]["messages"][0]["role"] == "system"


async def test_delete_refused_while_a_running_experiment_serves_it() -> None:
    """A variant's or the shadow's version, or a label the experiment uses, cannot be deleted while it runs
    (its share of traffic would turn into 404s); once stopped, the delete goes through."""
    from app.errors import ConflictError

    registry = PromptRegistry(MemoryPromptStore())
    admin = PromptAdmin(registry, Experiments(registry))
    for _ in range(4):
        await dispatch(admin, "POST", "/admin/prompts", {}, {"tenant": "acme", "name": "p", "template": template()})
    q = {"tenant": "acme"}
    await dispatch(admin, "PUT", "/admin/prompts/p/labels/production", {}, {**q, "version": 1})
    await dispatch(admin, "PUT", "/admin/prompts/p/labels/brief", {}, {**q, "version": 4})
    await dispatch(admin, "POST", "/admin/experiments", {}, {**q, "name": "e", "prompt": "p", "variants": [
        {"name": "a", "weight": 1}, {"name": "b", "weight": 1, "version": 2},
        {"name": "c", "weight": 1, "label": "brief"}], "shadow": {"version": 3, "sample_rate": 0.1}})
    for path in ("/admin/prompts/p/versions/2", "/admin/prompts/p/versions/3", "/admin/prompts/p/labels/brief",
                 "/admin/prompts/p/labels/production"):
        with pytest.raises(ConflictError, match="running experiment 'e'"):
            await dispatch(admin, "DELETE", path, q, None)
    assert (await registry.get_version("acme", "p", 2)).version == 2  # nothing was deleted
    await dispatch(admin, "POST", "/admin/experiments/e/stop", {}, q)
    assert (await dispatch(admin, "DELETE", "/admin/prompts/p/versions/2", q, None))["deleted"] is True
    assert (await dispatch(admin, "DELETE", "/admin/prompts/p/labels/brief", q, None))["deleted"] is True
