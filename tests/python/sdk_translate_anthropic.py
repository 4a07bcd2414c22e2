"""The official Anthropic Python SDK on a translating group whose account speaks another API
(issue 16): a tool round trip streaming and not, and a 400 for content the upstream API cannot
take. Run by tests/python_translate.rs with the gateway URL, a client key and the model."""

import sys

import anthropic

TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]


def round_trip(client: anthropic.Anthropic, model: str, stream: bool) -> str:
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    if stream:
        with client.messages.stream(model=model, max_tokens=256, messages=messages, tools=TOOLS) as s:
            first = s.get_final_message()
    else:
        first = client.messages.create(model=model, max_tokens=256, messages=messages, tools=TOOLS)
    assert first.stop_reason == "tool_use", first
    assert first.model == model, first.model
    uses = [b for b in first.content if b.type == "tool_use"]
    assert uses and uses[0].name == "get_weather", first
    assert uses[0].input == {"query": "mock 0"}, uses[0].input
    messages.append({"role": "assistant", "content": [u.model_dump() for u in uses]})
    messages.append(
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": u.id, "content": "sunny"} for u in uses],
        }
    )
    if stream:
        with client.messages.stream(model=model, max_tokens=256, messages=messages, tools=TOOLS) as s:
            text = "".join(s.text_stream)
            second = s.get_final_message()
    else:
        second = client.messages.create(model=model, max_tokens=256, messages=messages, tools=TOOLS)
        text = second.content[0].text
    assert second.stop_reason == "end_turn", second
    assert text, second
    assert second.usage.output_tokens == 7, second.usage
    return text


def main() -> None:
    base_url, key, model = sys.argv[1], sys.argv[2], sys.argv[3]
    client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=120)
    text = round_trip(client, model, stream=False)
    streamed = round_trip(client, model, stream=True)
    assert streamed == text, (streamed, text)
    try:
        client.messages.create(
            model=model,
            max_tokens=64,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"mcp_servers": [{"type": "url", "url": "https://mcp.example", "name": "x"}]},
        )
        raise AssertionError("mcp_servers should be refused")
    except anthropic.BadRequestError as e:
        assert "mcp_servers" in str(e), e
    print(f"anthropic sdk translated ok: {text!r}")


if __name__ == "__main__":
    main()
