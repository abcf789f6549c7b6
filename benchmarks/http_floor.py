"""The HTTP limit: a bare ASGI app on uvicorn (the options ``featurelite serve`` uses)
that answers every request with a fixed JSON body. ``python -m benchmarks.http_floor
--size N --port P``; ``GET /health`` answers too, so the runner can wait for it."""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn


def app_for(size: int) -> Any:
    body = (b'{"values":"' + b"x" * max(0, size - 13) + b'"}')[:max(size, 13)]
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:  # drain the request body
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app_for(args.size), host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                lifespan="off")


if __name__ == "__main__":
    main()
