"""The daemon binds its address before it starts anything, and a failed bind is one line, not a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.daemon.service import ListenError, bind_listener

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "production"


def test_taken_port_fails_start_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        command = [sys.executable, "-m", "runtime.cli", "daemon", "--rules", str(EXAMPLE), "--env", "production"]
        command += ["--state", str(tmp_path / "state"), "--listen", f"127.0.0.1:{port}", "--no-notify"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert result.returncode == 1
    expected = (
        f"irules: cannot listen on 127.0.0.1:{port}: the address is in use by another process; "
        "stop it or choose another port with --listen"
    )
    assert result.stderr.strip().splitlines() == [expected]
    # Nothing started: no store was created, and nothing claimed to listen.
    assert not (tmp_path / "state" / "irules.db").exists()
    assert "Traceback" not in result.stdout + result.stderr


def test_bound_socket_accepts_connections() -> None:
    listener = bind_listener("127.0.0.1", 0)
    try:
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        listener.close()


def test_address_of_no_interface_is_named() -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): no interface of a test machine has it.
    with pytest.raises(ListenError, match="no network interface of this host has that address"):
        bind_listener("192.0.2.1", 8080)
