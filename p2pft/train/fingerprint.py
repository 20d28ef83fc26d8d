"""What a rank is about to train on, as a fixed-size fingerprint, and the one-line verdict when ranks disagree
(pure and torch-free; p2pft.train.fingerprint_check exchanges them over the process group).

Ranks agree on a step number only; boxes with different local copies of the base model, different data or
different library versions would otherwise train silently on different things. Four components:
- model: sha256 over the model directory's files (relative path, size, sha256), docs and hidden files left out;
- data: sha256 of the tokenised train and validation examples the worker prepared (sample ids, tokens, labels),
  which covers the dataset files, their selection, the template and the tokenizer at once;
- spec: sha256 of the job's training settings, without the paths that are each box's own;
- versions: the versions of the packages that do the maths.

The wire form is FINGERPRINT_BYTES of plain bytes (no pickle): a peer's bytes can only ever be read as text
and digests.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMPONENTS = ("model", "versions", "spec", "data")   # the order of the verdict: likely causes before effects
DIGEST_COMPONENTS = ("model", "spec", "data")
PACKAGES = ("torch", "transformers", "peft", "numpy", "p2pft")
# JOB.json keys each box fills in with its own paths (p2pft.jobs.member._prepare), and the collective timeout,
# which changes no maths; every other key is a training setting and must be the same everywhere.
BOX_LOCAL_KEYS = frozenset({"model_name_or_path", "dataset_dir", "output_dir", "resume_from_checkpoint"})
BOX_LOCAL_P2PFT_KEYS = frozenset({"process_group_timeout_s"})

LAYOUT = 1
NAME_BYTES = 64
DIGEST_BYTES = 32
VERSION_SLOTS = 7
VERSION_BYTES = 32
FINGERPRINT_BYTES = 512
NOT_CHECKED = bytes(DIGEST_BYTES)   # a model digest left to the box's local rank 0


class FingerprintError(RuntimeError):
    """Ranks would train on different things; the message names the boxes and the component."""


@dataclass(frozen=True)
class Fingerprint:
    box: str       # the box's name as people know it
    node_id: str
    model: bytes   # DIGEST_BYTES each; the model's is NOT_CHECKED when another rank of the box hashed it
    spec: bytes
    data: bytes
    versions: tuple[tuple[str, str], ...]   # (package, version) in PACKAGES order; "" when not installed



# ---- the components ---------------------------------------------------------------------------------------

def model_files(directory: Path) -> list[str]:
    """The files of a model directory that loading can read, as sorted relative paths: hidden files and dirs
    (.git, .cache) and docs (*.md) are left out, so a README or a download tool's bookkeeping differs harmlessly.
    Symlinked files count by their target's content (the Hugging Face cache's snapshot layout)."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith(".") or name.lower().endswith(".md"):
                continue
            found.append((Path(root) / name).relative_to(directory).as_posix())
    return sorted(found)


def model_digest(directory: Path, file_digest: Callable[[Path], str]) -> bytes:
    sha = hashlib.sha256()
    for rel in model_files(directory):
        path = directory / rel
        sha.update(f"{rel}\t{path.stat().st_size}\t{file_digest(path)}\n".encode())
    return sha.digest()


def name_digest(name: str) -> bytes:
    """A model that is no directory here (loading would have failed already): its name is all there is."""
    return hashlib.sha256(f"name:{name}".encode()).digest()


def data_digest(train: Iterable[Any], val: Iterable[Any]) -> bytes:
    """sha256 of every example's sample id, lengths, tokens and labels, train then validation, as little-endian
    int64s. struct packs a tuple of ints about 3x faster than array or numpy convert it (measured): this runs
    at every round's start, after the tokenising that made the rows (which costs far more)."""
    sha = hashlib.sha256()
    packers: dict[int, struct.Struct] = {}

    def packed(values: tuple[int, ...]) -> bytes:
        packer = packers.get(len(values))
        if packer is None:
            packer = packers[len(values)] = struct.Struct(f"<{len(values)}q")
        return packer.pack(*values)

    for part, examples in ((b"train", train), (b"val", val)):
        sha.update(part)
        for example in examples:
            ids, labels = tuple(example.input_ids), tuple(example.labels)
            sha.update(_HEADER.pack(example.sample_id, len(ids), len(labels)))
            sha.update(packed(ids))
            sha.update(packed(labels))
    return sha.digest()


