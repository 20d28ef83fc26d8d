"""Content-addressed blob transfer between daemons: datasets, checkpoint files, models.

- `BlobStore` (`<state-dir>/blobs/`): sha256-named blobs, atomic writes, resumable `.partial` files.
- `Manifest`: a file tree as (relative path, size, sha256), with untrusted paths validated.
- `add_to_server(server, store)` / `servicer_entry(store)`: the BlobService on the daemon's gRPC server.
- `BlobClient(store, channels)`: `fetch`, `fetch_tree`, `sync_tree`, `push` with resume, verification, retries.
- `publish_checkpoint` / `replicate_checkpoint`: a committed checkpoint named by its COMMITTED marker's digest.
"""

from p2pft.transfer.checkpoints import manifest_from_marker, publish_checkpoint, replicate_checkpoint
from p2pft.transfer.client import BlobClient, TreeFetchResult
from p2pft.transfer.manifest import FileEntry, Manifest, ManifestError, build_manifest
from p2pft.transfer.retry import TransferError, TransferPolicy
from p2pft.transfer.servicer import CHANNEL_OPTIONS, BlobServicer, add_to_server, servicer_entry
from p2pft.transfer.store import BlobStore, DigestMismatchError, InvalidDigestError, validate_digest
from p2pft.transfer.tree import ingest_tree, resolve_destination, write_tree

__all__ = [
    "CHANNEL_OPTIONS",
    "BlobClient",
    "BlobServicer",
    "BlobStore",
    "DigestMismatchError",
    "FileEntry",
    "InvalidDigestError",
    "Manifest",
    "ManifestError",
    "TransferError",
    "TransferPolicy",
    "TreeFetchResult",
    "add_to_server",
    "build_manifest",
    "ingest_tree",
    "manifest_from_marker",
    "publish_checkpoint",
    "replicate_checkpoint",
    "resolve_destination",
    "servicer_entry",
    "validate_digest",
    "write_tree",
]
