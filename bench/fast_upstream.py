"""A fast OpenAI-compatible upstream for benchmarks: answers every chat completion
at once with a fixed `chat.completion` carrying usage.

Run: python bench/fast_upstream.py PORT
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import uvicorn

ANSWER = {
    "object": "chat.completion",
    "model": "bench-model",
    "system_fingerprint": "fp_bench",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "pong"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app, so the upstream costs as little as possible."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    if scope["path"].endswith("/models"):
        body = json.dumps({"object": "list", "data": []}).encode()
    else:
        answer = dict(
            ANSWER, id=f"chatcmpl-{time.monotonic_ns()}", created=int(time.time())
        )
        body = json.dumps(answer).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        backlog=4096,
    )