_HEADER = struct.Struct("<3q")


def training_settings(job: Mapping[str, Any]) -> dict[str, Any]:
    """The job dict (job_to_dict) without the keys that are each box's own."""
    settings = {key: value for key, value in job.items() if key not in BOX_LOCAL_KEYS}
    if isinstance(settings.get("p2pft"), Mapping):
        settings["p2pft"] = {k: v for k, v in settings["p2pft"].items() if k not in BOX_LOCAL_P2PFT_KEYS}
    return settings


def spec_digest(job: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(json.dumps(training_settings(job), sort_keys=True, default=str).encode()).digest()


def package_versions(packages: Sequence[str] = PACKAGES) -> tuple[tuple[str, str], ...]:
    """Each package's version: the imported module's own (no metadata scan) when loaded, else its metadata."""
    from importlib import metadata

    versions = []
    for name in packages:
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None) if module is not None else None
        if not isinstance(version, str):
            try:
                version = metadata.version(name)
            except metadata.PackageNotFoundError:
                version = ""
        versions.append((name, version))
    return tuple(versions)


# ---- the wire form ----------------------------------------------------------------------------------------

def _text_field(text: str, size: int) -> bytes:
    raw = text.encode()[:size]
    return raw.decode(errors="ignore").encode().ljust(size, b"\0")   # never a cut multi-byte character


def encode(fingerprint: Fingerprint) -> bytes:
    if len(fingerprint.versions) > VERSION_SLOTS:
        raise ValueError(f"at most {VERSION_SLOTS} packages fit in a fingerprint")
    parts = [bytes([LAYOUT]), _text_field(fingerprint.box, NAME_BYTES), _text_field(fingerprint.node_id, NAME_BYTES)]
    for digest in (fingerprint.model, fingerprint.spec, fingerprint.data):
        if len(digest) != DIGEST_BYTES:
            raise ValueError(f"a digest is {DIGEST_BYTES} bytes, not {len(digest)}")
        parts.append(digest)
    for _, version in fingerprint.versions:
        parts.append(_text_field(version, VERSION_BYTES))
    return b"".join(parts).ljust(FINGERPRINT_BYTES, b"\0")


def decode(raw: bytes, packages: Sequence[str] = PACKAGES) -> Fingerprint:
    """The inverse of `encode` for the package names this side knows (the same list on every box: a p2pft
    version with another list differs in its own version slot, which is what the verdict then says)."""
    if len(raw) != FINGERPRINT_BYTES or raw[0] != LAYOUT:
        raise FingerprintError(f"a rank sent a fingerprint this p2pft cannot read (layout {raw[:1].hex()}, "
                               f"{len(raw)} bytes): run the same p2pft version on every box")
    offset = 1

    def take(size: int) -> bytes:
        nonlocal offset
        chunk = raw[offset:offset + size]
        offset += size
        return chunk

    def text(size: int) -> str:
        return take(size).rstrip(b"\0").decode(errors="replace")

    box, node_id = text(NAME_BYTES), text(NAME_BYTES)
    model, spec, data = take(DIGEST_BYTES), take(DIGEST_BYTES), take(DIGEST_BYTES)
    versions = tuple((name, text(VERSION_BYTES)) for name in packages)
    return Fingerprint(box=box, node_id=node_id, model=model, spec=spec, data=data, versions=versions)


# ---- the verdict ------------------------------------------------------------------------------------------

