"""The official Anthropic Python SDK against subrelay: messages.create streaming and not, and
count_tokens. Run by tests/relay_anthropic.rs with the gateway URL and a client key."""

import sys

import anthropic


def main() -> None:
    base_url, key = sys.argv[1], sys.argv[2]
    client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=120)
    messages = [{"role": "user", "content": "Say hi"}]

    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=messages)
    assert message.type == "message", message
    assert message.content and message.content[0].type == "text", message
    assert message.usage.output_tokens == 7, message.usage

    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=messages) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == message.content[0].text, (text, message.content[0].text)
    assert final.usage.output_tokens == 7, final.usage

    count = client.messages.count_tokens(model="claude-sonnet-4-5", messages=messages)
    assert count.input_tokens > 0, count
    print(f"anthropic sdk ok: {text!r}")


if __name__ == "__main__":
    main()
