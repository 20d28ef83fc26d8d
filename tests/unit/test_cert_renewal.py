"""Certificate renewal's rules on real certificates and real files: when it is due, what the CA side signs and
records, what the renewing side accepts, a swap cut between its two renames, the CA box renewing itself."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from p2pft.cli.cluster_render import cert_note
from p2pft.daemon.renewal import CertificateRenewer, RenewalFailed
from p2pft.daemon.settings import SettingsError, parse_settings
from p2pft.membership.cluster import Cluster
from p2pft.membership.state import initial_state
from p2pft.membership.versions import local_versions
from p2pft.security.certs import issue_node_cert, make_csr, new_node_key, sign_node_key
from p2pft.security.credentials import Credentials, create_cluster, issue_local_node, load_credentials
from p2pft.security.enrolment import issued_nodes
from p2pft.security.renewal import (
    IdentityRefused,
    NotCaHolder,
    RenewalRefused,
    cert_facts,
    check_renewed,
    read_ca_holder,
    renewal_due,
    sign_renewal,
    write_renewed,
)

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def cluster(tmp_path: Path) -> dict[str, Path]:
    dirs = {"ca": tmp_path / "ca", "box": tmp_path / "box"}
    create_cluster(dirs["ca"], "ca-node")
    issue_local_node(dirs["ca"], dirs["box"], "box-node", days=10)
    return dirs


def test_renewal_is_due_inside_the_threshold_only() -> None:
    assert renewal_due(NOW + dt.timedelta(days=29), NOW, 30)
    assert not renewal_due(NOW + dt.timedelta(days=31), NOW, 30)
    assert renewal_due(NOW - dt.timedelta(days=1), NOW, 30)


def test_the_ca_signs_the_callers_own_identity_and_records_the_serial(cluster: dict[str, Path]) -> None:
    key, key_pem = new_node_key()
    cert = sign_renewal(cluster["ca"], "box-node", make_csr(key, "box-node"))
    facts = cert_facts(cert)
    assert facts.node_id == "box-node" and facts.not_after - dt.datetime.now(dt.UTC) > dt.timedelta(days=364)
    entry = issued_nodes(cluster["ca"])["box-node"]
    assert entry["via"] == "renewal" and entry["serials"][-1] == facts.serial and len(entry["serials"]) == 2
    old = cert_facts(load_credentials(cluster["box"]).node_cert_pem)
    ca_cert = load_credentials(cluster["ca"]).ca_cert_pem
    assert check_renewed(cert, ca_cert, "box-node", key_pem, old.not_after).serial == facts.serial
    # One renewal per node per 10 minutes: a member cannot grow issued.json in a loop.
    with pytest.raises(RenewalRefused, match="less than 10 minutes"):
        sign_renewal(cluster["ca"], "box-node", make_csr(key, "box-node"))


def test_another_identity_a_non_node_caller_and_a_box_without_the_ca_key_are_refused(
        cluster: dict[str, Path]) -> None:
    key, _ = new_node_key()
    with pytest.raises(IdentityRefused, match="a box renews only its own"):
        sign_renewal(cluster["ca"], "box-node", make_csr(key, "ca-node"))
    with pytest.raises(IdentityRefused, match="only a node"):
        sign_renewal(cluster["ca"], "@local-operator", make_csr(key, "@local-operator"))
    with pytest.raises(NotCaHolder):
        sign_renewal(cluster["box"], "ca-node", make_csr(key, "ca-node"))
    with pytest.raises(RenewalRefused, match="no PEM"):
        sign_renewal(cluster["ca"], "box-node", b"not a csr")
    assert issued_nodes(cluster["ca"])["box-node"]["via"] == "local"    # nothing was signed


def test_the_renewing_side_refuses_a_certificate_for_another_key_node_or_ca(cluster: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    ca = load_credentials(cluster["ca"])
    ca_key = (cluster["ca"] / "tls" / "ca.key").read_bytes()
    key, key_pem = new_node_key()
    _, other_key_pem = new_node_key()
    cert = sign_node_key(ca.ca_cert_pem, ca_key, "box-node", key.public_key())
    soon = NOW.replace(year=2020)
    with pytest.raises(ValueError, match="another key"):
        check_renewed(cert, ca.ca_cert_pem, "box-node", other_key_pem, soon)
    with pytest.raises(ValueError, match="not box-other"):
        check_renewed(cert, ca.ca_cert_pem, "box-other", key_pem, soon)
    with pytest.raises(ValueError, match="no later"):
        check_renewed(cert, ca.ca_cert_pem, "box-node", key_pem, cert_facts(cert).not_after)
    create_cluster(tmp_path / "stranger", "x")
    with pytest.raises(ValueError, match="not signed by this cluster"):
        check_renewed(cert, load_credentials(tmp_path / "stranger").ca_cert_pem, "box-node", key_pem, soon)


def test_a_swap_cut_between_its_two_renames_is_finished_on_load(cluster: dict[str, Path]) -> None:
    tls = cluster["box"] / "tls"
    ca = load_credentials(cluster["ca"])
    cert, key = issue_node_cert(ca.ca_cert_pem, (cluster["ca"] / "tls" / "ca.key").read_bytes(), "box-node")
    (tls / "node.crt.next").write_bytes(cert)
    (tls / "node.key").write_bytes(key)
    # node.key is the new key, node.crt still the old certificate: the state a crash between the renames leaves.
    loaded = load_credentials(cluster["box"])
    assert loaded.node_cert_pem == cert and loaded.node_key_pem == key
    assert not (tls / "node.crt.next").exists()
    # A .next key without its certificate (cut while writing) is dropped; the current pair stays.
    (tls / "node.key.next").write_bytes(new_node_key()[1])
    assert load_credentials(cluster["box"]).node_cert_pem == cert
    write_renewed(cluster["box"], cert, key)
    assert not list(tls.glob("*.next")) and (tls / "node.key").stat().st_mode & 0o777 == 0o600


def test_the_ca_box_renews_its_own_certificate_locally(tmp_path: Path) -> None:
    state_dir = tmp_path / "ca"
    create_cluster(state_dir, "ca-node")
    tls = state_dir / "tls"
    short, short_key = issue_node_cert((tls / "ca.crt").read_bytes(), (tls / "ca.key").read_bytes(), "ca-node",
                                       days=5)
    write_renewed(state_dir, short, short_key)
    applied: list[Credentials] = []
    cluster = Cluster(initial_state("ca-node", local_versions()), Counter())
    renewer = CertificateRenewer(state_dir, cluster, lambda: load_credentials(state_dir), applied.append,
                                 lambda: 30.0, lambda: 0.1)
    assert asyncio.run(renewer.check()) is True
    assert len(applied) == 1 and applied[0].node_cert_pem == (tls / "node.crt").read_bytes() != short
    assert cert_facts(applied[0].node_cert_pem).node_id == "ca-node"
    assert asyncio.run(renewer.check()) is False    # a year left now: nothing to do
    assert issued_nodes(state_dir)["ca-node"]["via"] == "renewal"


def test_a_member_with_no_live_peer_fails_in_one_line_and_keeps_its_certificate(cluster: dict[str, Path]) -> None:
    applied: list[Credentials] = []
    box = Cluster(initial_state("box-node", local_versions()), Counter())
    renewer = CertificateRenewer(cluster["box"], box, lambda: load_credentials(cluster["box"]), applied.append,
                                 lambda: 30.0, lambda: 0.1)
    before = (cluster["box"] / "tls" / "node.crt").read_bytes()
    with pytest.raises(RenewalFailed, match="no live peer"):
        asyncio.run(renewer.check())
    assert not applied and (cluster["box"] / "tls" / "node.crt").read_bytes() == before
    assert read_ca_holder(cluster["box"]) == "ca-node"    # where it asks first once the CA box is live


def test_renew_before_days_is_a_setting_with_bounds() -> None:
    assert parse_settings(["--state-dir", "/tmp/x"], {}).renew_before_days == 30
    assert parse_settings(["--state-dir", "/tmp/x"], {"P2PFT_RENEW_BEFORE_DAYS": "60"}).renew_before_days == 60
    with pytest.raises(SettingsError, match="renew_before_days"):
        parse_settings(["--state-dir", "/tmp/x", "--renew-before-days", "400"], {})


def test_status_notes_a_certificate_about_to_run_out() -> None:
    assert cert_note(0, 100) == ""                                    # not seen
    assert cert_note(100 + 10 * 86400, 100) == "certificate 10d left"
    assert cert_note(100 + 100 * 86400, 100) == ""
    assert cert_note(100 + 100 * 86400, 100, wide=True) == "certificate 100d left"
    assert cert_note(50, 100) == "certificate EXPIRED"
