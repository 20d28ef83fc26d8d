"""The pure parts of the round-start fingerprint (issue 10): the component digests, the persistent digest cache,
the wire form and the one-line verdict. tests/integration/test_fingerprint_rounds.py runs the real exchange."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from p2pft.jobs.exit_report import DETERMINISTIC, failed_exit
from p2pft.train.digest_cache import DIGEST_CACHE_ENV, DigestCache, default_cache_path
from p2pft.train.failure import classify
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
    model_files,
    package_versions,
    spec_digest,
)


def _model(directory: Path, weights: bytes = b"weights-1") -> Path:
    (directory / "sub").mkdir(parents=True)
    (directory / "config.json").write_text('{"hidden_size": 64}')
    (directory / "model.safetensors").write_bytes(weights)
    (directory / "sub" / "tokenizer.json").write_text("{}")
    return directory


def _digest(directory: Path, cache: DigestCache | None = None) -> bytes:
    return model_digest(directory, (cache or DigestCache(None)).digest)


# ---- model --------------------------------------------------------------------------------------------------

def test_the_model_digest_is_its_content_not_its_place(tmp_path: Path) -> None:
    a = _model(tmp_path / "a")
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    assert _digest(a) == _digest(b)
    (b / "model.safetensors").write_bytes(b"weights-2")   # same size, other bytes
    assert _digest(a) != _digest(b)


def test_an_extra_or_renamed_model_file_changes_the_digest(tmp_path: Path) -> None:
    a = _model(tmp_path / "a")
    before = _digest(a)
    (a / "sub" / "tokenizer.json").rename(a / "sub" / "tokenizer2.json")
    assert _digest(a) != before
    (a / "sub" / "tokenizer2.json").rename(a / "sub" / "tokenizer.json")
    assert _digest(a) == before
    (a / "generation_config.json").write_text("{}")
    assert _digest(a) != before


def test_docs_and_hidden_files_do_not_count(tmp_path: Path) -> None:
    a = _model(tmp_path / "a")
    before = _digest(a)
    (a / "README.md").write_text("my notes")
    (a / ".gitattributes").write_text("*")
    (a / ".cache" / "huggingface").mkdir(parents=True)
    (a / ".cache" / "huggingface" / "x.lock").write_text("")
    assert model_files(a) == ["config.json", "model.safetensors", "sub/tokenizer.json"]
    assert _digest(a) == before


def test_a_symlinked_file_counts_by_its_content(tmp_path: Path) -> None:
    """The Hugging Face cache's snapshots are symlinks into its blobs."""
    a = _model(tmp_path / "a")
    b = tmp_path / "b"
    (b / "sub").mkdir(parents=True)
    for rel in model_files(a):
        (b / rel).symlink_to(a / rel)
    assert _digest(a) == _digest(b)


# ---- the digest cache -------------------------------------------------------------------------------------

def test_a_warm_round_reads_no_model_bytes(tmp_path: Path) -> None:
    a = _model(tmp_path / "a", weights=b"w" * 100_000)
    cache_file = tmp_path / "cache" / "digests.json"
    first = DigestCache(cache_file)
    digest = _digest(a, first)
    first.save()
    assert first.hashed_bytes > 100_000
    second = DigestCache(cache_file)   # the next round: another process, the same file
    assert _digest(a, second) == digest
    assert second.hashed_bytes == 0


def test_a_rewrite_that_restores_size_and_mtime_is_hashed_again(tmp_path: Path) -> None:
    a = _model(tmp_path / "a")
    cache_file = tmp_path / "digests.json"
    cache = DigestCache(cache_file)
    before = _digest(a, cache)
    cache.save()
    weights = a / "model.safetensors"
    st = weights.stat()
    weights.write_bytes(b"weights-2")
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))   # ctime still moves
    again = DigestCache(cache_file)
    assert _digest(a, again) != before
    assert again.hashed_bytes > 0


