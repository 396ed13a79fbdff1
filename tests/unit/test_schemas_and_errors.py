"""Request validation, error shape and pickling across process boundaries."""

import pickle

import pytest
from pydantic import ValidationError

from app.errors import ContextLengthError, GatewayError, InvalidRequestError, ModelNotFoundError, find_gateway_error
from app.schemas import ChatCompletionRequest, CompletionRequest, validation_error


def test_chat_request_normalises_content_parts_and_stop() -> None:
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
            "stop": "x",
            "max_completion_tokens": 7,
        }
    )
    assert req.messages[0].text() == "ab"
    assert req.stop_list() == ["x"] and req.effective_max_tokens() == 7


def test_unknown_top_level_field_is_refused_by_name() -> None:
    with pytest.raises(GatewayError) as info:
        ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "a"}],
                                              "unknown_field": 1})
    assert info.value.param == "unknown_field" and info.value.code == "unknown_parameter"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": [], "max_tokens": 1}, "messages"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": 0}, "top_p"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a"] * 5}, "stop"),
    ],
)
def test_validation_error_names_the_field(body: dict, param: str) -> None:
    with pytest.raises((ValidationError, InvalidRequestError)) as info:  # the parse stage turns both into a 400
        ChatCompletionRequest.model_validate(body)
    err = validation_error(info.value) if isinstance(info.value, ValidationError) else info.value
    assert err.param == param and err.status_code == 400 and param in err.message


def test_completion_prompt_forms() -> None:
    assert CompletionRequest(model="m", prompt=["only"]).prompt_text() == "only"
    with pytest.raises(GatewayError):
        CompletionRequest(model="m", prompt=["a", "b"]).prompt_text()


def test_error_shape_and_pickle_roundtrip() -> None:
    err = ContextLengthError("too long", param="messages", headers={"x": "1"})
    body = err.to_dict()
    assert body == {
        "error": {
            "message": "too long",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is ContextLengthError and again.to_dict() == body and again.headers == {"x": "1"}


def test_find_gateway_error_in_cause_chain() -> None:
    inner = ModelNotFoundError("nope")
    try:
        try:
            raise inner
        except ModelNotFoundError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as outer:
        assert find_gateway_error(outer) is inner
    assert find_gateway_error(ValueError("plain")) is None
