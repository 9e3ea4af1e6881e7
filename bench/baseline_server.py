"""The HTTP baseline: aiohttp serving a fixed answer with no Wasm, set up like HttpFront.

`python -m bench.baseline_server PORT [--thread-hop]`. With --thread-hop each request also
makes the round trip to a 32-thread pool the agent makes to run its instance, so the two
baselines split the agent's cost into framework, thread hop and instance.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

# What the cgi guest answers to GET /bench, so both sides send the same bytes.
BODY = b"method=GET\npath=/bench\nquery=\nbody_length=0\nbody=\n"
HEADERS = {"Content-Type": "text/plain; charset=utf-8", "X-Guest": "none"}


def _answer() -> bytes:
    return BODY


async def serve(port: int, thread_hop: bool) -> None:
    executor = ThreadPoolExecutor(32, thread_name_prefix="http")  # FrontLimits.workers

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        body = BODY
        if thread_hop:
            body = await asyncio.get_running_loop().run_in_executor(executor, _answer)
        return web.Response(body=body, headers=HEADERS)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    executor.shutdown(wait=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--thread-hop", action="store_true")
    args = p.parse_args()
    asyncio.run(serve(args.port, args.thread_hop))


if __name__ == "__main__":
    main()
