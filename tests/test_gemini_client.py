"""The shared Gemini client module's reading and pricing of responses, on the SDK's own types."""

import pytest
from google.genai import types

from ggtqc.plugins.gemini_client import Account, Prices, enum_name, parse_json_object, read_reply


def response(parts=None, finish="STOP", block=None, usage=None) -> types.GenerateContentResponse:
    candidates = None if parts is None else [types.Candidate(content=types.Content(role="model", parts=parts), finish_reason=finish)]
    feedback = types.GenerateContentResponsePromptFeedback(block_reason=block) if block else None
    meta = types.GenerateContentResponseUsageMetadata(**usage) if usage else None
    return types.GenerateContentResponse(candidates=candidates, prompt_feedback=feedback, usage_metadata=meta)


def test_thinking_tokens_are_priced_as_text_output_whatever_the_answer():
    usage = {"prompt_token_count": 1000, "candidates_token_count": 1290, "thoughts_token_count": 500}
    image = Account(images=1)
    image.add(response([], usage=usage), "image")
    assert image.usage() == {"input_tokens": 1000, "text_output_tokens": 0, "image_output_tokens": 1290, "thinking_tokens": 500}
    assert Prices(0.067, 0.5, 3.0).cost(image) == pytest.approx(0.067 + 1000 * 0.5e-6 + 500 * 3e-6)
    text = Account()
    text.add(response([], usage={**usage, "candidates_token_count": 200}), "text")
    assert text.billed_text_tokens == 700
    assert Prices(0.0, 0.5, 3.0).cost(text, 0.5) == pytest.approx(0.5 * (1000 * 0.5e-6 + 700 * 3e-6))
    unmetered = Account()
    unmetered.add(response([]), "text")  # no usage metadata: nothing counted, nothing raised
    assert unmetered.usage() == {"input_tokens": 0, "text_output_tokens": 0, "image_output_tokens": 0, "thinking_tokens": 0}


def test_read_reply_tells_a_refused_prompt_a_safety_stop_and_the_answer_apart():
    refused = read_reply(response(block="SAFETY"))
    assert refused.prompt_blocked == "SAFETY" and refused.parts == []
    stopped = read_reply(response([], finish="IMAGE_SAFETY"))
    assert stopped.prompt_blocked is None and stopped.output_blocked and stopped.finish == "IMAGE_SAFETY"
    answer = read_reply(response([types.Part(text="thinking...", thought=True), types.Part(text='{"a": 1}')]))
    assert not answer.output_blocked and answer.finish == "STOP" and answer.text() == '{"a": 1}'
    empty = read_reply(response(None))
    assert (empty.prompt_blocked, empty.finish, empty.parts) == (None, None, [])
    assert enum_name(types.FinishReason.SAFETY) == "SAFETY" and enum_name("X") == "X" and enum_name(None) is None


def test_parse_json_object_never_trusts_the_model():
    assert parse_json_object('{"a": 1}') == ({"a": 1}, None)
    assert parse_json_object("[1, 2]") == (None, "a JSON list, not an object")
    value, problem = parse_json_object("I think it is fine.")
    assert value is None and problem.startswith("not JSON: ")
