"""Pure transfer decisions: what is retried, how long to wait, what deadline a stream gets."""

from __future__ import annotations

import grpc
import pytest

from p2pft.transfer.retry import TransferPolicy, backoff_delay, describe, is_retryable
from p2pft.transfer.store import DigestMismatchError, InvalidDigestError


def rpc_error(code: grpc.StatusCode, details: str = "why\nmore") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = TransferPolicy(backoff_initial_s=0.1, backoff_max_s=1.0)
    assert [backoff_delay(a, policy, jitter=1.0) for a in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff_delay(3, policy, jitter=0.0) == pytest.approx(0.4)  # jitter spreads within [50%, 100%]


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        (rpc_error(grpc.StatusCode.UNAVAILABLE), True),
        (rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED), True),
        (rpc_error(grpc.StatusCode.INVALID_ARGUMENT), False),
        (rpc_error(grpc.StatusCode.PERMISSION_DENIED), False),
        (rpc_error(grpc.StatusCode.NOT_FOUND), False),
        (DigestMismatchError("x"), True),
        (TimeoutError(), True),
        (InvalidDigestError("x"), False),
        (OSError(28, "No space left on device"), False),
    ],
)
def test_only_failures_of_the_peer_or_path_are_retried(exc: BaseException, retry: bool) -> None:
    assert is_retryable(exc) is retry


def test_not_found_is_retried_only_when_another_peer_may_have_it() -> None:
    assert is_retryable(rpc_error(grpc.StatusCode.NOT_FOUND), other_sources=True)


def test_describe_gives_one_line() -> None:
    assert describe(rpc_error(grpc.StatusCode.UNAVAILABLE)) == "UNAVAILABLE: why"
    assert "\n" not in describe(DigestMismatchError("a\nb"))


def test_stream_deadline_allows_the_minimum_rate_and_policy_is_checked() -> None:
    policy = TransferPolicy(call_timeout_s=10, min_rate_bytes_per_s=1_000_000)
    assert policy.stream_deadline_s(50_000_000) == pytest.approx(60.0)
    with pytest.raises(ValueError, match="attempts=0"):
        TransferPolicy(attempts=0)


def test_pacing_keeps_a_stream_at_its_rate() -> None:
    from p2pft.transfer.servicer import pacing_delay

    assert pacing_delay(1_000_000, 0.25, 1_000_000) == pytest.approx(0.75)
    assert pacing_delay(1_000_000, 2.0, 1_000_000) == 0.0  # behind schedule: no wait
