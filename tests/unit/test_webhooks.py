"""The webhook sender against a real local HTTP server: signatures, retries, dedup, SSRF guard."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.policy.settings import WebhookSettings
from app.webhooks.sender import WebhookSender, sign, verify
from app.webhooks.ssrf import WebhookTargetRefused, check_target
from tests.unit.policy_redis import policy_redis_fixture  # noqa: F401  (the redis_prefix fixture)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver:
    """Answers ``fail_first`` requests with 503, then 200; records what it got."""

    def __init__(self, fail_first: int = 0, status: int = 200) -> None:
        self.fail_first, self.status, self.got = fail_first, status, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                code = 503 if len(outer.got) <= outer.fail_first else outer.status
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(**kw) -> Receiver:
        made.append(Receiver(**kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


def sender(**kw) -> WebhookSender:
    return WebhookSender(WebhookSettings(allow_hosts=["127.0.0.1"], backoff_base_s=0.01, backoff_max_s=0.05,
                                         max_attempts=4, **kw))


def test_signature_matches_the_standard_webhooks_reference_vector() -> None:
    # From the Standard Webhooks spec's test vectors (svix): same secret, id, timestamp and payload.
    body = b'{"test": 2432232314}'
    assert sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")


async def test_retries_with_backoff_then_delivers_signed_once(receiver) -> None:
    r = receiver(fail_first=2)
    s = sender()
    d = await s.send(r.url, "budget.threshold_crossed", {"tenant": "acme", "threshold": 0.8},
                     event_id="evt_1", secret=SECRET)
    assert (d.status, d.attempts, d.status_code) == ("delivered", 3, 200)
    assert len(r.got) == 3 and len({h["webhook-id"] for h, _ in r.got}) == 1
    headers, body = r.got[-1]
    assert verify(SECRET, headers, body)
    assert json.loads(body)["type"] == "budget.threshold_crossed" and json.loads(body)["data"]["tenant"] == "acme"
    assert not verify("whsec_" + "A" * 32, headers, body)
    again = await s.send(r.url, "budget.threshold_crossed", {}, event_id="evt_1", secret=SECRET)
    assert again.status == "duplicate" and len(r.got) == 3  # dedup by event id


async def test_gives_up_after_max_attempts_and_does_not_retry_a_4xx(receiver) -> None:
    down = receiver(fail_first=100)
    d = await sender().send(down.url, "x", {}, secret=SECRET)
    assert (d.status, d.attempts, d.status_code) == ("failed", 4, 503) and len(down.got) == 4
    gone = receiver(status=410)
    d = await sender().send(gone.url, "x", {}, secret=SECRET)
    assert (d.status, d.attempts, d.status_code) == ("failed", 1, 410)
    retry_later = await sender().send(down.url, "x", {}, event_id=d.event_id, secret=SECRET)
    assert retry_later.status == "failed"  # a failed event may be sent again (not deduplicated)


async def test_dedup_across_replicas_with_redis(receiver, redis_prefix) -> None:
    client, prefix = redis_prefix
    r = receiver()
    a = WebhookSender(WebhookSettings(allow_hosts=["127.0.0.1"]), redis=client, redis_prefix=prefix)
    b = WebhookSender(WebhookSettings(allow_hosts=["127.0.0.1"]), redis=client, redis_prefix=prefix)
    assert (await a.send(r.url, "x", {}, event_id="evt_shared", secret=SECRET)).status == "delivered"
    assert (await b.send(r.url, "x", {}, event_id="evt_shared", secret=SECRET)).status == "duplicate"
    assert len(r.got) == 1


async def fixed(*addresses: str):
    async def resolver(host: str, port: int) -> list[str]:
        return list(addresses)
    return resolver


@pytest.mark.parametrize("url,addresses", [
    ("http://127.0.0.1:6379/", []), ("http://localhost/", ["127.0.0.1"]), ("http://[::1]/", []),
    ("http://10.1.2.3/", []), ("http://169.254.169.254/latest/meta-data", []), ("http://0.0.0.0/", []),
    ("http://hooks.example.com/", ["93.184.216.34", "192.168.1.5"]),  # one private address is enough
    ("http://[::ffff:127.0.0.1]/", []), ("ftp://example.com/", []), ("http://rebind.example/", ["100.64.0.1"]),
])
async def test_ssrf_guard_refuses_non_public_targets(url: str, addresses: list[str], receiver) -> None:
    with pytest.raises(WebhookTargetRefused):
        await check_target(url, (), await fixed(*addresses))
    assert (await WebhookSender(resolver=await fixed(*addresses)).send(url, "x", {})).status == "refused"


async def test_allow_list_and_public_targets_pass() -> None:
    public = await check_target("https://hooks.example.com/x", (), await fixed("93.184.216.34"))
    assert (public.host, public.port, public.address) == ("hooks.example.com", 443, "93.184.216.34")
    internal = await check_target("http://hooks.internal/x", ["10.0.0.0/8"], await fixed("10.2.3.4"))
    assert internal.address == "10.2.3.4"
    assert (await check_target("http://127.0.0.1:9/x", ["127.0.0.1"])).address == "127.0.0.1"
