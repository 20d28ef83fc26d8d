"""Pure decisions for transfers: which failures are worth another attempt, how long to wait, what deadline to set."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import grpc

from p2pft.transfer.store import BlobBusyError, DigestMismatchError

MIB = 1024 * 1024

# Failures of the peer or the path to it, not of the request: another attempt (maybe at another peer) can succeed.
RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.FAILED_PRECONDITION,  # a push raced another writer: ask Has again
    }
)


class TransferError(Exception):
    """A transfer that failed for good; the message is one line naming the blob (or tree path) and the peer."""


class IncompleteStreamError(Exception):
    """A Read stream ended (or skipped bytes) before the blob was complete: retry from the partial file."""


@dataclass(frozen=True)
class TransferPolicy:
    attempts: int = 5  # per blob, across all sources
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0
    call_timeout_s: float = 10.0  # deadline of unary calls, and the fixed part of a stream's deadline
    stall_timeout_s: float = 30.0  # a stream with no message for this long is given up (and resumed)
    min_rate_bytes_per_s: float = 1 * MIB  # a stream's deadline allows at least this rate
    chunk_bytes: int = 512 * 1024  # see servicer.DEFAULT_CHUNK_BYTES
    parallel_blobs: int = 4  # blobs of one tree fetched at once

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"TransferPolicy.attempts={self.attempts}: use 1 or more")
        if self.min_rate_bytes_per_s <= 0 or self.stall_timeout_s <= 0 or self.call_timeout_s <= 0:
            raise ValueError("TransferPolicy timeouts and min_rate_bytes_per_s must be positive")

    def stream_deadline_s(self, remaining_bytes: int) -> float:
        """Deadline of a stream moving `remaining_bytes`: generous, since stalls are caught by stall_timeout_s."""
        return self.call_timeout_s + remaining_bytes / self.min_rate_bytes_per_s


def backoff_delay(attempt: int, policy: TransferPolicy, jitter: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (0-based); `jitter` in [0, 1) spreads retries."""
    ceiling = min(policy.backoff_max_s, policy.backoff_initial_s * (2**attempt))
    return ceiling * (0.5 + 0.5 * jitter)


def is_retryable(exc: BaseException, *, other_sources: bool = False) -> bool:
    """Whether another attempt could succeed. NOT_FOUND is worth it only when another peer may hold the blob."""
    if isinstance(exc, grpc.aio.AioRpcError):
        code = exc.code()
        return code in RETRYABLE_CODES or (code == grpc.StatusCode.NOT_FOUND and other_sources)
    return isinstance(
        exc, (DigestMismatchError, IncompleteStreamError, BlobBusyError, asyncio.TimeoutError, TimeoutError)
    )


def attempt_log_level(exc: BaseException, *, will_retry: bool) -> int:
    """How loud a failed attempt is. A peer that does not hold a blob YET is how replication looks while it is in
    flight (a holder is named as soon as it commits, before the others copied it): with another source to try,
    that is DEBUG; when it ends the transfer, INFO, since the caller gets the TransferError and decides whether
    it is a problem. Everything else (a peer gone mid-stream, a stall, wrong bytes) is a WARNING."""
    if isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.NOT_FOUND:
        return logging.DEBUG if will_retry else logging.INFO
    return logging.WARNING


def describe(exc: BaseException) -> str:
    """One line for a failure, for logs and TransferError messages."""
    if isinstance(exc, grpc.aio.AioRpcError):
        details = (exc.details() or "").splitlines()
        return f"{exc.code().name}: {details[0] if details else 'no details'}"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "the peer sent nothing within the stall timeout"
    text = str(exc).splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
