"""Output guardrails: validators, each entity found / not found, ignore lists, block, logging-only, streaming."""

from __future__ import annotations

import random

import pytest

from app.errors import GuardrailUnavailableError
from app.guardrails.entities import ENTITIES
from app.guardrails.output import OutputGuard, redact_for_log
from app.guardrails.settings import OutputGuardConfig
from app.guardrails.validators import card_ok, iban_ok, luhn_ok, phone_ok, ssn_ok

CARD = "4111 1111 1111 1111"
EMAIL = "jane.roe@example.org"
OPENAI = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
FOUND = {
    "EMAIL": f"write to {EMAIL} today",
    "CREDIT_CARD": f"card {CARD} expires soon",
    "IBAN": "pay to DE89 3704 0044 0532 0130 00 please",
    "US_SSN": "my SSN is 078-05-1120.",
    "PHONE": "call +1 415-555-0132 now",
    "OPENAI_KEY": f"key {OPENAI} works",
    "ANTHROPIC_KEY": "use sk-ant-api03-" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0" + " here",
    "AWS_ACCESS_KEY": "id AKIAIOSFODNN7EXAMPLE ok",
    "AWS_SECRET_KEY": "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
    "GITHUB_TOKEN": "token ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8" + " end",
    "GOOGLE_API_KEY": "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q" + " is the key",
    "SLACK_TOKEN": "slack xoxb-123456789012-abcdefABCDEF done",
    "SLACK_WEBHOOK": "post to https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX now",
    "STRIPE_KEY": "stripe sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc" + " set",
    "JWT": "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U ok",
    "BEARER_TOKEN": "Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345",
    "CREDENTIAL": "password = hunter2hunter2 (do not share)",
    "PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq83vEi==\n-----END RSA PRIVATE KEY-----\nafter",
}
NOT_FOUND = [
    "Order number 1234-5678-9012 ships on 2024-11-05.",
    "Tracking 1Z999AA10123456784 and invoice #100234567891 of 12 digits.",
    "We store logs in S3 and run on EKS with AWS Lambda and GPT-4.",
    "The years 2023 2024 2025 were good; version 1.2.3.4 is out.",
    "Call me maybe, my email is not here @ all.",
    "Numbers 10 20 30 40 50 60 70 80 and 3.14159265358979.",
    "The skeleton sk-ewed the results; task-force-level-approach-works.",
    "Card 4111 1111 1111 1112 fails Luhn, so does 1234567812345678.",
    "SSN-like 000-12-3456 and 666-12-3456 are invalid.",
    "IBAN-like DE00 1234 5678 9012 3456 78 fails mod-97.",
]


@pytest.fixture(scope="module")
def guard() -> OutputGuard:
    return OutputGuard(OutputGuardConfig())


def test_validators():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert card_ok("4111-1111-1111-1111") and card_ok("378282246310005")
    assert not card_ok("4111 1111-1111 1111")  # mixed separators
    assert not card_ok("1234567812345670")  # Luhn-valid, no card network prefix
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and iban_ok("DE89370400440532013000")
    assert not iban_ok("GB82 WEST 1234 5698 7654 33") and not iban_ok("DE89370400440532013001")
    assert ssn_ok("078-05-1120") and not ssn_ok("000-05-1120") and not ssn_ok("900-05-1120")
    assert not ssn_ok("078-00-1120") and not ssn_ok("078-05-0000")
    assert phone_ok("+44 20 7946 0958") and not phone_ok("2024-11-05") and not phone_ok("2023 2024 2025")


@pytest.mark.parametrize("entity", sorted(FOUND))
def test_each_entity_found(guard: OutputGuard, entity: str):
    text, decisions = guard.redact_text(FOUND[entity])
    assert f"[{entity}]" in text, text
    assert [d.rule.split(".", 1)[1] for d in decisions] == [entity]
    assert decisions[0].action == "redact" and decisions[0].stage == "output"


def test_every_entity_has_a_found_case():
    assert set(FOUND) == set(ENTITIES)


@pytest.mark.parametrize("text", NOT_FOUND)
def test_negatives_left_alone(guard: OutputGuard, text: str):
    assert guard.redact_text(text) == (text, [])


def test_secret_values_gone_and_keep_prefix(guard: OutputGuard):
    text, _ = guard.redact_text(FOUND["CREDENTIAL"] + " " + FOUND["AWS_SECRET_KEY"])
    assert "hunter2" not in text and "wJalrXUtnFEMI" not in text
    assert text.startswith("password = [CREDENTIAL]") and "aws_secret_access_key = [AWS_SECRET_KEY]" in text
    key_block, _ = guard.redact_text(FOUND["PRIVATE_KEY"])
    assert key_block == "[PRIVATE_KEY]\nafter"
    unterminated, _ = guard.redact_text("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg")
    assert unterminated == "[PRIVATE_KEY]"


def test_ignore_list_per_entity():
    cfg = OutputGuardConfig.model_validate({"pii": {"ignore": {"EMAIL": ["Support@Example.com"]}}})
    g = OutputGuard(cfg)
    text, decisions = g.redact_text("write support@example.com or bob@corp.example")
    assert text == "write support@example.com or [EMAIL]"
    assert decisions[0].count == 1
    with pytest.raises(ValueError):
        OutputGuardConfig.model_validate({"pii": {"ignore": {"LOCATION": ["S3"]}}})


def test_block_and_allow_actions():
    block = OutputGuard(OutputGuardConfig.model_validate({"secrets": {"action": "block"}}))
    result = block.check(f"here: {OPENAI} and {EMAIL}")
    assert result.blocked and result.text == "" and any(d.action == "block" for d in result.decisions)
    assert block.check(f"only pii {EMAIL}").text == "only pii [EMAIL]"  # PII still redacts
    allow = OutputGuard(OutputGuardConfig.model_validate({"pii": {"action": "allow"}, "secrets": {"enabled": False}}))
    assert allow.redact_text(f"{EMAIL} {OPENAI}") == (f"{EMAIL} {OPENAI}", [])


