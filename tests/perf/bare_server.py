"""The baseline for the ingress: a bare aiohttp POST handler in one process.

    python tests/perf/bare_server.py PORT

It reads the body and answers 202 with a small JSON, as the ingress does, and nothing else: no
parsing, no Kafka, no Postgres. The same aiohttp, the same event loop policy, no access log (as
the ingress runs), so "ingress req/s / bare req/s" is what Kopilka's own work costs.
"""

from __future__ import annotations

import sys

from aiohttp import web

ANSWER = b'{"status":"accepted","event_id":"00000000-0000-4000-8000-000000000000"}'


async def accept(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=ANSWER, status=202, content_type="application/json")


def main() -> None:
    app = web.Application()
    app.router.add_post("/{tail:.*}", accept)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
