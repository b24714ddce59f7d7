"""The agent's side of enrollment without a network: join strings (parsed, refused
without echoing the secret), the CA pin (the server's and the agent's computations agree),
``agent.json`` (0600 in 0700, refused when open), the GPU inventory sources."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import stat
from pathlib import Path

import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st

from safeboard.agent.inventory import FAKE_GPUS_ENV, detect_gpus, parse_nvidia_smi
from safeboard.agent.joinstring import parse_join_string
from safeboard.agent.state import AgentState, load, save
from safeboard.agents.credentials import (
    format_join_string,
    new_join_secret,
    parse_agent_credential,
    parse_join_secret,
    spki_pin,
)
from safeboard.client import CertificateInfo
from safeboard.errors import BadRequest, ConfigError

URL = "https://board.example:8443"
PIN = "pP1r" + "x" * 39


def test_a_join_string_made_by_the_server_parses_on_the_agent() -> None:
    secret = new_join_secret()
    text = format_join_string(secret, PIN, URL)
    parsed = parse_join_string(text)
    assert (parsed.token_id, parsed.secret, parsed.pin, parsed.url) == (
        secret.id,
        secret.secret,
        PIN,
        URL,
    )
    assert parsed.token == f"{secret.id}.{secret.secret}"
    assert secret.secret not in repr(parsed)
    assert secret.secret not in repr(secret)
    # The server reads both what the agent sends and a whole string.
    for sent in (parsed.token, text):
        again = parse_join_secret(sent)
        assert again is not None
        assert (again.id, again.secret) == (secret.id, secret.secret)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sbjoin1",
        f"sbjoin2.0123456789ab.{'s' * 32}.{PIN}@{URL}",
        f"sbjoin1.0123456789AB.{'s' * 32}.{PIN}@{URL}",  # upper-case id
        f"sbjoin1.0123456789ab.{'s' * 8}.{PIN}@{URL}",  # short secret
        f"sbjoin1.0123456789ab.{'s' * 32}.{PIN}@{URL}/path",
        f"sbjoin1.0123456789ab.{'s' * 32}.{PIN}@ftp://host",
        f"sbjoin1.0123456789ab.{'s' * 32}.@{URL}",  # https without a pin
        f"sbjoin1.0123456789ab.{'s' * 32}.{PIN}@http://127.0.0.1:8080",  # pin over http
        f"sbjoin1.0123456789ab.{'s' * 32}.{PIN}@https://host:99999",
    ],
)
def test_bad_join_strings_are_refused_without_echoing_them(text: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_join_string(text)
    assert "s" * 32 not in caught.value.message


@given(st.text(max_size=200))
def test_any_text_parses_or_is_refused_cleanly(text: str) -> None:
    with contextlib.suppress(BadRequest):
        parse_join_string(text)
    parse_join_secret(text)
    parse_agent_credential(text)


def test_plain_http_on_loopback_has_no_pin() -> None:
    parsed = parse_join_string(f"sbjoin1.0123456789ab.{'s' * 32}.@http://127.0.0.1:8080")
    assert parsed.pin == ""


def test_the_server_and_the_agent_compute_one_pin() -> None:
    ca = trustme.CA()
    der = CertificateInfo.from_pem(ca.cert_pem.bytes().decode()).der
    pin = spki_pin(der)
    assert CertificateInfo(der).spki_pin == pin
    assert len(pin) == 43
    assert "=" not in pin
    other = trustme.CA()
    assert spki_pin(CertificateInfo.from_pem(other.cert_pem.bytes().decode()).der) != pin


def test_agent_json_is_private(tmp_path: Path) -> None:
    state = AgentState(URL, "0123456789ab", "gpu-1", "gpu", "sb_agent_x", "PEM")
    path = save(tmp_path / "state", state)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load(tmp_path / "state") == state
    assert "sb_agent_x" not in repr(state)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load(tmp_path / "state")
    path.chmod(0o600)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="damaged"):
        load(tmp_path / "state")


def test_nvidia_smi_output_is_read() -> None:
    output = (
        "0, GPU-8f3c1a2b-0000-1111-2222-333344445555, NVIDIA H100 80GB HBM3, 81559\n"
        "1, GPU-9e4d2b3c-0000-1111-2222-333344445555, NVIDIA H100 80GB HBM3, [N/A]\n"
        "garbage line\n"
    )
    gpus = parse_nvidia_smi(output)
    assert [(g.index, g.model, g.memory_mib) for g in gpus] == [
        (0, "NVIDIA H100 80GB HBM3", 81559),
        (1, "NVIDIA H100 80GB HBM3", None),
    ]
    assert gpus[0].uuid == "GPU-8f3c1a2b-0000-1111-2222-333344445555"


def test_fake_gpus_replace_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = [{"index": 0, "uuid": "GPU-a", "model": "Fake", "memory_mib": 1024}]
    monkeypatch.setenv(FAKE_GPUS_ENV, json.dumps(fake))
    gpus, source = detect_gpus()
    assert source == "fake"
    assert [g.to_json() for g in gpus] == fake
    monkeypatch.setenv(FAKE_GPUS_ENV, "[{]")
    with pytest.raises(ConfigError, match=FAKE_GPUS_ENV):
        detect_gpus()


@pytest.fixture
def without_nvml() -> None:
    if importlib.util.find_spec("pynvml") is not None:
        pytest.skip("pynvml is installed: NVML answers first")


@pytest.mark.usefixtures("without_nvml")
def test_nvidia_smi_on_the_path_is_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A stand-in nvidia-smi (a real program on PATH) that prints what the query asks."""
    program = tmp_path / "nvidia-smi"
    program.write_text(
        "#!/bin/sh\n"
        '[ "$1" = "--query-gpu=index,uuid,name,memory.total" ] || exit 9\n'
        'echo "0, GPU-1234, NVIDIA H200, 143771"\n'
    )
    program.chmod(0o755)
    monkeypatch.delenv(FAKE_GPUS_ENV, raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}/bin{os.pathsep}/usr/bin")
    gpus, source = detect_gpus()
    assert source == "nvidia-smi"
    assert [g.to_json() for g in gpus] == [
        {"index": 0, "uuid": "GPU-1234", "model": "NVIDIA H200", "memory_mib": 143771}
    ]


@pytest.mark.usefixtures("without_nvml")
def test_no_gpu_tooling_means_no_gpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(FAKE_GPUS_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    assert detect_gpus() == ((), "none")


def test_a_machine_that_joined_is_not_joined_again_over_it(tmp_path: Path) -> None:
    """The check comes before any connection (the address here would refuse one)."""
    from safeboard.agent import detect, join

    state = AgentState(URL, "0123456789ab", "gpu-1", "gpu", "sb_agent_x", "PEM")
    save(tmp_path, state)
    text = f"sbjoin1.0123456789ab.{'s' * 32}.{PIN}@https://127.0.0.1:9"
    with pytest.raises(ConfigError, match="already joined"):
        join(text, tmp_path, machine=detect(), version="t", warn=print)
    assert load(tmp_path) == state
