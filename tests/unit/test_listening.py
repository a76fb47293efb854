"""What `aios serve` says when it cannot listen, by what the system answered."""

from __future__ import annotations

import errno
import socket

import pytest

from bot.listening import CannotListen, listening_socket, url, why_not


def test_port_0_listens_on_a_port_the_system_picks_and_its_url_names_it() -> None:
    with listening_socket("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
        assert port != 0 and url(sock) == f"http://127.0.0.1:{port}"
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass


def test_an_address_in_use_says_to_choose_another_port() -> None:
    with listening_socket("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(CannotListen) as refused:
            listening_socket("127.0.0.1", port)
    assert str(refused.value) == (
        f"cannot listen on 127.0.0.1:{port} (Address already in use); choose another --port (or PORT), "
        "or stop what is listening there"
    )


def test_a_port_that_needs_privileges_says_to_choose_one_above_1024() -> None:
    # Root may bind any port, so the system's refusal is written out here.
    said = why_not("0.0.0.0", 80, PermissionError(errno.EACCES, "Permission denied"))
    assert said == (
        "cannot listen on 0.0.0.0:80 (Permission denied): port 80 needs privileges; choose one above 1024 "
        "with --port (or PORT)"
    )


def test_a_port_out_of_range_is_refused_before_asking_the_system() -> None:
    with pytest.raises(CannotListen, match="a port is a number from 0 to 65535; check --port"):
        listening_socket("127.0.0.1", 70000)
