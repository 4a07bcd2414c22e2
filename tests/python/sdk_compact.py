"""The official OpenAI Python SDK's responses.compact through subrelay (and nginx in front).

The answer arrives as blank lines (keepalive) followed by the JSON; the SDK must parse it.
"""

import sys

import openai


def main() -> None:
    base_url, key, model = sys.argv[1], sys.argv[2], sys.argv[3]
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120)
    compacted = client.responses.compact(
        model=model,
        input=[{"type": "message", "role": "user", "content": "a long conversation"}],
        instructions="compact it",
    )
    assert compacted.object == "response.compaction", compacted
    kinds = [item.type for item in compacted.output]
    assert "compaction" in kinds, kinds
    print(f"sdk compact ok: {kinds}")


if __name__ == "__main__":
    main()
