from . import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PeerInfo(_message.Message):
    __slots__ = ("node_id", "name", "address", "versions", "state", "devices")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    name: str
    address: str
    versions: _common_pb2.Versions
    state: str
    devices: _containers.RepeatedCompositeFieldContainer[_common_pb2.Device]
    def __init__(self, node_id: _Optional[str] = ..., name: _Optional[str] = ..., address: _Optional[str] = ..., versions: _Optional[_Union[_common_pb2.Versions, _Mapping]] = ..., state: _Optional[str] = ..., devices: _Optional[_Iterable[_Union[_common_pb2.Device, _Mapping]]] = ...) -> None: ...

class HelloRequest(_message.Message):
    __slots__ = ("node_id", "versions", "peer", "cluster_id")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    versions: _common_pb2.Versions
    peer: PeerInfo
    cluster_id: str
    def __init__(self, node_id: _Optional[str] = ..., versions: _Optional[_Union[_common_pb2.Versions, _Mapping]] = ..., peer: _Optional[_Union[PeerInfo, _Mapping]] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class HelloReply(_message.Message):
    __slots__ = ("node_id", "versions", "peer", "cluster_id")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    versions: _common_pb2.Versions
    peer: PeerInfo
    cluster_id: str
    def __init__(self, node_id: _Optional[str] = ..., versions: _Optional[_Union[_common_pb2.Versions, _Mapping]] = ..., peer: _Optional[_Union[PeerInfo, _Mapping]] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class MemberAddress(_message.Message):
    __slots__ = ("node_id", "address")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    address: str
    def __init__(self, node_id: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("peer", "sent_unix_s", "known", "revocations")
    PEER_FIELD_NUMBER: _ClassVar[int]
    SENT_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    REVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    peer: PeerInfo
    sent_unix_s: float
    known: _containers.RepeatedCompositeFieldContainer[MemberAddress]
    revocations: bytes
    def __init__(self, peer: _Optional[_Union[PeerInfo, _Mapping]] = ..., sent_unix_s: _Optional[float] = ..., known: _Optional[_Iterable[_Union[MemberAddress, _Mapping]]] = ..., revocations: _Optional[bytes] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("peer", "replied_unix_s", "known", "revocations")
    PEER_FIELD_NUMBER: _ClassVar[int]
    REPLIED_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    REVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    peer: PeerInfo
    replied_unix_s: float
    known: _containers.RepeatedCompositeFieldContainer[MemberAddress]
    revocations: bytes
    def __init__(self, peer: _Optional[_Union[PeerInfo, _Mapping]] = ..., replied_unix_s: _Optional[float] = ..., known: _Optional[_Iterable[_Union[MemberAddress, _Mapping]]] = ..., revocations: _Optional[bytes] = ...) -> None: ...

class MembersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MembersReply(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[MemberAddress]
    def __init__(self, members: _Optional[_Iterable[_Union[MemberAddress, _Mapping]]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("peer", "state", "is_self", "is_coordinator", "last_heartbeat_age_s", "clock_offset_s", "incompatible_reason", "rss_mb", "cert_not_after_unix_s", "cert_serial")
    PEER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    IS_SELF_FIELD_NUMBER: _ClassVar[int]
    IS_COORDINATOR_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_AGE_S_FIELD_NUMBER: _ClassVar[int]
    CLOCK_OFFSET_S_FIELD_NUMBER: _ClassVar[int]
    INCOMPATIBLE_REASON_FIELD_NUMBER: _ClassVar[int]
    RSS_MB_FIELD_NUMBER: _ClassVar[int]
    CERT_NOT_AFTER_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    CERT_SERIAL_FIELD_NUMBER: _ClassVar[int]
    peer: PeerInfo
    state: str
    is_self: bool
    is_coordinator: bool
    last_heartbeat_age_s: float
    clock_offset_s: float
    incompatible_reason: str
    rss_mb: int
    cert_not_after_unix_s: float
    cert_serial: str
    def __init__(self, peer: _Optional[_Union[PeerInfo, _Mapping]] = ..., state: _Optional[str] = ..., is_self: _Optional[bool] = ..., is_coordinator: _Optional[bool] = ..., last_heartbeat_age_s: _Optional[float] = ..., clock_offset_s: _Optional[float] = ..., incompatible_reason: _Optional[str] = ..., rss_mb: _Optional[int] = ..., cert_not_after_unix_s: _Optional[float] = ..., cert_serial: _Optional[str] = ...) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("node_id", "cluster_id", "coordinator_id", "nodes", "error_counters", "uptime_s", "heartbeat_interval_s", "recent_error_counters", "recent_window_s")
    class ErrorCountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class RecentErrorCountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_ID_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    ERROR_COUNTERS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    RECENT_ERROR_COUNTERS_FIELD_NUMBER: _ClassVar[int]
    RECENT_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    cluster_id: str
    coordinator_id: str
    nodes: _containers.RepeatedCompositeFieldContainer[NodeStatus]
    error_counters: _containers.ScalarMap[str, int]
    uptime_s: float
    heartbeat_interval_s: float
    recent_error_counters: _containers.ScalarMap[str, int]
    recent_window_s: float
    def __init__(self, node_id: _Optional[str] = ..., cluster_id: _Optional[str] = ..., coordinator_id: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[NodeStatus, _Mapping]]] = ..., error_counters: _Optional[_Mapping[str, int]] = ..., uptime_s: _Optional[float] = ..., heartbeat_interval_s: _Optional[float] = ..., recent_error_counters: _Optional[_Mapping[str, int]] = ..., recent_window_s: _Optional[float] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("interval_s",)
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    interval_s: float
    def __init__(self, interval_s: _Optional[float] = ...) -> None: ...

class DebugRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DebugReply(_message.Message):
    __slots__ = ("pid", "loaded_modules")
    PID_FIELD_NUMBER: _ClassVar[int]
    LOADED_MODULES_FIELD_NUMBER: _ClassVar[int]
    pid: int
    loaded_modules: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, pid: _Optional[int] = ..., loaded_modules: _Optional[_Iterable[str]] = ...) -> None: ...

class ProbeRequest(_message.Message):
    __slots__ = ("listen_s", "dial")
    LISTEN_S_FIELD_NUMBER: _ClassVar[int]
    DIAL_FIELD_NUMBER: _ClassVar[int]
    listen_s: float
    dial: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, listen_s: _Optional[float] = ..., dial: _Optional[_Iterable[str]] = ...) -> None: ...

class CollectiveChoice(_message.Message):
    __slots__ = ("setting", "env", "address", "interface", "how", "error")
    SETTING_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    HOW_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    setting: str
    env: str
    address: str
    interface: str
    how: str
    error: str
    def __init__(self, setting: _Optional[str] = ..., env: _Optional[str] = ..., address: _Optional[str] = ..., interface: _Optional[str] = ..., how: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class DialResult(_message.Message):
    __slots__ = ("target", "ok", "error")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    target: str
    ok: bool
    error: str
    def __init__(self, target: _Optional[str] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class ProbeReply(_message.Message):
    __slots__ = ("node_id", "name", "versions", "devices", "received_unix_ns", "replied_unix_ns", "state_dir", "state_dir_free_bytes", "mdns", "static_peers", "caller_host", "collective", "collective_port", "store_port", "store_port_low", "store_port_high", "listener_error", "dialled")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    REPLIED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    STATE_DIR_FIELD_NUMBER: _ClassVar[int]
    STATE_DIR_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MDNS_FIELD_NUMBER: _ClassVar[int]
    STATIC_PEERS_FIELD_NUMBER: _ClassVar[int]
    CALLER_HOST_FIELD_NUMBER: _ClassVar[int]
    COLLECTIVE_FIELD_NUMBER: _ClassVar[int]
    COLLECTIVE_PORT_FIELD_NUMBER: _ClassVar[int]
    STORE_PORT_FIELD_NUMBER: _ClassVar[int]
    STORE_PORT_LOW_FIELD_NUMBER: _ClassVar[int]
    STORE_PORT_HIGH_FIELD_NUMBER: _ClassVar[int]
    LISTENER_ERROR_FIELD_NUMBER: _ClassVar[int]
    DIALLED_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    name: str
    versions: _common_pb2.Versions
    devices: _containers.RepeatedCompositeFieldContainer[_common_pb2.Device]
    received_unix_ns: int
    replied_unix_ns: int
    state_dir: str
    state_dir_free_bytes: int
    mdns: bool
    static_peers: _containers.RepeatedScalarFieldContainer[str]
    caller_host: str
    collective: CollectiveChoice
    collective_port: int
    store_port: int
    store_port_low: int
    store_port_high: int
    listener_error: str
    dialled: _containers.RepeatedCompositeFieldContainer[DialResult]
    def __init__(self, node_id: _Optional[str] = ..., name: _Optional[str] = ..., versions: _Optional[_Union[_common_pb2.Versions, _Mapping]] = ..., devices: _Optional[_Iterable[_Union[_common_pb2.Device, _Mapping]]] = ..., received_unix_ns: _Optional[int] = ..., replied_unix_ns: _Optional[int] = ..., state_dir: _Optional[str] = ..., state_dir_free_bytes: _Optional[int] = ..., mdns: _Optional[bool] = ..., static_peers: _Optional[_Iterable[str]] = ..., caller_host: _Optional[str] = ..., collective: _Optional[_Union[CollectiveChoice, _Mapping]] = ..., collective_port: _Optional[int] = ..., store_port: _Optional[int] = ..., store_port_low: _Optional[int] = ..., store_port_high: _Optional[int] = ..., listener_error: _Optional[str] = ..., dialled: _Optional[_Iterable[_Union[DialResult, _Mapping]]] = ...) -> None: ...

class RenewRequest(_message.Message):
    __slots__ = ("csr",)
    CSR_FIELD_NUMBER: _ClassVar[int]
    csr: bytes
    def __init__(self, csr: _Optional[bytes] = ...) -> None: ...

class RenewReply(_message.Message):
    __slots__ = ("node_cert", "ca_cert", "signed_by")
    NODE_CERT_FIELD_NUMBER: _ClassVar[int]
    CA_CERT_FIELD_NUMBER: _ClassVar[int]
    SIGNED_BY_FIELD_NUMBER: _ClassVar[int]
    node_cert: bytes
    ca_cert: bytes
    signed_by: str
    def __init__(self, node_cert: _Optional[bytes] = ..., ca_cert: _Optional[bytes] = ..., signed_by: _Optional[str] = ...) -> None: ...
