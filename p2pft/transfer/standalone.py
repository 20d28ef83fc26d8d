"""`python -m p2pft.transfer.standalone --store DIR`: a BlobService on its own, for tests, benchmarks and debugging.

Prints the bound port on the first line of stdout, then serves until SIGTERM/SIGINT. The daemon does not use
this: it registers the same servicer on its own mTLS server (`add_to_server`).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import grpc

from p2pft.transfer.servicer import CHANNEL_OPTIONS, add_to_server
from p2pft.transfer.store import BlobStore


async def serve(store_dir: Path, listen: str, tls_state_dir: Path | None, max_bytes_per_s: float | None) -> None:
    server = grpc.aio.server(options=list(CHANNEL_OPTIONS))
    add_to_server(server, BlobStore(store_dir), max_read_bytes_per_s=max_bytes_per_s)
    if tls_state_dir is not None:
        from p2pft.security import load_credentials

        port = server.add_secure_port(listen, load_credentials(tls_state_dir).server_credentials())
    else:
        port = server.add_insecure_port(listen)
    if port == 0:
        raise SystemExit(f"cannot listen on {listen}: address in use or not local (--listen)")
    await server.start()
    print(port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m p2pft.transfer.standalone", description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, type=Path, help="blob store directory (<state-dir>/blobs)")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT; port 0 picks a free one")
    parser.add_argument("--tls-state-dir", type=Path, help="serve mTLS with the credentials of this state dir")
    parser.add_argument("--max-bytes-per-s", type=float, help="cap each Read stream at this rate")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.store, args.listen, args.tls_state_dir, args.max_bytes_per_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
