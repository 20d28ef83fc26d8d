"""The mDNS TXT record: round trip, and every kind of malformed record gives a one-line TxtError."""

from __future__ import annotations

import pytest

from p2pft.discovery.txt import (
    TxtError,
    build_txt,
    cluster_id_for_key,
    decode_record,
    decode_txt,
    encode_txt,
    validate_node_id,
    validate_record,
)

CLUSTER = cluster_id_for_key(b"office-secret")


def _good() -> dict[str, str]:
    return build_txt(
        node_id="box-a", cluster_id=CLUSTER, port=50051, protocol_version=1, device="RTX 4090 24GB", state="idle"
    )


def test_cluster_id_is_16_hex_digits_of_sha256() -> None:
    assert CLUSTER == "3ec8cd13db712fd6"  # sha256(b"office-secret")[:16], computed independently
    assert len(CLUSTER) == 16 and int(CLUSTER, 16) >= 0
    assert cluster_id_for_key(b"other") != CLUSTER


def test_round_trip_through_zeroconf_bytes() -> None:
    record = decode_record(encode_txt(_good()))
    assert (record.node_id, record.cluster_id, record.port, record.protocol_version) == ("box-a", CLUSTER, 50051, 1)
    assert record.txt["dev"] == "RTX 4090 24GB" and record.txt["state"] == "idle"


def test_optional_keys_default_to_empty_and_unknown_keys_are_kept() -> None:
    txt = {"id": "b", "cluster": CLUSTER, "port": "1", "proto": "2", "future": "x"}
    record = validate_record(txt)
    assert record.txt["dev"] == "" and record.txt["state"] == "" and record.txt["future"] == "x"


def test_unicode_node_id_round_trips() -> None:
    txt = build_txt(node_id="ноут-Анны", cluster_id=CLUSTER, port=7000, protocol_version=1)
    assert decode_record(encode_txt(txt)).node_id == "ноут-Анны"


def _with(**changes: str | None) -> dict[bytes, bytes | None]:
    raw: dict[bytes, bytes | None] = dict(encode_txt(_good()))
    for key, value in changes.items():
        if value is None:
            raw.pop(key.encode(), None)
        else:
            raw[key.encode()] = value.encode()
    return raw


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        (_with(port=None), "missing key(s) port"),
        (_with(id=None, cluster=None), "missing key(s) id, cluster"),
        (_with(port="http"), "txt port: 'http' is not a decimal number"),
        (_with(port="99999"), "txt port: 99999 must be 1-65535"),
        (_with(port="0"), "txt port: 0 must be 1-65535"),
        (_with(port="-5"), "is not a decimal number"),
        (_with(proto="1.0"), "txt proto"),
        (_with(cluster="XYZ"), "txt cluster: 'XYZ' is not 16 lowercase hex digits"),
        (_with(cluster=CLUSTER.upper()), "not 16 lowercase hex digits"),
        (_with(id=""), "must be 1-63 bytes"),
        (_with(id="x" * 64), "must be 1-63 bytes of UTF-8, got 64"),
        (_with(id=" padded"), "no leading/trailing spaces"),
        (_with(state="bad\x00state"), "txt state"),
        ({**_with(), b"id": b"\xff\xfebox"}, "txt id: not valid UTF-8"),
        ({**_with(), b"\xff": b"1"}, "txt key: not valid UTF-8"),
        ({**_with(), b"dev": b"x" * 300}, "entry longer than 255 bytes"),
        ({**_with(), **{f"k{i}".encode(): b"v" for i in range(40)}}, "keys, at most 32"),
        ({**_with(), b"port": None}, "txt port: '' is not a decimal number"),
    ],
)
def test_malformed_records_raise_one_line_errors(properties: dict[bytes, bytes | None], expected: str) -> None:
    with pytest.raises(TxtError) as info:
        decode_record(properties)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_encode_rejects_what_peers_could_not_read() -> None:
    with pytest.raises(TxtError, match="1-9 printable ASCII"):
        encode_txt({"bad=key": "1"})
    with pytest.raises(TxtError, match="key=value must fit in 255"):
        encode_txt({"dev": "é" * 130})
    with pytest.raises(TxtError, match=r"record is .* bytes"):
        encode_txt({f"k{i}": "v" * 200 for i in range(8)})
    with pytest.raises(TxtError, match="port"):
        build_txt(node_id="a", cluster_id=CLUSTER, port=70000, protocol_version=1)


def test_decode_accepts_str_keys_and_valueless_keys() -> None:
    assert decode_txt({"a": "1", b"flag": None}) == {"a": "1", "flag": ""}


def test_validate_node_id() -> None:
    assert validate_node_id("gpu-box.local") == "gpu-box.local"
    with pytest.raises(TxtError, match="printable"):
        validate_node_id("tab\there")