def test_logging_only_never_changes_the_answer():
    g = OutputGuard(OutputGuardConfig.model_validate({"logging_only": True, "secrets": {"action": "block"}}))
    text = f"mail {EMAIL} key {OPENAI}"
    result = g.check(text)
    assert result.text == text and not result.blocked
    assert {d.action for d in result.decisions} == {"log"}
    stream = g.stream()
    assert "".join(stream.feed(text[i:i + 5]) for i in range(0, len(text), 5)) + stream.flush() == text
    assert not stream.blocked and {d.rule for d in stream.decisions} == {"pii.EMAIL", "secret.OPENAI_KEY"}
    assert redact_for_log(text) == "mail [EMAIL] key [OPENAI_KEY]"


def _stream(guard: OutputGuard, text: str, rng: random.Random, max_chunk: int) -> tuple[str, int, object]:
    s = guard.stream()
    out, i, held = [], 0, 0
    while i < len(text):
        k = rng.randint(1, max_chunk)
        out.append(s.feed(text[i:i + k]))
        held = max(held, s.held)
        i += k
    out.append(s.flush())
    return "".join(out), held, s


@pytest.mark.parametrize("secret", [CARD, EMAIL, OPENAI])
def test_stream_split_at_random_boundaries_never_leaks(guard: OutputGuard, secret: str):
    text = f"Sure! The value you asked for is {secret}, keep it safe. Anything else about {secret}?"
    expected, _ = guard.redact_text(text)
    assert secret not in expected
    rng = random.Random(hash(secret) & 0xFFFF)
    for _ in range(1000):
        out, held, stream = _stream(guard, text, rng, max_chunk=rng.choice([1, 3, 8, 24]))
        assert out == expected
        assert held <= stream.hold_limit
    assert stream.hold_limit == max(ENTITIES[n].max_len for n in guard.actions) + 1


def test_stream_matches_unary_on_mixed_text(guard: OutputGuard):
    text = " ".join(FOUND.values()) + " " + " ".join(NOT_FOUND)
    expected, decisions = guard.redact_text(text)
    rng = random.Random(7)
    for _ in range(200):
        out, held, stream = _stream(guard, text, rng, max_chunk=16)
        assert out == expected and held <= stream.hold_limit
        assert sorted((d.rule, d.count) for d in stream.decisions) == sorted((d.rule, d.count) for d in decisions)


def test_stream_holds_back_only_the_undecided_tail(guard: OutputGuard):
    s = guard.stream()
    assert s.feed("Hello there, how") == "Hello there, "  # "how" could start an email address
    assert s.feed(" are you") == "how are "
    assert s.flush() == "you"


def test_stream_block_stops_before_the_secret():
    g = OutputGuard(OutputGuardConfig.model_validate({"secrets": {"action": "block"}}))
    s = g.stream()
    text = f"The key is {OPENAI} and more text after it."
    out = "".join(s.feed(text[i:i + 4]) for i in range(0, len(text), 4)) + s.flush()
    assert s.blocked and out == "The key is " and s.feed("more") == ""


def test_scanner_error_fails_closed_unless_open(monkeypatch: pytest.MonkeyPatch):
    closed = OutputGuard(OutputGuardConfig())
    opened = OutputGuard(OutputGuardConfig(fail_mode="open"))

    def boom(*args, **kwargs):
        raise RuntimeError("scanner bug")

    for g in (closed, opened):
        monkeypatch.setattr(g.scanner, "scan", boom)
    with pytest.raises(GuardrailUnavailableError) as err:
        closed.check(f"mail {EMAIL}")
    assert err.value.status_code == 503 and err.value.code == "guardrail_unavailable"
    assert "Retry-After" in err.value.headers
    with pytest.raises(GuardrailUnavailableError):
        closed.stream().feed(f"mail {EMAIL}")
    result = opened.check(f"mail {EMAIL}")
    assert result.text == f"mail {EMAIL}" and result.decisions[0].reason == "guardrail_error"
    stream = opened.stream()
    assert stream.feed("mail ") == "mail " and stream.feed(EMAIL) == EMAIL and stream.flush() == ""


def test_entity_spans_are_bounded():
    for entity in ENTITIES.values():
        assert 0 < entity.max_len < 400, entity.name


async def test_redact_chunks_over_generation_chunks():
    from app.generation import GenerationChunk
    from app.guardrails.chunks import redact_chunks

    async def chunks(text: str, size: int):
        parts = [text[i:i + size] for i in range(0, len(text), size)]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            yield GenerationChunk(text=part, finish_reason="stop" if last else None, completion_tokens=i + 1)

    text = f"Write to {EMAIL} or use {OPENAI}"
    redact = OutputGuard(OutputGuardConfig())
    out = [c async for c in redact_chunks(redact.stream(), chunks(text, 3))]
    assert "".join(c.text for c in out) == redact.redact_text(text)[0]
    assert out[-1].finish_reason == "stop" and out[-1].completion_tokens == len(out)
    block = OutputGuard(OutputGuardConfig.model_validate({"pii": {"action": "block"}}))
    out = [c async for c in redact_chunks(block.stream(), chunks(text, 3))]
    assert "".join(c.text for c in out) == "Write to " and out[-1].finish_reason == "content_filter"
    tail = [c async for c in redact_chunks(block.stream(), chunks("mail me: " + EMAIL, 64))]
    assert tail[-1].finish_reason == "content_filter" and EMAIL not in "".join(c.text for c in tail)
