"""Cluster credentials: a cluster CA, node certificates, join tokens, and mTLS for every gRPC call."""

from p2pft.security.certs import TLS_TARGET_NAME
from p2pft.security.credentials import (
    Credentials,
    CredentialsError,
    channel_options,
    create_cluster,
    issue_local_node,
    join_cluster,
    load_credentials,
    make_join_token,
    secure_channel,
)

__all__ = [
    "TLS_TARGET_NAME",
    "Credentials",
    "CredentialsError",
    "channel_options",
    "create_cluster",
    "issue_local_node",
    "join_cluster",
    "load_credentials",
    "make_join_token",
    "secure_channel",
]
