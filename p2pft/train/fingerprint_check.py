"""The fingerprint check at a round's start: every rank sends what it is about to train on (p2pft.train.fingerprint)
to every other, as a fixed-size uint8 tensor all-gather over the round's process group (no pickle), and every
rank raises the same FingerprintError on a mismatch, before any step.

The model is hashed on a background thread started before the model loads (hashlib releases the GIL on large
reads), by each box's local rank 0 only, and only when the round spans more than one box: ranks of one box
read the same files.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from p2pft.train.digest_cache import DigestCache, default_cache_path
from p2pft.train.fingerprint import (
    FINGERPRINT_BYTES,
    NOT_CHECKED,
    Fingerprint,
    FingerprintError,
    data_digest,
    decode,
    encode,
    mismatch,
    model_digest,
    name_digest,
    package_versions,
    spec_digest,
)

BOX_NAME_ENV = "P2PFT_BOX_NAME"   # this box's name for people
DAEMON_NAME_ENV = "P2PFT_NAME"    # the daemon's name setting, when given through its environment (workers inherit it)


def box_name() -> str:
    """The name the mesh knows this box by: the daemon's default is the short hostname (daemon/settings.py)."""
    return (os.environ.get(BOX_NAME_ENV) or os.environ.get(DAEMON_NAME_ENV)
            or socket.gethostname().split(".")[0] or "?")


def resolve_model_dir(name: str) -> Path | None:
    """The directory the model loads from: the path itself, or the local Hugging Face cache's snapshot."""
    if Path(name).is_dir():
        return Path(name)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=name, local_files_only=True))
    except Exception:   # not in the cache (or no hub name): loading says so in its own words
        return None


class BackgroundDigests:
    """The model's and the data's digests, computed on threads while the model loads: hashing files releases
    the GIL, and the data's digest (Python packing tokens) would otherwise add to the round's start."""

    def __init__(self, model_name: str, *, hash_model: bool) -> None:
        self._model = in_background(self._model_digest, model_name) if hash_model else None
        self._data: Future[bytes] | None = None
        self.model_seconds = self.data_seconds = 0.0
        self.model_bytes_read = 0

    def add_data(self, train: list[Any], val: list[Any]) -> None:
        self._data = in_background(self._data_digest, train, val)

    def _model_digest(self, name: str) -> bytes:
        started = time.monotonic()
        directory = resolve_model_dir(name)
        if directory is None:
            return name_digest(name)
        cache = DigestCache(default_cache_path())
        digest = model_digest(directory, cache.digest)
        cache.save()
        self.model_bytes_read = cache.hashed_bytes
        self.model_seconds = time.monotonic() - started
        return digest

    def _data_digest(self, train: list[Any], val: list[Any]) -> bytes:
        started = time.monotonic()
        digest = data_digest(train, val)
        self.data_seconds = time.monotonic() - started
        return digest

    def fingerprint(self, *, node_id: str, job: dict[str, Any]) -> Fingerprint:
        """This rank's fingerprint; waits for the digests still being computed."""
        if self._data is None:
            raise RuntimeError("add_data must be called before fingerprint")
        model = self._model.result() if self._model is not None else NOT_CHECKED
        return Fingerprint(box=box_name(), node_id=node_id, model=model, spec=spec_digest(job),
                           data=self._data.result(), versions=package_versions())

    def describe(self) -> str:
        model = (f"model hashed in {self.model_seconds:.2f} s ({self.model_bytes_read:,} bytes read), "
                 if self._model is not None else "")
        return f"{model}data hashed in {self.data_seconds * 1000:.0f} ms"


def in_background(function: Callable[..., bytes], *args: Any) -> Future[bytes]:
    """`function(*args)` on a daemon thread: a worker that fails while loading exits at once, without waiting
    for a model's hash (a ThreadPoolExecutor's threads are joined at interpreter exit)."""
    future: Future[bytes] = Future()

    def run() -> None:
        try:
            future.set_result(function(*args))
        except BaseException as exc:   # handed to whoever waits for the result
            future.set_exception(exc)

    threading.Thread(target=run, name="p2pft-fingerprint", daemon=True).start()
    return future


def check_same_everywhere(mine: Fingerprint, device: torch.device) -> list[Fingerprint]:
    """All-gather every rank's fingerprint (a collective: every rank calls it at the same point) and raise the
    same FingerprintError on every rank when they differ. Returns them, rank order."""
    raw = torch.tensor(list(encode(mine)), dtype=torch.uint8, device=device)
    gathered = [torch.empty(FINGERPRINT_BYTES, dtype=torch.uint8, device=device)
                for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, raw)
    prints = [decode(bytes(tensor.cpu().tolist())) for tensor in gathered]
    problem = mismatch(prints)
    if problem:
        raise FingerprintError(problem)
    return prints
