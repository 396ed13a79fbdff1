"""loadtests/faults accounting: what counts as answered, lost, degraded, and the recovery time."""

from __future__ import annotations

from loadtests.faults import Outcome, _judge, summarize


def test_errors_in_openai_shape_are_answers_cut_streams_are_lost() -> None:
    assert _judge(200, 'data: {"choices": []}\n\ndata: [DONE]\n\n', True) == (True, "")
    assert _judge(200, 'data: {"choices": []}\n\n', True) == (False, "cut-stream")
    assert _judge(200, 'data: {"error": {"code": "upstream_error"}}\n\ndata: [DONE]', True) == (
        True, "stream:upstream_error")
    assert _judge(503, '{"error": {"type": "service_unavailable", "code": null}}', False) == (
        True, "service_unavailable")
    assert _judge(502, "<html>bad gateway</html>", False) == (False, "502:not-openai-json")


def test_summary_counts_and_recovery() -> None:
    outcomes = [Outcome(1, 200, "", "pool:small", True, 0.1), Outcome(6, 503, "service_unavailable", "", True, 0.2),
                Outcome(7, None, "ReadTimeout", "", False, 3.0), Outcome(9, 200, "", "providers", True, 0.5),
                Outcome(12, 200, "", "cache", True, 0.01), Outcome(30, 200, "", "pool:small", True, 0.1)]
    r = summarize(outcomes, 0, 40, fault_at=5)
    assert (r["sent"], r["answered"], r["lost"], r["ok_normal"]) == (6, 5, 1, 3)
    assert r["errors_by_code"] == {"503:service_unavailable": 1, "None:ReadTimeout": 1}
    assert r["recover_s"] == 5.0  # the last failed or degraded answer ended at 10 s (7 + 3), the fault was at 5


def test_breaker_states_are_read_from_the_gauge() -> None:
    from loadtests.faults.load import breaker_gauge

    text = ('# HELP llmgw_breaker_state x\nllmgw_breaker_state{target="pool:small"} 2.0\n'
            'llmgw_breaker_state{target="provider:fake-openai"} 1.0\nllmgw_requests_total{a="b"} 3.0\n')
    assert breaker_gauge(text) == {"pool:small": "open", "provider:fake-openai": "half_open"}