def _possessive(labels: Sequence[str]) -> str:
    names = [f"{label}'s" for label in labels]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _split(values: Sequence[tuple[Fingerprint, Any]]) -> tuple[Any, list[Fingerprint], Any] | None:
    """(the value most boxes hold, the fingerprints of the boxes that differ, the first differing value), or
    None when all agree. Ties go to the value of the lowest rank, so every rank reaches the same verdict."""
    distinct = list(dict.fromkeys(value for _, value in values))
    if len(distinct) <= 1:
        return None
    boxes_with: Counter[Any] = Counter()
    for value in distinct:
        boxes_with[value] = len({fp.node_id for fp, v in values if v == value})
    reference = max(distinct, key=lambda value: (boxes_with[value], -distinct.index(value)))
    odd = [fp for fp, value in values if value != reference]
    unique_odd = list({fp.node_id: fp for fp in odd}.values())
    first_odd_value = next(value for _, value in values if value != reference)
    return reference, unique_odd, first_odd_value


def _labeller(prints: Sequence[Fingerprint]) -> Callable[[Fingerprint], str]:
    """A box's name, with its node id only when another box of the round has the same name (hostnames of
    cloned machines, or several test nodes on one host)."""
    nodes_named: dict[str, set[str]] = {}
    for fp in prints:
        nodes_named.setdefault(fp.box, set()).add(fp.node_id)

    def label(fp: Fingerprint) -> str:
        shared = len(nodes_named[fp.box]) > 1 or not fp.box
        return f"{fp.box} (node {fp.node_id})" if shared and fp.node_id != fp.box else fp.box

    return label


def mismatch(prints: Sequence[Fingerprint]) -> str | None:
    """None when every rank would train on the same thing; else one line naming the boxes that differ from
    the others (the majority, or rank 0's box on a tie), the component and what to do."""
    if len(prints) < 2:
        return None
    label = _labeller(prints)
    for component in COMPONENTS:
        if component == "versions":
            message = _versions_mismatch(prints, label)
        else:
            values = [(fp, getattr(fp, component)) for fp in prints
                      if not (component == "model" and getattr(fp, component) == NOT_CHECKED)]
            split = _split(values)
            message = _digest_message(component, values, split, label) if split is not None else None
        if message:
            return message
    return None


_WHAT = {
    "model": ("base model", "model files sha256",
              "give every box the same model files, or remove the model directory from the boxes that differ so "
              "p2pft ships the submitting box's copy"),
    "spec": ("job settings", "training settings sha256",
             "the boxes read the job differently: run the same p2pft version on every box"),
    "data": ("prepared data", "tokenised rows sha256",
             "the same dataset, template and tokenizer give the same rows: give every box the same dataset files "
             "and tokenizer, and the same tokenizers and transformers versions"),
}


def _digest_message(component: str, values: Sequence[tuple[Fingerprint, bytes]],
                    split: tuple[Any, list[Fingerprint], Any], label: Callable[[Fingerprint], str]) -> str:
    reference, odd, odd_value = split
    reference_boxes = [label(fp) for fp, value in values if value == reference]
    what, digest_name, advice = _WHAT[component]
    verb = "differs" if len(odd) == 1 else "differ"
    subject, reference_box = _possessive([label(fp) for fp in odd]), _possessive(reference_boxes[:1])
    return (f"{subject} {what} {verb} from {reference_box} ({digest_name} {odd_value.hex()[:12]}.. vs "
            f"{reference.hex()[:12]}..): {advice}")


def _versions_mismatch(prints: Sequence[Fingerprint], label: Callable[[Fingerprint], str]) -> str | None:
    for index, (package, _) in enumerate(prints[0].versions):
        values = [(fp, fp.versions[index][1] if index < len(fp.versions) else "") for fp in prints]
        split = _split(values)
        if split is None:
            continue
        reference, odd, odd_value = split
        reference_box = next(label(fp) for fp, value in values if value == reference)
        shown = [label(fp) for fp in odd]
        subject = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"
        verb = "has" if len(shown) == 1 else "have"
        return (f"{subject} {verb} {package} {odd_value or '(not installed)'} but {reference_box} has {package} "
                f"{reference or '(not installed)'}: install the same {package} version on every box, so every "
                "box computes the same thing")
    return None
