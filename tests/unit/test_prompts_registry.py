"""Prompt registry semantics, in memory and on the real Redis (DB 9, unique prefix)."""

from __future__ import annotations

import pytest

from app.errors import ConflictError, InvalidRequestError, NotFoundError
from app.prompts.models import GLOBAL
from app.prompts.redis_store import RedisPromptStore
from app.prompts.registry import PromptRegistry
from app.prompts.settings import PromptsConfig
from app.prompts.store import MemoryPromptStore
from app.prompts.template import render
from tests.prompt_fixtures import REDIS_URL, redis_prefix, template


@pytest.fixture(params=["memory", "redis"])
async def registry(request):
    if request.param == "memory":
        yield PromptRegistry(MemoryPromptStore())
        return
    gen = redis_prefix()
    prefix = next(gen)
    store = RedisPromptStore.from_url(REDIS_URL, prefix)
    yield PromptRegistry(store, PromptsConfig(key_prefix=prefix))
    await store.aclose()
    next(gen, None)


async def test_versions_are_numbered_and_immutable(registry: PromptRegistry) -> None:
    v1 = await registry.create("acme", "support", template(), author="ann", note="first")
    v2 = await registry.create("acme", "support", template("Be brief, {{ customer }} / {{ product }}."),
                               author="bob", note="shorter")
    assert (v1.version, v2.version) == (1, 2)
    got = await registry.resolve("acme", "support", version=1)
    assert got.template.messages[0].content == "You help {{ customer }} with {{ product }}."
    assert (got.author, got.note) == ("ann", "first")
    latest = await registry.resolve("acme", "support", label="latest")
    assert latest.version == 2


async def test_labels_promote_and_rollback(registry: PromptRegistry) -> None:
    for i in range(3):
        await registry.create("acme", "support", template(f"v{i + 1} {{{{ customer }}}} {{{{ product }}}}"))
    await registry.promote("acme", "support", 1)
    await registry.promote("acme", "support", 2)
    await registry.promote("acme", "support", 3)
    assert (await registry.resolve("acme", "support")).version == 3  # default label: production
    assert (await registry.rollback("acme", "support"))["version"] == 2
    assert (await registry.resolve("acme", "support")).version == 2
    assert (await registry.rollback("acme", "support"))["version"] == 1  # further back, not a toggle
    with pytest.raises(ConflictError):
        await registry.rollback("acme", "support")
    assert (await registry.resolve("acme", "support")).version == 1


async def test_unknown_prompt_version_label_are_404_without_fallback(registry: PromptRegistry) -> None:
    await registry.create("acme", "support", template(), labels=["staging"])
    await registry.create(None, "support", template(), labels=["production"])  # global has production
    with pytest.raises(NotFoundError, match="Label 'production'"):  # acme's own prompt decides: no fallback
        await registry.resolve("acme", "support", label="production")
    with pytest.raises(NotFoundError, match="Version 9"):
        await registry.resolve("acme", "support", version=9)
    with pytest.raises(NotFoundError, match="Prompt 'nope'"):
        await registry.resolve("acme", "nope")
    assert (await registry.resolve("acme", "support", label="staging")).namespace == "acme"


async def test_tenants_are_isolated_and_global_is_shared(registry: PromptRegistry) -> None:
    await registry.create("acme", "secret", template(), labels=["production"])
    await registry.create(None, "shared", template(), labels=["production"])
    with pytest.raises(NotFoundError):
        await registry.resolve("globex", "secret")
    assert (await registry.resolve("globex", "shared")).namespace == GLOBAL
    assert (await registry.resolve("acme", "shared")).namespace == GLOBAL
    names = [p["name"] for p in await registry.list_prompts("globex")]
    assert names == ["shared"]
    with pytest.raises(NotFoundError):
        await registry.describe("globex", "secret")


async def test_labels_cannot_collide_with_versions(registry: PromptRegistry) -> None:
    await registry.create("acme", "support", template())
    for bad in ("2", "007", "latest", "", "-x"):
        with pytest.raises(InvalidRequestError):
            await registry.set_label("acme", "support", bad, 1)
    with pytest.raises(InvalidRequestError):
        await registry.set_label("acme", "support", "staging", "staging")  # a label is not a version
    with pytest.raises(NotFoundError):
        await registry.set_label("acme", "support", "staging", 5)


