"""rediss:// checks the server's certificate and its host name (issue 18.4), whatever the
installed redis-py's defaults; a private CA and a client certificate are URL parameters.
Real TLS servers (redis-server --tls-port) with certificates made here by openssl."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.servers import REDIS_SERVER, free_port
from tests.conftest import Singlerun
from tests.network.fixtures import available

pytestmark = pytest.mark.skipif(
    not available("redis") or shutil.which("openssl") is None, reason="no redis or openssl"
)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(d: Path) -> None:
    """A CA, and two server certificates it signed: one for 127.0.0.1, one for a host name
    that is not the one the client dials."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=singlerun test CA", "-keyout", "ca.key", "-out", "ca.crt", cwd=d)  # fmt: skip
    for name, san in (("right", "IP:127.0.0.1"), ("wrong", "DNS:wrong.example")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)  # fmt: skip
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
                 "-out", f"{name}.crt", cwd=d)  # fmt: skip


def _tls_server(d: Path, cert: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    argv = [str(REDIS_SERVER), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(d / f"{cert}.crt"), "--tls-key-file", str(d / f"{cert}.key"),
            "--tls-ca-cert-file", str(d / "ca.crt"), "--tls-auth-clients", "no",
            "--save", "", "--appendonly", "no", "--dir", str(d)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            assert time.monotonic() < deadline, "the TLS redis-server did not start"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tls")
    _certificates(d)
    return d


@pytest.fixture
def right(certs: Path) -> Iterator[int]:
    """A TLS server whose certificate is for 127.0.0.1 (the test ends every process it
    started, so each test starts its own)."""
    proc, port = _tls_server(certs, "right")
    yield port
    proc.kill()
    proc.wait()


@pytest.fixture
def wrong(certs: Path) -> Iterator[int]:
    proc, port = _tls_server(certs, "wrong")
    yield port
    proc.kill()
    proc.wait()


def test_a_certificate_from_the_named_ca_for_the_right_host_is_accepted(sr, certs, right):
    url = f"rediss://127.0.0.1:{right}/0?prefix=tls:&ssl_ca_certs={certs / 'ca.crt'}"
    r = sr.run("--backend", url, "-n", "t", "--", "echo", "over TLS")
    assert (r.returncode, r.stdout, r.stderr) == (0, "over TLS\n", "")


def test_a_certificate_for_another_host_name_is_refused(sr, certs, wrong):
    url = f"rediss://127.0.0.1:{wrong}/0?ssl_ca_certs={certs / 'ca.crt'}"
    r = sr.run("--backend", url, "-n", "t", "--", "echo", "ran")
    assert (r.returncode, r.stdout) == (125, "")
    assert r.stderr.startswith(f"singlerun: cannot reach rediss://127.0.0.1:{wrong}/0: ")
    assert "127.0.0.1" in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_a_certificate_of_an_unknown_ca_is_refused(sr, right):
    r = sr.run("--backend", f"rediss://127.0.0.1:{right}/0", "-n", "t", "--", "echo", "ran")
    assert (r.returncode, r.stdout) == (125, "")
    assert "certificate verify failed" in r.stderr, r.stderr


def test_tls_parameters_belong_to_rediss_only(sr: Singlerun):
    r = sr.run("--backend", "redis://127.0.0.1:1/0?ssl_ca_certs=/x", "-n", "t", "--", "true")
    assert r.returncode == 2
    assert (
        r.stderr == "singlerun: invalid --backend URL: ssl_ca_certs is for rediss:// (TLS) only\n"
    )
