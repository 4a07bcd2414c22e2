"""The official OpenAI Python SDK against subrelay: responses.create, streaming and not.

Run by tests/python_sdk.rs with the gateway's base URL and a client key; exits non-zero with a
message on the first thing that is not as a real client expects.
"""

import sys

import openai


def main() -> None:
    base_url, key, model = sys.argv[1], sys.argv[2], sys.argv[3]
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120)

    response = client.responses.create(model=model, input="Say hi", instructions="be brief")
    assert response.object == "response", response
    assert response.status == "completed", response
    assert response.output_text, f"no output text in {response!r}"
    assert response.usage is not None and response.usage.output_tokens == 7, response.usage

    events = []
    with client.responses.stream(model=model, input="Say hi", instructions="be brief") as stream:
        for event in stream:
            events.append(event.type)
        final = stream.get_final_response()
    assert events[0] == "response.created", events
    assert events[-1] == "response.completed", events
    assert "response.output_text.delta" in events, events
    assert final.output_text == response.output_text, (final.output_text, response.output_text)

    raw = client.responses.create(model=model, input="Say hi", stream=True)
    types = [event.type for event in raw]
    assert types[-1] == "response.completed", types

    print(f"sdk ok: {len(events)} stream events, text {response.output_text!r}")


if __name__ == "__main__":
    main()
