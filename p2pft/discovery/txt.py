"""Pure encode / decode / validation of the p2pft mDNS TXT record (no I/O, no zeroconf import).

Keys (RFC 6763 style: short ASCII keys, each "key=value" string at most 255 bytes):
  id       node id (also the mDNS instance label, so 1-63 UTF-8 bytes, printable)
  cluster  cluster id: the first 16 hex digits of sha256(cluster key)  -> `cluster_id_for_key`
  port     the daemon's gRPC port, decimal 1-65535
  proto    protocol version, decimal >= 1
  dev      device summary, e.g. "RTX 4090 24GB" or "cpu:2x" (optional on the wire, "" when absent)
  state    daemon state, e.g. "idle", "training", "draining" (optional on the wire, "" when absent)
Unknown keys are kept (newer peers may add some) as long as the record stays within the size limits.
Every problem raises `TxtError` whose message is one line naming the key and what is wrong.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

REQUIRED_KEYS: tuple[str, ...] = ("id", "cluster", "port", "proto")
OPTIONAL_KEYS: tuple[str, ...] = ("dev", "state")
MAX_ENTRY_BYTES = 255  # one TXT character-string: length byte + up to 255 bytes of "key=value"
MAX_RECORD_BYTES = 1300  # keep the whole record well inside one mDNS packet
MAX_KEYS = 32
MAX_NODE_ID_BYTES = 63  # a DNS label
MAX_PROTOCOL_VERSION = 1_000_000
_CLUSTER_ID = re.compile(r"[0-9a-f]{16}")
_DECIMAL = re.compile(r"[0-9]{1,7}")
_KEY = re.compile(r"[!-<>-~]{1,9}")  # printable ASCII except '=' and space, at most 9 characters


class TxtError(ValueError):
    """A TXT record (or a value meant for one) is malformed; the message is one line."""


@dataclass(frozen=True)
class PeerRecord:
    """A validated TXT record of a p2pft daemon."""

    node_id: str
    cluster_id: str
    port: int
    protocol_version: int
    txt: Mapping[str, str]


def cluster_id_for_key(cluster_key: bytes | str) -> str:
    """The public cluster id announced over mDNS: sha256 of the cluster key, hex, first 16 digits."""
    raw = cluster_key.encode() if isinstance(cluster_key, str) else cluster_key
    return hashlib.sha256(raw).hexdigest()[:16]


def validate_node_id(node_id: str) -> str:
    """Return node_id if it can be an mDNS instance label, else raise TxtError."""
    size = len(node_id.encode("utf-8", errors="replace"))
    if not 1 <= size <= MAX_NODE_ID_BYTES:
        raise TxtError(f"id: node id {node_id[:70]!r} must be 1-{MAX_NODE_ID_BYTES} bytes of UTF-8, got {size}")
    if not node_id.isprintable() or node_id != node_id.strip():
        raise TxtError(f"id: node id {node_id!r} must be printable with no leading/trailing spaces")
    return node_id


def build_txt(
    *,
    node_id: str,
    cluster_id: str,
    port: int,
    protocol_version: int,
    device: str = "",
    state: str = "",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The TXT mapping a daemon announces; validated, so a bad value fails here and not on the peers."""
    txt = {
        **(extra or {}),
        "id": node_id,
        "cluster": cluster_id,
        "port": str(port),
        "proto": str(protocol_version),
        "dev": device,
        "state": state,
    }
    validate_record(txt)
    encode_txt(txt)  # size limits
    return txt


def encode_txt(txt: Mapping[str, str]) -> dict[bytes, bytes]:
    """str mapping -> the bytes mapping zeroconf's ServiceInfo takes; raises TxtError on size/key problems."""
    if len(txt) > MAX_KEYS:
        raise TxtError(f"txt: {len(txt)} keys, at most {MAX_KEYS} allowed")
    encoded: dict[bytes, bytes] = {}
    total = 0
    for key, value in txt.items():
        if not _KEY.fullmatch(key):
            raise TxtError(f"txt key {key[:20]!r}: use 1-9 printable ASCII characters without '=' or spaces")
        raw_value = value.encode("utf-8")
        entry = len(key) + 1 + len(raw_value)
        if entry > MAX_ENTRY_BYTES:
            raise TxtError(f"txt {key}: value is {len(raw_value)} bytes, key=value must fit in {MAX_ENTRY_BYTES}")
        total += entry + 1
        encoded[key.encode("ascii")] = raw_value
    if total > MAX_RECORD_BYTES:
        raise TxtError(f"txt: record is {total} bytes, at most {MAX_RECORD_BYTES} allowed")
    return encoded


def decode_txt(properties: Mapping[bytes | str, bytes | str | None]) -> dict[str, str]:
    """zeroconf's raw properties -> str mapping; raises TxtError on bad UTF-8 or absurd sizes.

    A key present without a value ("key" instead of "key=...") decodes to "".
    """
    if len(properties) > MAX_KEYS:
        raise TxtError(f"txt: {len(properties)} keys, at most {MAX_KEYS} allowed")
    decoded: dict[str, str] = {}
    for raw_key, raw_value in properties.items():
        key = _to_text(raw_key, "key")
        value = "" if raw_value is None else _to_text(raw_value, key)
        if len(key.encode()) + 1 + len(value.encode()) > MAX_ENTRY_BYTES:
            raise TxtError(f"txt {key[:20]}: entry longer than {MAX_ENTRY_BYTES} bytes")
        decoded[key] = value
    return decoded


def validate_record(txt: Mapping[str, str]) -> PeerRecord:
    """Check the keys a peer must announce and return them typed; raises TxtError naming the first problem."""
    missing = [key for key in REQUIRED_KEYS if key not in txt]
    if missing:
        raise TxtError(f"txt: missing key(s) {', '.join(missing)}")
    node_id = validate_node_id(txt["id"])
    cluster_id = txt["cluster"]
    if not _CLUSTER_ID.fullmatch(cluster_id):
        raise TxtError(f"txt cluster: {cluster_id[:40]!r} is not 16 lowercase hex digits")
    port = _decimal(txt, "port", 1, 65535)
    protocol_version = _decimal(txt, "proto", 1, MAX_PROTOCOL_VERSION)
    for key in OPTIONAL_KEYS:
        value = txt.get(key, "")
        if not value.isprintable():
            raise TxtError(f"txt {key}: {value[:40]!r} has non-printable characters")
    full = {key: txt.get(key, "") for key in OPTIONAL_KEYS} | dict(txt)
    return PeerRecord(node_id=node_id, cluster_id=cluster_id, port=port, protocol_version=protocol_version, txt=full)


def decode_record(properties: Mapping[bytes | str, bytes | str | None]) -> PeerRecord:
    """decode_txt + validate_record: zeroconf properties straight to a PeerRecord (or TxtError)."""
    return validate_record(decode_txt(properties))


def _to_text(raw: bytes | str, what: str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TxtError(f"txt {what[:20]}: not valid UTF-8") from None


def _decimal(txt: Mapping[str, str], key: str, low: int, high: int) -> int:
    text = txt[key]
    if not _DECIMAL.fullmatch(text):
        raise TxtError(f"txt {key}: {text[:20]!r} is not a decimal number")
    value = int(text)
    if not low <= value <= high:
        raise TxtError(f"txt {key}: {value} must be {low}-{high}")
    return value
