"""The official OpenAI Python SDK's chat.completions through subrelay, streaming and not."""

import sys

import openai


def main() -> None:
    base_url, key = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120)
    messages = [{"role": "user", "content": "Say hi"}]

    completion = client.chat.completions.create(model="deepseek-chat", messages=messages)
    assert completion.object == "chat.completion", completion
    text = completion.choices[0].message.content
    assert text, completion
    assert completion.usage is not None and completion.usage.completion_tokens == 7, completion.usage

    chunks = list(client.chat.completions.create(model="deepseek-chat", messages=messages, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text, (streamed, text)
    assert all(c.usage is None for c in chunks), "no usage chunk unless asked"

    chunks = list(
        client.chat.completions.create(
            model="deepseek-chat", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7, chunks[-1]
    print(f"openai chat sdk ok: {text!r}")


if __name__ == "__main__":
    main()
