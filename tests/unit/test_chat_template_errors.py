"""A chat template that refuses the messages is a 400 for the client, never a pool failure (issue 14 #5)."""

from __future__ import annotations

import pytest
from jinja2 import TemplateSyntaxError

from app.engines.chat_prompt import render_chat
from app.errors import ChatTemplateError
from tests.unit.test_pipeline import Pools, chat, config, ctx_for, make

# Mistral / Llama-2 style: roles must alternate user/assistant (a common real-world refusal)
ALTERNATING = ("{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
               "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
               "{% endif %}{{ m['content'] }}{% endfor %}")
TWO_USERS = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from app.cli import ensure_tiny_models

    ensure_tiny_models()
    return AutoTokenizer.from_pretrained(".cache/models/tiny-small")


def test_a_refusing_template_is_a_400_naming_messages(tokenizer) -> None:
    tokenizer.chat_template = ALTERNATING
    assert render_chat(tokenizer, [{"role": "user", "content": "a"}], None) == "a"
    with pytest.raises(ChatTemplateError) as info:
        render_chat(tokenizer, TWO_USERS, None)
    body = info.value.to_dict()["error"]
    assert info.value.status_code == 400 and body["type"] == "invalid_request_error"
    assert body["param"] == "messages" and body["code"] == "chat_template_error"
    assert "Conversation roles must alternate" in body["message"]


def test_a_broken_template_stays_a_server_fault(tokenizer) -> None:
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }"  # syntax error: the deployment's fault
    with pytest.raises(TemplateSyntaxError):
        render_chat(tokenizer, TWO_USERS, None)


def _refusing_counters(pipe) -> None:
    stage = pipe.stage("tokens")
    for pool in stage.config.pools:
        stage.counters.get(pool.engine.model).tokenizer.chat_template = ALTERNATING


async def test_the_ingress_refuses_before_any_pool_or_limit() -> None:
    pipe, pools, counting = make()
    _refusing_counters(pipe)
    with pytest.raises(ChatTemplateError):
        await pipe.run(ctx_for(chat(messages=TWO_USERS)))
    assert pools.calls == [] and counting.seen == [(400, "chat_template_error", False)]


class RayTaskError(Exception):
    """What a Serve handle raises for a replica's exception: the original under ``cause``."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("replica error")
        self.cause = cause


class RefusingPools(Pools):
    """The engine's side: its template refused the messages (the ingress could only estimate tokens)."""

    async def generate(self, pool: str, req):
        self.calls.append((pool, req.sampling.max_tokens, req.sampling.temperature))
        raise RayTaskError(ChatTemplateError("The model's chat template cannot render these messages: roles",
                                             param="messages"))


async def test_the_pool_refusal_is_a_400_and_no_breaker_failure() -> None:
    cfg = config()
    for pool in cfg.pools:
        pool.engine.model = f"/nonexistent/{pool.name}"  # no local tokenizer: the ingress estimates
    pipe, pools, counting = make(cfg=cfg, pools=RefusingPools())
    breakers = pipe.stage("generate").breakers
    for _ in range(3):  # more than the breaker's threshold would need
        with pytest.raises(ChatTemplateError):
            await pipe.run(ctx_for(chat(messages=TWO_USERS)))
    assert [c[0] for c in pools.calls] == ["large"] * 3  # no other pool, no provider, no stale cache tried
    assert all(b.state == "closed" and not b._failures for b in breakers.breakers.values())
    assert counting.seen == [(400, "chat_template_error", False)] * 3
