"""``dicomcrypt echo`` against DCMTK ``storescp`` and against our own receiving node."""

from __future__ import annotations

import pytest

from dicomcrypt.cli.main import main
from dicomcrypt.net.address import parse_peer
from dicomcrypt.errors import AssociationError
from dicomcrypt.net.scu import echo
from helpers.dciodvfy import require_tool
from net.conftest import dcmtk_env, free_port, wait_for_port


@pytest.mark.peer
def test_echo_storescp(background, tmp_path, capsys):
    exe = require_tool("storescp")
    port = free_port()
    background([exe, "-aet", "STORESCP", "--output-directory", str(tmp_path), str(port)], env=dcmtk_env())
    wait_for_port(port)
    assert echo(parse_peer(f"STORESCP@127.0.0.1:{port}"), calling_aet="ECHOER") == 0x0000
    assert main(["echo", "--aet", "ECHOER", f"STORESCP@127.0.0.1:{port}"]) == 0
    assert "answered C-ECHO: 0x0000 Success" in capsys.readouterr().out


def test_echo_our_receiver(start_receiver, capsys):
    receiver = start_receiver()
    peer = f"RECEIVER@127.0.0.1:{receiver.port}"
    assert main(["echo", "--aet", "SENDER", peer]) == 0
    assert "0x0000 Success" in capsys.readouterr().out


def test_echo_our_receiver_over_mutual_tls(start_receiver, pki, capsys):
    from dicomcrypt.net.tls import server_context

    receiver = start_receiver(ssl_context=server_context(pki.server_cert, pki.server_key, pki.ca))
    peer = f"RECEIVER@127.0.0.1:{receiver.port}"
    trusted = ["--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key)]
    assert main(["echo", *trusted, peer]) == 0
    rogue = ["--tls-ca", str(pki.ca), "--tls-cert", str(pki.rogue_client_cert), "--tls-key", str(pki.rogue_client_key)]
    assert main(["echo", *rogue, peer]) == 3
    assert main(["echo", "--timeout", "5", peer]) == 3  # plain TCP on the TLS port
    assert "TLS handshake failed" in capsys.readouterr().err


def test_echo_nobody_listening(capsys):
    port = free_port()
    with pytest.raises(AssociationError, match="cannot connect"):
        echo(parse_peer(f"NOBODY@127.0.0.1:{port}"), calling_aet="ECHOER")
    assert main(["echo", f"NOBODY@127.0.0.1:{port}"]) == 3
    assert "Connection refused" in capsys.readouterr().err


def test_echo_bad_peer_address(capsys):
    assert main(["echo", "no-port-here"]) == 3
    assert "must be written AET@host:port" in capsys.readouterr().err
