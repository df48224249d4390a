import base64
import json

import pytest
from pydantic import ValidationError

from shared.config import Settings, SettingsError, load_settings


def test_contract_defaults(monkeypatch):
    for name in (
        "SOLEWATCH_HTTP_PORT",
        "SOLEWATCH_LISTENER_PORT",
        "SOLEWATCH_BIND",
        "SOLEWATCH_DATA_DIR",
        "SOLEWATCH_OFFLINE_AFTER",
        "SOLEWATCH_CONFIG_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.http_port, settings.listener_port, settings.bind) == (8000, 9000, "127.0.0.1")
    assert str(settings.data_dir) == "solewatch-data"
    assert settings.offline_after == 600
    assert settings.idle_timeout == 300


def test_environment_variables_are_read(monkeypatch, tmp_path):
    monkeypatch.setenv("SOLEWATCH_LISTENER_PORT", "9100")
    monkeypatch.setenv("SOLEWATCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC123")
    settings = load_settings()
    assert settings.listener_port == 9100
    assert settings.sqlite_path == tmp_path / "solewatch.db"
    assert settings.twilio_account_sid == "AC123"


@pytest.mark.parametrize(
    "suffix, content",
    [
        (".toml", "listener_port = 9200\nidle_timeout = 42.5\n"),
        (".json", json.dumps({"listener_port": 9200, "idle_timeout": 42.5})),
        (".env", "SOLEWATCH_LISTENER_PORT=9200\nSOLEWATCH_IDLE_TIMEOUT=42.5\n"),
    ],
)
def test_config_file_in_each_format(monkeypatch, tmp_path, suffix, content):
    path = tmp_path / f"solewatch{suffix}"
    path.write_text(content)
    monkeypatch.setenv("SOLEWATCH_CONFIG_FILE", str(path))
    settings = load_settings()
    assert (settings.listener_port, settings.idle_timeout) == (9200, 42.5)


def test_environment_wins_over_the_config_file(monkeypatch, tmp_path):
    path = tmp_path / "solewatch.toml"
    path.write_text("listener_port = 9200\n")
    monkeypatch.setenv("SOLEWATCH_CONFIG_FILE", str(path))
    monkeypatch.setenv("SOLEWATCH_LISTENER_PORT", "9300")
    assert load_settings().listener_port == 9300


def test_missing_config_file_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SOLEWATCH_CONFIG_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(SettingsError, match=r"nope\.toml"):
        load_settings()


def test_file_settings_can_come_base64_encoded(monkeypatch):
    monkeypatch.setenv("SOLEWATCH_TLS_CERT_BASE64", base64.b64encode(b"CERT").decode())
    monkeypatch.setenv("SOLEWATCH_TLS_KEY_BASE64", base64.b64encode(b"KEY").decode())
    settings = load_settings()
    assert settings.tls_cert is not None and settings.tls_cert.read_bytes() == b"CERT"
    assert settings.tls_key is not None and settings.tls_key.read_bytes() == b"KEY"
    assert settings.tls_key.stat().st_mode & 0o077 == 0  # private to the service's user


def test_bad_base64_is_refused(monkeypatch):
    monkeypatch.setenv("SOLEWATCH_TLS_CERT_BASE64", "not base64!")
    monkeypatch.setenv("SOLEWATCH_TLS_KEY_BASE64", base64.b64encode(b"KEY").decode())
    with pytest.raises((SettingsError, ValidationError), match="base64"):
        load_settings()


def test_a_certificate_needs_its_key(tmp_path):
    with pytest.raises((SettingsError, ValidationError), match="both"):
        Settings(tls_cert=tmp_path / "cert.pem")


def test_out_of_range_port_is_refused(monkeypatch):
    monkeypatch.setenv("SOLEWATCH_HTTP_PORT", "70000")
    with pytest.raises(ValidationError):
        load_settings()
