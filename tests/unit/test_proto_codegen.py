"""The committed generated gRPC code must match what proto/ generates today."""

from p2pft.rpc.codegen import generated_differences


def test_generated_code_matches_proto_sources() -> None:
    diffs = generated_differences()
    assert diffs == [], f"p2pft/rpc/gen is stale for {diffs}: run `make proto` and commit"
