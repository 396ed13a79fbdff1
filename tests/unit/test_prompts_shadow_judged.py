"""A shadow's answer is logged beside the served one (``<served id>-shadow``, ``path: shadow``,
``evaluation.shadow``) and both answers are scored by the judge (the local fake provider, OpenAI wire)."""

from __future__ import annotations

from app.evaluation.judge import Judge
from app.generation import GenerationChunk
from app.observability.request_log import RequestLogger, iter_records
from app.observability.settings import RequestLogConfig
from tests.unit.test_eval_online_canary import fake, judge_cfg  # noqa: F401  (the fake provider fixture)
from tests.unit.test_pipeline import drain
from tests.unit.test_prompts_stage import REF, ctx, setup


async def test_shadow_is_logged_beside_the_served_answer_and_both_are_judged(fake, tmp_path) -> None:  # noqa: F811
    async def generate(req):
        return GenerationChunk("the candidate's answer", "stop", 5, 4, "tiny-small")

    pipe, _, _, experiments, _, shadow = await setup(generate)
    shadow.request_log = RequestLogger(RequestLogConfig(path=str(tmp_path / "req.jsonl")))
    shadow.judge = Judge(judge_cfg(fake))
    fake.judge_score = 4  # -> 0.75 for both answers
    await experiments.start("acme", {"name": "cand", "prompt": "support",
                                     "variants": [{"name": "control", "weight": 1}],
                                     "shadow": {"version": 2, "sample_rate": 1.0}})
    served = ctx(REF)
    assert await drain(pipe, served) == "w w w "
    await shadow.wait()
    assert shadow.counts == {"ok": 1}
    assert shadow.request_log.flush()
    (row,) = [r for r in iter_records(str(tmp_path / "req.jsonl"), tenant="acme")]
    assert row.request_id == f"{served.request_id}-shadow" and row.path == "shadow"
    assert row.response == "the candidate's answer" and row.cache == "bypass"
    assert row.evaluation["shadow"] == {"of": served.request_id, "experiment": "cand", "candidate": "support:v2",
                                        "served_variant": "control", "score": 0.75, "served_score": 0.75}
    judged = [q["body"]["messages"][1]["content"] for q in fake.requests]
    assert len(judged) == 2 and any("the candidate's answer" in t for t in judged)
    assert any("w w w" in t for t in judged)  # the served answer, same rubric
    stats = (await experiments.status("acme", "cand"))["variants"]
    assert (stats["shadow"]["judged"], stats["shadow"]["judge_score_mean"]) == (1, 0.75)
    assert (stats["control"]["judged"], stats["control"]["judge_score_mean"]) == (1, 0.75)
    shadow.request_log.close()
