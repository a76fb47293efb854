"""A local Weaviate server on 127.0.0.1 that the real weaviate-client v4 (4.24) connects to unchanged: REST
(aiohttp) and gRPC (grpc.aio, the `weaviate.v1.Weaviate` service from the protobuf modules the client ships),
reporting itself as Weaviate 1.32.5. Data lives in memory; there is no vectoriser module, so vectors are the
caller's own (collections with `Configure.Vectors.self_provided()`).

    with weaviate_server() as server:           # or server = WeaviateServer().start() ... server.close()
        client = weaviate.use_async_with_custom(
            http_host="127.0.0.1", http_port=server.http_port, http_secure=False,
            grpc_host="127.0.0.1", grpc_port=server.grpc_port, grpc_secure=False,
        )
        server.url                              # "http://127.0.0.1:<http_port>"

`server.stop()` then `server.start()` serves again on the same two ports with the data kept (clients see the
connections refused in between); `server.restart(keep_data=False)` comes back empty. Integration tests take
the `weaviate_server` fixture (tests/integration/conftest.py): one server per session and xdist worker, serving
at the start of every test even if an earlier one stopped it; give each test a collection name of its own.

The server runs in a child process: grpc.aio polls one completion queue per process, and a server loop in a
thread next to the test's client loop makes both loops race for its events. Runnable on its own for manual use:
`python -m tests.fakes.weaviate_server --http-port 8080 --grpc-port 50051`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Self

import grpc  # type: ignore[import-untyped]
from aiohttp import web

from tests.fakes.weaviate_grpc import add_services
from tests.fakes.weaviate_rest import SERVER_VERSION, WeaviateRest
from tests.fakes.weaviate_store import WeaviateData

HOST = "127.0.0.1"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class LocalWeaviate:
    """Both protocols on the running event loop, over one set of data that outlives a stop."""

    def __init__(self, http_port: int = 0, grpc_port: int = 0) -> None:
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.data = WeaviateData()
        self._runner: web.AppRunner | None = None
        self._grpc: grpc.aio.Server | None = None

    async def start(self) -> None:
        app = web.Application()
        WeaviateRest(self.data).routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, self.http_port, reuse_address=True)
        await site.start()
        self.http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._grpc = grpc.aio.server()
        add_services(self._grpc, self.data)
        self.grpc_port = self._grpc.add_insecure_port(f"{HOST}:{self.grpc_port}")
        await self._grpc.start()

    async def stop(self) -> None:
        if self._grpc is not None:
            await self._grpc.stop(grace=None)
            self._grpc = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def serve_commands(http_port: int, grpc_port: int) -> None:
    """The child's side: serve, then obey `stop`, `start`, `drop` and `exit` lines on stdin, answering each on
    stdout; the end of stdin (the test process gone) ends it too."""
    server = LocalWeaviate(http_port, grpc_port)
    await server.start()
    print(f"ready {server.http_port} {server.grpc_port}", flush=True)
    loop = asyncio.get_running_loop()
    while (command := (await loop.run_in_executor(None, sys.stdin.readline)).strip()) not in ("", "exit"):
        if command == "stop":
            await server.stop()
            print("stopped", flush=True)
        elif command == "start":
            await server.start()
            print(f"ready {server.http_port} {server.grpc_port}", flush=True)
        elif command == "drop":
            server.data.drop()
            print("dropped", flush=True)
        else:
            print(f"unknown command {command!r}", flush=True)
    await server.stop()


class WeaviateServer:
    """The test's handle on a local Weaviate in a child process."""

    def __init__(self, http_port: int = 0, grpc_port: int = 0) -> None:
        self.http_port = http_port
        self.grpc_port = grpc_port
        self._process: subprocess.Popen[str] | None = None
        self.running = False

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    def start(self) -> Self:
        """Serve: the first time on the ports asked for (free ones by default), afterwards on the same ones."""
        if self.running:
            raise RuntimeError("the Weaviate server is already running")
        if self._process is None:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.fakes.weaviate_server",
                    "--control",
                    "--http-port",
                    str(self.http_port),
                    "--grpc-port",
                    str(self.grpc_port),
                ],
                cwd=PROJECT_ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            answer = self._answer()
        else:
            answer = self._command("start")
        _, http_port, grpc_port = answer.split()
        self.http_port, self.grpc_port = int(http_port), int(grpc_port)
        self.running = True
        return self

    def stop(self) -> None:
        """Stop answering on both ports; the data stays for the next start."""
        if self.running:
            self._command("stop")
            self.running = False

    def restart(self, *, keep_data: bool = True) -> None:
        self.stop()
        if not keep_data:
            self._command("drop")
        self.start()

    def close(self) -> None:
        process, self._process = self._process, None
        self.running = False
        if process is None:
            return
        assert process.stdin is not None
        try:
            process.stdin.write("exit\n")
            process.stdin.close()
            process.wait(10)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _command(self, command: str) -> str:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return self._answer()

    def _answer(self) -> str:
        assert self._process is not None
        stdout: IO[str] | None = self._process.stdout
        assert stdout is not None
        line = stdout.readline().strip()
        if not line or line.startswith("unknown"):
            self.close()
            raise RuntimeError(f"the local Weaviate server failed ({line or 'it exited'}); see its stderr")
        return line


@contextmanager
def weaviate_server(http_port: int = 0, grpc_port: int = 0) -> Iterator[WeaviateServer]:
    server = WeaviateServer(http_port, grpc_port).start()
    try:
        yield server
    finally:
        server.close()


async def serve_forever(http_port: int, grpc_port: int) -> None:
    server = LocalWeaviate(http_port, grpc_port)
    await server.start()
    print(f"Weaviate {SERVER_VERSION} at http://{HOST}:{server.http_port}, gRPC on {HOST}:{server.grpc_port}")
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=f"A local Weaviate {SERVER_VERSION} (REST and gRPC) in memory."
    )
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--grpc-port", type=int, default=50051)
    parser.add_argument("--control", action="store_true", help="obey stop/start/drop/exit lines on stdin")
    args = parser.parse_args()
    if args.control:
        asyncio.run(serve_commands(args.http_port, args.grpc_port))
        # Both servers are stopped: skip grpcio's own teardown at exit, which takes about a second.
        sys.stdout.flush()
        os._exit(0)
    with suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(args.http_port, args.grpc_port))


if __name__ == "__main__":
    main()
