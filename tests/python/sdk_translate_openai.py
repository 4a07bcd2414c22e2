"""The official OpenAI Python SDK on a translating group whose account speaks another API
(issue 16): a tool round trip streaming and not, through Chat Completions (`chat`) or the
Responses API (`responses`). Run by tests/python_translate.rs with the gateway URL, a client
key, the model and the API."""

import json
import sys

import openai

CHAT_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]
RESPONSES_TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        "strict": False,
    }
]


def chat_round_trip(client: openai.OpenAI, model: str, stream: bool) -> str:
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    if stream:
        calls: dict = {}
        finish = None
        for chunk in client.chat.completions.create(
            model=model, messages=messages, tools=CHAT_TOOLS, stream=True
        ):
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            finish = choice.finish_reason or finish
            for t in choice.delta.tool_calls or []:
                call = calls.setdefault(t.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = t.id or call["id"]
                if t.function:
                    call["name"] += t.function.name or ""
                    call["arguments"] += t.function.arguments or ""
        assert finish == "tool_calls", finish
        tool_calls = [calls[i] for i in sorted(calls)]
    else:
        completion = client.chat.completions.create(model=model, messages=messages, tools=CHAT_TOOLS)
        assert completion.model == model, completion.model
        assert completion.choices[0].finish_reason == "tool_calls", completion
        tool_calls = [
            {"id": t.id, "name": t.function.name, "arguments": t.function.arguments}
            for t in completion.choices[0].message.tool_calls
        ]
    assert tool_calls and tool_calls[0]["name"] == "get_weather", tool_calls
    assert json.loads(tool_calls[0]["arguments"]) == {"query": "mock 0"}, tool_calls
    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": t["id"], "type": "function", "function": {"name": t["name"], "arguments": t["arguments"]}}
                for t in tool_calls
            ],
        }
    )
    for t in tool_calls:
        messages.append({"role": "tool", "tool_call_id": t["id"], "content": "sunny"})
    if stream:
        chunks = list(
            client.chat.completions.create(
                model=model,
                messages=messages,
                tools=CHAT_TOOLS,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7, chunks[-1]
    else:
        completion = client.chat.completions.create(model=model, messages=messages, tools=CHAT_TOOLS)
        assert completion.choices[0].finish_reason == "stop", completion
        text = completion.choices[0].message.content
        assert completion.usage.completion_tokens == 7, completion.usage
    assert text, "an answer after the tool result"
    return text


def responses_round_trip(client: openai.OpenAI, model: str, stream: bool) -> str:
    conversation: list = [{"role": "user", "content": "What is the weather in Paris?"}]
    if stream:
        with client.responses.stream(model=model, input=conversation, tools=RESPONSES_TOOLS) as s:
            first = s.get_final_response()
    else:
        first = client.responses.create(model=model, input=conversation, tools=RESPONSES_TOOLS)
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather", first
    assert json.loads(calls[0].arguments) == {"query": "mock 0"}, calls[0]
    for call in calls:
        conversation.append({"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments})
        conversation.append({"type": "function_call_output", "call_id": call.call_id, "output": "sunny"})
    if stream:
        with client.responses.stream(model=model, input=conversation, tools=RESPONSES_TOOLS) as s:
            second = s.get_final_response()
    else:
        second = client.responses.create(model=model, input=conversation, tools=RESPONSES_TOOLS)
    assert second.status == "completed", second
    assert second.usage.output_tokens == 7, second.usage
    assert second.output_text, second
    return second.output_text


def main() -> None:
    base_url, key, model, api = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120)
    trip = chat_round_trip if api == "chat" else responses_round_trip
    text = trip(client, model, stream=False)
    streamed = trip(client, model, stream=True)
    assert streamed == text, (streamed, text)
    print(f"openai sdk translated ({api}) ok: {text!r}")


if __name__ == "__main__":
    main()