async def test_delete_labelled_version_is_409(registry: PromptRegistry) -> None:
    await registry.create("acme", "support", template())
    await registry.create("acme", "support", template(), labels=["staging", "production"])
    with pytest.raises(ConflictError, match="production, staging"):
        await registry.delete_version("acme", "support", 2)
    assert (await registry.delete_version("acme", "support", 1))["deleted"]
    with pytest.raises(NotFoundError):
        await registry.resolve("acme", "support", version=1)
    await registry.delete_label("acme", "support", "staging")
    await registry.promote("acme", "support", 2)
    with pytest.raises(ConflictError):
        await registry.delete_version("acme", "support", 2)  # production still points at it
    v3 = await registry.create("acme", "support", template())
    assert v3.version == 3  # numbers are never reused


async def test_rollback_skips_deleted_versions(registry: PromptRegistry) -> None:
    for _ in range(3):
        await registry.create("acme", "p", template())
    for v in (1, 2, 3):
        await registry.promote("acme", "p", v)
    await registry.delete_version("acme", "p", 2)
    assert (await registry.rollback("acme", "p"))["version"] == 1


async def test_diff_shows_the_change(registry: PromptRegistry) -> None:
    await registry.create("acme", "p", template())
    await registry.create("acme", "p", template("Be brief with {{ customer }} about {{ product }}."))
    diff = await registry.diff("acme", "p", 1, 2)
    assert diff.startswith("--- p@1\n+++ p@2\n")
    assert '-      "content": "You help {{ customer }} with {{ product }}."' in diff
    assert '+      "content": "Be brief with {{ customer }} about {{ product }}."' in diff


async def test_create_rejects_bad_templates(registry: PromptRegistry) -> None:
    with pytest.raises(InvalidRequestError, match="undeclared variables: product"):
        await registry.create("acme", "p", {"messages": [{"role": "user", "content": "{{ product }}"}]})
    with pytest.raises(InvalidRequestError, match="syntax error"):
        await registry.create("acme", "p", {"messages": [{"role": "user", "content": "{% if %}"}]})
    with pytest.raises(InvalidRequestError, match="messages"):
        await registry.create("acme", "p", {"messages": []})
    with pytest.raises(InvalidRequestError, match="prompt name"):
        await registry.create("acme", "a:b", template())


async def test_rendered_messages(registry: PromptRegistry) -> None:
    pv = await registry.create("acme", "p", template())
    msgs = render(pv.template, {"customer": "Ann", "product": "Ray"})
    assert msgs == [{"role": "system", "content": "You help Ann with Ray."},
                    {"role": "user", "content": "Tone: friendly"}]


async def test_experiment_stats_per_variant(registry: PromptRegistry) -> None:
    from app.prompts.experiment_store import Experiments, Outcome

    await registry.create("acme", "p", template(), labels=["production"])
    experiments = Experiments(registry)
    exp = await experiments.start("acme", {"name": "e", "prompt": "p", "variants": [
        {"name": "a", "weight": 1}, {"name": "b", "weight": 1}]})
    assert (await experiments.active("acme", "p")).name == "e"
    for ms, err in ((20, False), (40, False), (3000, True)):
        await experiments.record_outcome(exp, "a", Outcome(ms, 10, 5, 0.001, error=err, guardrail=err))
    await experiments.record_score(exp, "a", 0.5)
    await experiments.record_score(exp, "a", 1.0)
    a = (await experiments.status("acme", "e"))["variants"]["a"]
    assert a["requests"] == 3 and a["error_rate"] == a["guardrail_rate"] == round(1 / 3, 4)
    assert a["latency_ms_mean"] == 1020.0 and a["latency_p50"] == "<= 50 ms" and a["latency_p95"] == "<= 5000 ms"
    assert (a["prompt_tokens"], a["completion_tokens"], a["cost_usd"]) == (30, 15, 0.003)
    assert a["judge_score_mean"] == 0.75 and a["judged"] == 2
    await experiments.stop("acme", "e")
    assert await experiments.active("acme", "p") is None