def test_an_unreadable_cache_file_is_an_empty_cache(tmp_path: Path) -> None:
    cache_file = tmp_path / "digests.json"
    cache_file.write_text("{not json")
    a = _model(tmp_path / "a")
    cache = DigestCache(cache_file)
    assert _digest(a, cache) == _digest(a)
    cache.save()
    assert DigestCache(cache_file).entries   # rewritten whole


def test_the_cache_file_follows_the_environment(tmp_path: Path) -> None:
    assert default_cache_path({DIGEST_CACHE_ENV: str(tmp_path / "x.json")}) == tmp_path / "x.json"
    assert default_cache_path({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "p2pft" / "file-digests.json"


# ---- data, spec, versions ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Example:
    sample_id: int
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]


def test_the_data_digest_sees_every_token_label_and_order() -> None:
    rows = [_Example(0, (1, 2, 3), (-100, 2, 3)), _Example(1, (4, 5), (4, 5))]
    base = data_digest(rows, [])
    assert data_digest(list(rows), []) == base
    assert data_digest([rows[0], replace(rows[1], input_ids=(4, 6))], []) != base
    assert data_digest([rows[0], replace(rows[1], labels=(-100, 5))], []) != base
    assert data_digest(rows[::-1], []) != base
    assert data_digest(rows[:1], rows[1:]) != base             # a row moved from train to validation
    assert data_digest([_Example(0, (1, 2), (3,)), _Example(1, (), ())], []) != \
        data_digest([_Example(0, (1,), (2, 3)), _Example(1, (), ())], [])   # lengths are part of it


def test_the_spec_digest_ignores_each_box_s_paths_only() -> None:
    job = {"model_name_or_path": "/a/model", "dataset_dir": "/a/data", "output_dir": "/a/out",
           "learning_rate": 1e-4, "p2pft": {"global_batch_size": 16, "process_group_timeout_s": 30.0}}
    other_box = {**job, "model_name_or_path": "/state/jobs/x/model", "dataset_dir": "/b", "output_dir": "/c",
                 "p2pft": {"global_batch_size": 16, "process_group_timeout_s": 90.0}}
    assert spec_digest(job) == spec_digest(other_box)
    assert spec_digest(job) != spec_digest({**job, "learning_rate": 2e-4})
    assert spec_digest(job) != spec_digest({**job, "p2pft": {"global_batch_size": 32}})


def test_the_versions_are_the_installed_ones() -> None:
    import numpy

    import p2pft

    versions = dict(package_versions())
    assert versions["numpy"] == numpy.__version__ and versions["p2pft"] == p2pft.__version__
    assert dict(package_versions(("no-such-package-p2pft",))) == {"no-such-package-p2pft": ""}


# ---- wire form and verdict --------------------------------------------------------------------------------

def _print(box: str, *, model: bytes = b"m" * 32, spec: bytes = b"s" * 32, data: bytes = b"d" * 32,
           numpy: str = "2.1.0", node: str | None = None) -> Fingerprint:
    versions = (("torch", "2.13.0"), ("transformers", "4.57.0"), ("peft", "0.17.0"), ("numpy", numpy),
                ("p2pft", "0.1.0"))
    return Fingerprint(box=box, node_id=node if node is not None else f"{box}-id", model=model, spec=spec, data=data,
                       versions=versions)


def test_the_wire_form_is_fixed_size_and_round_trips() -> None:
    fp = _print("box-é", numpy="2.1.0rc1+local")
    raw = encode(fp)
    assert len(raw) == FINGERPRINT_BYTES
    assert decode(raw) == fp
    long = replace(fp, box="é" * 100)   # cut at a character boundary, never mid-character
    assert decode(encode(long)).box == "é" * 32


def test_bytes_of_another_layout_are_refused_in_words() -> None:
    with pytest.raises(FingerprintError, match="same p2pft version"):
        decode(b"\x07" + bytes(FINGERPRINT_BYTES - 1))


def test_agreeing_ranks_have_no_verdict() -> None:
    assert mismatch([_print("box-a"), _print("box-a"), _print("box-b")]) is None
    assert mismatch([_print("box-a")]) is None


def test_a_different_model_names_both_boxes_and_both_digests() -> None:
    message = mismatch([_print("box-a", model=bytes.fromhex("9f8e" * 16)),
                        _print("box-b", model=bytes.fromhex("1a2b" * 16))])
    assert message is not None
    assert message.startswith("box-b's base model differs from box-a's (model files sha256 1a2b1a2b1a2b.. vs "
                              "9f8e9f8e9f8e..)")
    assert "ships the submitting box's copy" in message


def test_the_odd_box_is_the_minority_even_when_it_holds_rank_0() -> None:
    message = mismatch([_print("box-a", model=b"x" * 32), _print("box-b"), _print("box-c")])
    assert message is not None and message.startswith("box-a's base model differs from box-b's")


def test_boxes_of_the_same_name_are_told_apart_by_node_id() -> None:
    message = mismatch([_print("host", node="a"), _print("host", node="b", model=b"x" * 32)])
    assert message is not None and message.startswith("host (node b)'s base model differs from host (node a)'s")
    message = mismatch([_print("host", node="a"), _print("host", node="b"), _print("other", node="c", numpy="1")])
    assert message is not None and message.startswith("other has numpy 1 but host (node a) has numpy 2.1.0")


def test_several_odd_boxes_are_all_named() -> None:
    message = mismatch([_print("box-a"), _print("box-b", model=b"x" * 32), _print("box-c", model=b"y" * 32),
                        _print("box-d"), _print("box-e")])
    assert message is not None and message.startswith("box-b's and box-c's base model differ from box-a's")


def test_ranks_that_left_the_model_to_their_box_s_local_rank_0_are_not_compared() -> None:
    prints = [_print("box-a", node="a"), _print("box-a", node="a", model=NOT_CHECKED), _print("box-b", node="b")]
    assert mismatch(prints) is None


def test_a_version_mismatch_names_the_package_and_both_versions() -> None:
    message = mismatch([_print("box-a"), _print("box-b", numpy="1.26.4")])
    assert message == ("box-b has numpy 1.26.4 but box-a has numpy 2.1.0: install the same numpy version on every "
                       "box, so every box computes the same thing")


def test_the_model_is_named_before_the_data_it_changes() -> None:
    message = mismatch([_print("box-a"), _print("box-b", model=b"x" * 32, data=b"y" * 32)])
    assert message is not None and "base model" in message and "prepared data" not in message


def test_a_data_mismatch_alone_says_so() -> None:
    message = mismatch([_print("box-a"), _print("box-b"), _print("box-c", data=b"y" * 32)])
    assert message is not None and message.startswith("box-c's prepared data differs from box-a's")


def test_the_mismatch_is_deterministic_so_the_job_fails_at_once() -> None:
    error = classify(FingerprintError("box-b's base model differs from box-a's"), rank=1, node_id="b", context={})
    assert error.deterministic and error.type == "FingerprintError"
    detail, cause = failed_exit("box-b", 1, error, None)
    assert cause == DETERMINISTIC and "box-b's base model differs" in detail


def test_a_background_digest_hands_its_error_to_the_waiter_and_never_holds_the_exit() -> None:
    import threading

    from p2pft.train.fingerprint_check import in_background

    release = threading.Event()
    slow = in_background(lambda: release.wait(30) and b"x")
    running = [t for t in threading.enumerate() if t.name == "p2pft-fingerprint"]
    assert running and all(t.daemon for t in running)
    release.set()
    assert slow.result(timeout=5) == b"x"
    failing = in_background(lambda: (_ for _ in ()).throw(PermissionError("model.safetensors")))
    with pytest.raises(PermissionError, match=r"model\.safetensors"):
        failing.result(timeout=5)
