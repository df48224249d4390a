"""The compose/ deployment of the distributed mode, checked without a Docker engine.

No Docker engine or compose plugin runs where these tests run, so nothing here
starts a container: the compose files are validated against the Compose
Specification's JSON schema, interpolated the way Compose does, and
cross-checked against the CLI, the settings model, the Dockerfile, the
HAProxy, Mosquitto and MongoDB configuration, and each other. Each test
asserts something a broken deployment would get wrong.

tests/data/compose-spec.json is the Compose Specification JSON schema (draft-07)
from the public compose-spec/compose-spec repository, file
schema/compose-spec.json at commit 170098ba07d9f53c383a41bfd4c5166b0a4529a6
(2026-06-23), under the Apache License 2.0; copied here from the team's shared
schemas because CI clones only this repository.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
import yaml
from pymongo.uri_parser import parse_uri

from shared.config import CONFIG_FILE_ENV, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yml"
COMPOSE_FILES = sorted([*COMPOSE_DIR.glob("*.yml"), *COMPOSE_DIR.glob("*.yaml")])
SCHEMA_FILE = ROOT / "tests" / "data" / "compose-spec.json"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
HAPROXY_CFG = COMPOSE_DIR / "haproxy.cfg"
MOSQUITTO_CONF = COMPOSE_DIR / "mosquitto.conf"

# The distributed mode's services (services/cli.py) and the one-shot before them.
SOLEWATCH_COMMANDS = {"migrate", "listener", "api", "authn", "wss", "notifications"}
SCALABLE = ("listener", "wss")
# Variables a solewatch container may have besides solewatch's own settings:
# uvicorn reads FORWARDED_ALLOW_IPS itself (which peers' X-Forwarded-* it trusts).
FOREIGN_SETTINGS = {"FORWARDED_ALLOW_IPS"}


# --- Compose interpolation -----------------------------------------------------------


class MissingVariable(Exception):
    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", re.DOTALL)


def _scan(text: str) -> Iterator[tuple[str, Any]]:
    """Compose's interpolation syntax as tokens: ("text", s) and ("ref", (name, operator, argument))."""
    i = 0
    while i < len(text):
        dollar = text.find("$", i)
        if dollar < 0:
            yield "text", text[i:]
            return
        if dollar > i:
            yield "text", text[i:dollar]
        following = text[dollar + 1 : dollar + 2]
        if following == "$":
            yield "text", "$"
            i = dollar + 2
        elif following == "{":
            depth, end = 1, dollar + 2
            while depth and end < len(text):
                if text.startswith("${", end):
                    depth, end = depth + 1, end + 2
                    continue
                depth -= text[end] == "}"
                end += 1
            if depth:
                raise ValueError(f"unclosed ${{ in {text!r}")
            match = _BRACED.fullmatch(text[dollar + 2 : end - 1])
            if match is None:
                raise ValueError(f"not Compose interpolation syntax: {text[dollar:end]!r}")
            yield "ref", match.groups()
            i = end
        else:
            match = _NAME.match(text, dollar + 1)
            if match is None:
                raise ValueError(f"a lone $ (write $$ for a literal one) in {text!r}")
            yield "ref", (match.group(), None, None)
            i = match.end()


def interpolate(text: str, env: dict[str, str]) -> str:
    out = []
    for kind, token in _scan(text):
        if kind == "text":
            out.append(token)
            continue
        name, operator, argument = token
        value = env.get(name)
        unset = value is None or (operator is not None and operator.startswith(":") and value == "")
        if operator in (":-", "-"):
            out.append(interpolate(argument, env) if unset else value)
        elif operator in (":?", "?"):
            if unset:
                raise MissingVariable(name, argument)
            out.append(value)
        elif operator in (":+", "+"):
            out.append("" if unset else interpolate(argument, env))
        else:
            out.append(value or "")
    return "".join(out)


def references(text: str) -> Iterator[tuple[str, str | None, str | None]]:
    for kind, token in _scan(text):
        if kind == "ref":
            yield token
            if token[2]:
                yield from references(token[2])


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(value, env) for value in node]
    return node


# --- loading ----------------------------------------------------------------------------


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@cache
def raw_compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


def env_example() -> tuple[dict[str, str], set[str]]:
    """compose/.env.example: its active assignments, and every name it mentions (commented out or not)."""
    active: dict[str, str] = {}
    mentioned: set[str] = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"\s*(#\s*)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if match:
            mentioned.add(match.group(2))
            if not match.group(1):
                active[match.group(2)] = match.group(3).strip()
    return active, mentioned


def required_variables() -> set[str]:
    return {name for text in _strings(raw_compose()) for name, op, _ in references(text) if op in (":?", "?")}


def sample_value(name: str) -> str:
    """A value a deployment could put in compose/.env for a required variable."""
    if name.endswith("EMAIL"):
        return "admin@example.com"
    return "0123456789abcdef" * 4  # 64 URL-safe characters: a password, or the JWT secret (32 or more)


def sample_env() -> dict[str, str]:
    return {name: sample_value(name) for name in required_variables()}


@cache
def compose() -> dict[str, Any]:
    """compose.yml as Compose sees it with a filled-in compose/.env and nothing optional set."""
    return interpolate_tree(raw_compose(), sample_env())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's environment; None for a key without a value (passed through when set, else unset)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in env)
        return {key: value for key, value in pairs}
    return {key: None if value is None else str(value) for key, value in env.items()}


def command(service: dict[str, Any]) -> list[str]:
    value = service.get("command") or []
    return shlex.split(value) if isinstance(value, str) else [str(word) for word in value]


def healthcheck_text(service: dict[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test", "")
    return test if isinstance(test, str) else " ".join(test)


def solewatch_services() -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in services().items()
        if isinstance(svc.get("build"), dict) and svc["build"].get("dockerfile") == "compose/Dockerfile"
    }


def service_running(command_word: str) -> str:
    """The compose service whose command is this solewatch subcommand."""
    names = [name for name, svc in solewatch_services().items() if command(svc)[:1] == [command_word]]
    assert len(names) == 1, f"expected one service running `solewatch {command_word}`, found {names}"
    return names[0]


def long_running(service: dict[str, Any]) -> bool:
    return str(service.get("restart", "no")) != "no"


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def settings_env_names() -> set[str]:
    """Every environment variable name Settings reads (upper case; it is not case sensitive)."""
    prefix = Settings.model_config.get("env_prefix", "")
    names = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.add(f"{prefix}{field_name}".upper())
        else:
            choices = alias.choices if hasattr(alias, "choices") else [alias]
            names.update(choice.upper() for choice in choices if isinstance(choice, str))
    return names


def settings_for(service_name: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a service's container would build from the environment compose gives it."""
    for key in list(os.environ):
        if key.upper().startswith(("SOLEWATCH_", "TWILIO_")) or key == CONFIG_FILE_ENV:
            monkeypatch.delenv(key)
    for key, value in environment(services()[service_name]).items():
        if value is not None:
            monkeypatch.setenv(key, value)
    return Settings()


def container_port(spec: Any) -> tuple[str | None, int]:
    """(published host port or None, container port) of a `ports` entry, short or long syntax."""
    if isinstance(spec, dict):
        published = spec.get("published")
        return (str(published) if published not in (None, "") else None), int(spec["target"])
    text = str(spec).split("/")[0]
    parts = text.rsplit(":", 2)
    if len(parts) == 1:
        return None, int(parts[0])
    return parts[-2] or None, int(parts[-1])


def duration_seconds(text: str) -> float:
    """HAProxy's time format: a number with an optional unit; milliseconds without one."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(us|ms|s|m|h|d)?", text)
    assert match, f"not an HAProxy duration: {text}"
    return (
        float(match.group(1))
        * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1e-3}[match.group(2)]
    )


# --- the Compose Specification ----------------------------------------------------------


@cache
def compose_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(document: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in compose_validator().iter_errors(document)
    ]


def test_there_is_a_compose_file():
    assert COMPOSE_FILE in COMPOSE_FILES


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_validates_against_the_compose_specification(path):
    document = load_yaml(path)
    assert schema_errors(document) == []
    # Compose validates the model it gets after interpolation: with a filled-in .env too.
    assert schema_errors(interpolate_tree(document, sample_env())) == []


def test_the_schema_catches_a_broken_service():
    """The validation above is not vacuous: the schema rejects what Compose would reject."""
    broken = {"services": {"api": {"image": "x", "depends_on": {"db": {"condition": "service_healty"}}}}}
    assert schema_errors(broken)
    assert schema_errors({"services": {"api": {"image": "x", "helthcheck": {}}}})


def test_the_schema_copy_is_the_compose_specification():
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["title"] == "Compose Specification"
    assert "service" in schema["definitions"]


# --- the solewatch services ---------------------------------------------------------------


def cli_subcommands() -> set[str]:
    from services.cli import _parser

    actions = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return set(actions[0].choices)


def test_every_distributed_service_is_in_the_compose_file():
    commands = {command(svc)[0] for svc in solewatch_services().values() if command(svc)}
    assert commands >= SOLEWATCH_COMMANDS


def test_solewatch_service_commands_are_cli_subcommands():
    subcommands = cli_subcommands()
    for name, svc in solewatch_services().items():
        words = command(svc)
        assert words, f"{name} has no command: the image's default only prints help"
        assert words[0] in subcommands, f"{name}: `solewatch {words[0]}` is not a subcommand of services/cli.py"
        assert "entrypoint" not in svc, f"{name} must keep the image's `solewatch` entrypoint"


def test_solewatch_services_share_one_image_built_from_the_dockerfile():
    built = solewatch_services()
    assert {svc.get("image") for svc in built.values()} == {next(iter(built.values()))["image"]}
    for name, svc in built.items():
        context = (COMPOSE_DIR / svc["build"]["context"]).resolve()
        assert context == ROOT, f"{name}: the build context must be the repository root"
        assert (context / svc["build"]["dockerfile"]).resolve() == DOCKERFILE
    # Nothing else runs that image without building it (it would be pulled, and fail).
    image = next(iter(built.values()))["image"]
    assert [n for n, s in services().items() if s.get("image") == image and n not in built] == []


def test_solewatch_variables_name_settings_fields():
    known = settings_env_names()
    for name, svc in solewatch_services().items():
        for key in environment(svc):
            if key.upper().startswith("SOLEWATCH_") or key.upper().startswith("TWILIO_"):
                assert key.upper() in known, f"{name}: {key} is not a field (or alias) of shared.config.Settings"
            else:
                assert key in FOREIGN_SETTINGS, f"{name}: {key} is neither a solewatch setting nor a known foreign one"
    # compose/.env uses the settings' own names for them: a typo there would be silently ignored.
    for text in _strings(raw_compose()):
        for variable, _, _ in references(text):
            if variable.startswith("SOLEWATCH_"):
                assert variable.upper() in known, f"${{{variable}}} is not a solewatch setting"


def test_every_solewatch_service_starts_with_the_settings_compose_gives_it(monkeypatch):
    for name, svc in solewatch_services().items():
        settings = settings_for(name, monkeypatch)
        assert settings.environment == "production", name
        assert settings.bind == "0.0.0.0", f"{name} would listen on the container's loopback only"
        assert settings.mongodb_url, f"{name} would use the embedded SQLite store"
        if long_running(svc):
            # An unset URL silently means the embedded, in-process default: a
            # service on its own would then talk to nobody.
            assert settings.amqp_url and settings.redis_url, f"{name} lacks a backend URL"


def test_the_listener_ingests_mqtt(monkeypatch):
    assert settings_for(service_running("listener"), monkeypatch).mqtt_url


def test_services_that_use_tokens_share_the_jwt_secret(monkeypatch):
    # authn signs, api and wss verify; migrate and authn check it at start (AccountsBootstrap)
    # and refuse to start without it in production.
    words = ("migrate", "authn", "api", "wss")
    secrets = {settings_for(service_running(word), monkeypatch).jwt_secret for word in words}
    assert None not in secrets and len(secrets) == 1


def test_migrate_and_authn_know_the_first_admin(monkeypatch):
    for word in ("migrate", "authn"):
        settings = settings_for(service_running(word), monkeypatch)
        assert settings.admin_email and settings.admin_password, f"{word} would create a demo admin"


def test_solewatch_healthchecks_probe_the_http_port(monkeypatch):
    for name, svc in solewatch_services().items():
        if not long_running(svc):
            continue
        port = settings_for(name, monkeypatch).http_port
        text = healthcheck_text(svc)
        assert re.search(rf"127\.0\.0\.1:{port}/(healthz|readyz)", text), f"{name}: {text}"
        assert "urllib" in text, f"{name}: the image has Python, not curl"


# --- variables and compose/.env.example ---------------------------------------------------


def test_required_variables_are_listed_in_env_example():
    active, _ = env_example()
    required = required_variables()
    assert {"SOLEWATCH_JWT_SECRET", "SOLEWATCH_ADMIN_EMAIL", "SOLEWATCH_ADMIN_PASSWORD"} <= required
    missing = sorted(required - set(active))
    assert missing == [], f"required by compose.yml but not assigned in .env.example: {missing}"


def test_every_variable_compose_reads_is_documented_in_env_example():
    _, mentioned = env_example()
    read = {name for text in _strings(raw_compose()) for name, _, _ in references(text)}
    # Keys without a value are passed through from compose/.env as well.
    for svc in raw_compose()["services"].values():
        read |= {key for key, value in environment(svc).items() if value is None}
    assert sorted(read - mentioned) == []


def test_a_required_variable_is_required_wherever_it_is_used():
    required = required_variables()
    for text in _strings(raw_compose()):
        for name, operator, _ in references(text):
            if name in required:
                assert operator in (":?", "?"), f"${{{name}}} is required elsewhere but may be empty here: {text}"


@pytest.mark.parametrize("name", sorted(required_variables()))
def test_compose_refuses_to_start_without_a_required_variable(name):
    env = sample_env()
    env[name] = ""  # as in .env.example, not filled in
    with pytest.raises(MissingVariable) as raised:
        interpolate_tree(raw_compose(), env)
    assert raised.value.name == name


def test_env_example_leaves_every_secret_empty():
    active, _ = env_example()
    assert {key: value for key, value in active.items() if value} == {}


# --- dependencies and health ----------------------------------------------------------------


def test_depends_on_targets_exist():
    for name, svc in services().items():
        for target in depends_on(svc):
            assert target in services(), f"{name} depends on {target}, which is not a service"


def test_services_waited_for_as_healthy_have_a_healthcheck():
    for name, svc in services().items():
        for target, condition in depends_on(svc).items():
            if condition == "service_healthy":
                check = services()[target].get("healthcheck") or {}
                assert check.get("test") and not check.get("disable"), f"{name} waits for {target}'s health"


def test_one_shots_are_waited_for_to_complete_and_do_not_restart():
    for name, svc in services().items():
        for target, condition in depends_on(svc).items():
            if condition == "service_completed_successfully":
                assert not long_running(services()[target]), f"{name} waits for {target}, which never completes"


def test_every_long_running_service_has_a_healthcheck():
    for name, svc in services().items():
        if long_running(svc):
            check = svc.get("healthcheck") or {}
            assert check.get("test") and not check.get("disable"), name


def test_solewatch_services_wait_for_migrate_and_for_their_backends():
    migrate = service_running("migrate")
    for name, svc in solewatch_services().items():
        deps = depends_on(svc)
        if name != migrate:
            assert deps.get(migrate) == "service_completed_successfully", name
        for key, value in environment(svc).items():
            if key.endswith("_URL") and value and "://" in value:
                host = urlsplit(value).hostname
                if host in services():
                    assert deps.get(host) == "service_healthy", f"{name} uses {host} ({key}) before it is ready"


# --- scaling and the published entry ------------------------------------------------------


@pytest.mark.parametrize("command_word", SCALABLE)
def test_scalable_services_have_no_container_name_and_no_fixed_host_port(command_word):
    svc = services()[service_running(command_word)]
    assert "container_name" not in svc
    for spec in svc.get("ports") or []:
        published, _ = container_port(spec)
        assert published is None, f"{command_word}: a fixed host port {published} allows one replica only"


def test_the_proxy_is_the_only_published_entry():
    published = {name for name, svc in services().items() if svc.get("ports")}
    assert published == {"proxy"}


def test_services_that_reach_outside_are_on_a_routed_network():
    networks = compose().get("networks") or {}
    internal = {name for name, spec in networks.items() if (spec or {}).get("internal")}
    for name in ("proxy", service_running("notifications")):
        attached = services()[name].get("networks") or ["default"]
        assert set(attached) - internal, f"{name} publishes ports or calls out, so it needs a non-internal network"


# --- backends -----------------------------------------------------------------------------


def _url(command_word: str, key: str) -> Any:
    return urlsplit(environment(services()[service_running(command_word)])[key])


def test_mongodb_is_a_replica_set_that_initiates_itself():
    mongo = services()["mongodb"]
    words = command(mongo)
    replica_set = words[words.index("--replSet") + 1]
    url = _url("api", "SOLEWATCH_MONGODB_URL")
    assert url.hostname == "mongodb"
    assert parse_qs(url.query)["replicaSet"] == [replica_set]
    check = healthcheck_text(mongo)
    assert "rs.initiate" in check and "NotYetInitialized" in check and "isWritablePrimary" in check
    assert re.search(rf"_id: '{replica_set}'", check)
    # The member's address is one every client resolves: the service name.
    assert re.findall(r"host: '([^']+)'", check) == [f"mongodb:{url.port or 27017}"]


def test_mongodb_keyfile_and_data_are_on_named_volumes():
    mongo = services()["mongodb"]
    words = command(mongo)
    keyfile = words[words.index("--keyFile") + 1]
    mounts = {spec.split(":")[1]: spec.split(":")[0] for spec in mongo["volumes"]}
    assert mounts.get("/data/db") in compose()["volumes"]
    assert any(
        keyfile.startswith(target + "/") and source in compose()["volumes"] for target, source in mounts.items()
    ), "a keyfile lost at each recreation cannot be shared"


def test_mongo_init_creates_the_account_solewatch_connects_with():
    mongo = services()["mongodb"]
    mounts = {spec.split(":")[1]: spec.split(":")[0] for spec in mongo["volumes"]}
    script_source = next(src for target, src in mounts.items() if target.startswith("/docker-entrypoint-initdb.d/"))
    script = (COMPOSE_DIR / script_source).read_text()
    mongo_env = environment(mongo)
    for variable in re.findall(r"process\.env\.([A-Z_]+)", script):
        assert variable in mongo_env, f"mongo-init.js reads {variable}, which the mongodb service does not set"
    url = _url("api", "SOLEWATCH_MONGODB_URL")
    database = url.path.lstrip("/")
    # The store takes its database from the URL (services/components.py, build_store).
    assert parse_uri(url.geturl())["database"] == database
    assert re.search(rf'getSiblingDB\("{database}"\)', script)
    assert parse_qs(url.query)["authSource"] == [database]
    assert (url.username, url.password) == (mongo_env["MONGO_APP_USER"], mongo_env["MONGO_APP_PASSWORD"])


def test_rabbitmq_keeps_its_node_name_and_checks_its_port():
    rabbit = services()["rabbitmq"]
    assert rabbit.get("hostname"), "the node name (and its data directory) follows the hostname"
    assert "rabbitmq-diagnostics" in healthcheck_text(rabbit)
    url = _url("api", "SOLEWATCH_AMQP_URL")
    env = environment(rabbit)
    assert (url.hostname, url.username, url.password) == (
        "rabbitmq",
        env["RABBITMQ_DEFAULT_USER"],
        env["RABBITMQ_DEFAULT_PASS"],
    )


def test_redis_persists_with_an_append_only_file_and_checks_its_password():
    redis = services()["redis"]
    words = command(redis)
    assert words[words.index("--appendonly") + 1] == "yes"
    assert any(spec.endswith(":/data") and spec.split(":")[0] in compose()["volumes"] for spec in redis["volumes"])
    url = _url("api", "SOLEWATCH_REDIS_URL")
    password = words[words.index("--requirepass") + 1]
    assert (url.hostname, url.password) == ("redis", password)
    assert environment(redis).get("REDISCLI_AUTH") == password, "the healthcheck's redis-cli must authenticate"


def mosquitto_conf() -> dict[str, list[str]]:
    conf: dict[str, list[str]] = {}
    for line in MOSQUITTO_CONF.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf.setdefault(key, []).append(value.strip())
    return conf


def test_mosquitto_config_matches_the_listener_url():
    mosquitto = services()["mosquitto"]
    assert any(spec.startswith("./mosquitto.conf:/mosquitto/config/mosquitto.conf") for spec in mosquitto["volumes"])
    conf = mosquitto_conf()
    url = _url("listener", "SOLEWATCH_MQTT_URL")
    assert url.hostname == "mosquitto"
    assert [value.split()[0] for value in conf["listener"]] == [str(url.port or 1883)]
    assert conf["allow_anonymous"] == ["false"]
    # The password file the broker reads is the one its command writes, from the listener's credentials.
    script = " ".join(command(mosquitto))
    assert conf["password_file"][0] in script
    env = environment(mosquitto)
    assert (url.username, url.password) == (env["MQTT_USER"], env["MQTT_PASSWORD"])
    data = conf["persistence_location"][0].rstrip("/")
    assert any(
        spec.split(":")[1] == data and spec.split(":")[0] in compose()["volumes"] for spec in mosquitto["volumes"]
    )


def test_bind_mounted_files_exist_and_named_volumes_are_declared():
    declared = set(compose().get("volumes") or {})
    for name, svc in services().items():
        for spec in svc.get("volumes") or []:
            source = spec["source"] if isinstance(spec, dict) else spec.split(":")[0]
            if source.startswith((".", "/")):
                assert (COMPOSE_DIR / source).exists(), f"{name} mounts {source}, which is not in compose/"
            else:
                assert source in declared, f"{name} uses volume {source}, not declared"


# --- the Dockerfile -----------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Instructions as (KEYWORD, arguments), grouped by stage; what precedes the first FROM is stage 0."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        if not current and raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        if current.strip():
            keyword, _, rest = current.strip().partition(" ")
            lines.append((keyword.upper(), rest.strip()))
        current = ""
    stages: list[list[tuple[str, str]]] = [[]]
    for keyword, rest in lines:
        if keyword == "FROM":
            stages.append([])
        stages[-1].append((keyword, rest))
    return stages


def _resolve_args(text: str, preamble: list[tuple[str, str]]) -> str:
    args = dict(rest.split("=", 1) for keyword, rest in preamble if keyword == "ARG" and "=" in rest)
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), text)


def test_dockerfile_is_multi_stage_on_python_311_slim():
    preamble, *stages = dockerfile_stages()
    assert len(stages) >= 2
    for stage in stages:
        base = _resolve_args(stage[0][1].split()[0], preamble)
        assert base == "python:3.11-slim", base
    final = stages[-1]
    assert any(keyword == "COPY" and "--from=" in rest for keyword, rest in final)


def test_dockerfile_runs_as_a_non_root_user():
    final = dockerfile_stages()[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "no USER: the services would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_dockerfile_healthcheck_probes_healthz_with_python():
    final = dockerfile_stages()[-1]
    checks = [rest for keyword, rest in final if keyword == "HEALTHCHECK"]
    assert checks and "NONE" not in checks[-1].split()
    assert "/healthz" in checks[-1] and "urllib" in checks[-1]
    assert not re.search(r"\b(curl|wget)\b", checks[-1])


def test_dockerfile_entrypoint_is_the_solewatch_console_script():
    final = dockerfile_stages()[-1]
    entrypoint = json.loads([rest for keyword, rest in final if keyword == "ENTRYPOINT"][-1])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["solewatch"] and "solewatch" in scripts
    module, _, function = scripts["solewatch"].partition(":")
    assert callable(getattr(importlib.import_module(module), function))


def test_dockerfile_exposes_the_http_and_device_ports():
    exposed = {
        int(port.split("/")[0])
        for keyword, rest in dockerfile_stages()[-1]
        if keyword == "EXPOSE"
        for port in rest.split()
    }
    defaults = Settings.model_fields
    ports = ("http_port", "listener_port", "gt06_port", "h02_port", "watch_port", "teltonika_port")
    assert {defaults[name].default for name in ports} <= exposed


def test_dockerfile_builds_the_wheel_from_every_package():
    """A package the wheel needs but the image never copies breaks `solewatch` at import time."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = {
        source.rstrip("/")
        for keyword, rest in dockerfile_stages()[1]
        if keyword == "COPY"
        for source in rest.split()[:-1]
        if not source.startswith("--")
    }
    packages = {pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", pyproject["project"]["readme"]} <= copied


def dockerignore_excludes(path: str) -> bool:
    """Whether .dockerignore keeps `path` (or a directory above it) out of the build context."""
    excluded = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = "".join(
            ".*" if part == "**" else "[^/]*" if part == "*" else "[^/]" if part == "?" else re.escape(part)
            for part in re.split(r"(\*\*|\*|\?)", pattern)
        )
        regex = regex.replace(".*/", "(.*/)?")
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_secrets_out_and_the_sources_in():
    for secret in ("compose/.env", ".env", "deploy/.env"):
        assert dockerignore_excludes(secret), secret
    for needed in (
        "pyproject.toml",
        "README.md",
        "shared/config.py",
        "services/cli.py",
        "bench/cli.py",
        "shared/protocols/xsole/__init__.py",
    ):
        assert not dockerignore_excludes(needed), needed


# --- HAProxy --------------------------------------------------------------------------------

SECTION_KEYWORDS = {
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "resolvers",
    "peers",
    "userlist",
    "cache",
    "program",
    "http-errors",
    "ring",
    "mailers",
}


@cache
def haproxy_sections() -> dict[tuple[str, str], list[list[str]]]:
    sections: dict[tuple[str, str], list[list[str]]] = {}
    current: list[list[str]] | None = None
    for raw in HAPROXY_CFG.read_text().splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        words = line.split()
        if words[0] in SECTION_KEYWORDS and not raw[:1].isspace():
            current = sections.setdefault((words[0], words[1] if len(words) > 1 else ""), [])
        else:
            assert current is not None, f"haproxy.cfg: {line!r} outside any section"
            current.append(words)
    return sections


def directives(kind: str, name: str, keyword: str) -> list[list[str]]:
    return [words[1:] for words in haproxy_sections()[(kind, name)] if words[0] == keyword]


def frontend_binding(port: int) -> str:
    found = [
        name
        for (kind, name), lines in haproxy_sections().items()
        if kind == "frontend"
        for words in lines
        if words[0] == "bind" and words[1].rsplit(":", 1)[-1] == str(port)
    ]
    assert len(found) == 1, f"expected one frontend bound to {port}, found {found}"
    return found[0]


def route(frontend: str, path: str) -> str:
    """The backend HAProxy picks for a request path (named path / path_beg acls only)."""
    acls: dict[str, list[bool]] = {}
    for words in directives("frontend", frontend, "acl"):
        name, fetch, patterns = words[0], words[1], words[2:]
        if fetch == "path":
            acls.setdefault(name, []).append(path in patterns)
        elif fetch == "path_beg":
            acls.setdefault(name, []).append(any(path.startswith(p) for p in patterns))
        else:
            raise AssertionError(f"acl fetch {fetch} is not understood by this test")
    for words in directives("frontend", frontend, "use_backend"):
        backend, keyword, condition = words[0], words[1], words[2:]
        assert keyword == "if" and len(condition) == 1, f"condition {condition} is not understood by this test"
        negate = condition[0].startswith("!")
        matched = any(acls[condition[0].lstrip("!")])
        if matched != negate:
            return backend
    return directives("frontend", frontend, "default_backend")[0][0]


def backend_servers(backend: str) -> list[tuple[str, int, list[str]]]:
    """(host, port, options) of each server or server-template line."""
    found = []
    for words in haproxy_sections()[("backend", backend)]:
        if words[0] in ("server", "server-template"):
            address = words[3] if words[0] == "server-template" else words[2]
            host, _, port = address.rpartition(":")
            found.append((host, int(port), words[4:] if words[0] == "server-template" else words[3:]))
    assert found, f"backend {backend} has no servers"
    return found


def test_proxy_routes_http_paths_to_the_right_services(monkeypatch):
    frontend = frontend_binding(8000)
    assert directives("frontend", frontend, "mode") == [["http"]]
    # The authn service serves the auth router, which also holds tenants, API keys and users
    # (services/api/app.py, create_app's `auth` and `rest`).
    cases = {
        "/api/v1/auth/token": "authn",
        "/api/v1/auth/refresh": "authn",
        "/api/v1/auth/logout": "authn",
        "/api/v1/auth/me": "authn",
        "/api/v1/tenants": "authn",
        "/api/v1/api-keys": "authn",
        "/api/v1/api-keys/7": "authn",
        "/api/v1/users": "authn",
        "/api/v1/users/7": "authn",
        "/api/v1/users/7/invitation": "authn",
        "/api/v1/auth/accept-invite": "authn",
        "/api/v1/auth/password-reset/confirm": "authn",
        "/api/v1/usersettings": "api",
        "/socket.io/": "wss",
        "/socket.io": "wss",
        "/api/v1/devices": "api",
        "/api/v1/alerts/1/ack": "api",
        "/api/v1/openapi.json": "api",
        "/api/v1/authority": "api",
    }
    for path, command_word in cases.items():
        service = service_running(command_word)
        http_port = settings_for(service, monkeypatch).http_port
        for host, port, _ in backend_servers(route(frontend, path)):
            assert (host, port) == (service, http_port), f"{path} goes to {host}:{port}, not {service}"


DEVICE_PORTS = {9000: "listener_port", 5023: "gt06_port", 5013: "h02_port", 5093: "watch_port", 5027: "teltonika_port"}


@pytest.mark.parametrize(("published", "setting"), DEVICE_PORTS.items())
def test_proxy_forwards_device_tcp_to_every_listener_replica(monkeypatch, published, setting):
    """XSole's port and each tracker protocol's (CONTRACT §10) reach that protocol's port of every replica."""
    frontend = frontend_binding(published)
    assert directives("frontend", frontend, "mode") == [["tcp"]]
    backend = directives("frontend", frontend, "default_backend")[0][0]
    assert directives("backend", backend, "mode") == [["tcp"]]
    service = service_running("listener")
    settings = settings_for(service, monkeypatch)
    servers = backend_servers(backend)
    assert servers
    for host, port, options in servers:
        assert (host, port) == (service, getattr(settings, setting))
        assert int(options[options.index("port") + 1]) == settings.http_port  # health from /readyz


@pytest.mark.parametrize("command_word", [*SCALABLE, "api", "authn"])
def test_proxy_finds_scaled_replicas_through_docker_dns(command_word):
    """A plain `server` line resolves once, to one container: replicas beyond it would get nothing."""
    service = service_running(command_word)
    defaults = [words for words in haproxy_sections()[("defaults", "")] if words[0] == "default-server"]
    for (kind, _), lines in haproxy_sections().items():
        if kind != "backend":
            continue
        for words in lines:
            if words[0] == "server-template" and words[3].startswith(f"{service}:"):
                options = words[4:] + [w for line in defaults for w in line[1:]]
                resolvers = options[options.index("resolvers") + 1]
                nameservers = directives("resolvers", resolvers, "nameserver")
                assert [ns[1] for ns in nameservers] == ["127.0.0.11:53"], "Docker's embedded DNS"
                return
    raise AssertionError(f"no server-template for {service}")


def test_proxy_keeps_socketio_sessions_sticky():
    backend = route(frontend_binding(8000), "/socket.io/")
    balance = directives("backend", backend, "balance")
    assert directives("backend", backend, "cookie") or balance[0][0] in ("source", "hdr", "uri")


def test_proxy_timeouts_outlast_the_protocol_timers(monkeypatch):
    def timeout(kind: str, name: str, which: str) -> float | None:
        for words in directives(kind, name, "timeout"):
            if words[0] == which:
                return duration_seconds(words[1])
        return None

    # Devices: in TCP mode the tunnel timeout applies once connected.
    frontend = frontend_binding(9000)
    backend = directives("frontend", frontend, "default_backend")[0][0]
    tunnel = timeout("backend", backend, "tunnel") or timeout("defaults", "", "tunnel")
    idle = tunnel or min(
        timeout("frontend", frontend, "client") or timeout("defaults", "", "client"),
        timeout("backend", backend, "server") or timeout("defaults", "", "server"),
    )
    listener_idle = settings_for(service_running("listener"), monkeypatch).idle_timeout
    assert idle > listener_idle, "HAProxy would cut silent but healthy devices before the listener's idle timeout"
    # Socket.IO long-polling holds a GET for up to ping interval + ping timeout (25 s + 20 s).
    wss = route(frontend_binding(8000), "/socket.io/")
    assert (timeout("backend", wss, "server") or timeout("defaults", "", "server")) > 45


def test_proxy_replaces_forwarded_headers_the_services_trust():
    trusting = [
        name for name, svc in solewatch_services().items() if environment(svc).get("FORWARDED_ALLOW_IPS") == "*"
    ]
    if not trusting:
        return
    lines = haproxy_sections()[("frontend", frontend_binding(8000))]
    deleted = next(i for i, words in enumerate(lines) if words[:3] == ["http-request", "del-header", "X-Forwarded-For"])
    added = next(i for i, words in enumerate(lines) if words[:2] == ["option", "forwardfor"])
    assert deleted < added, "a client could claim any address and escape the per-address login limits"


def test_proxy_publishes_exactly_its_frontends_and_answers_its_healthcheck():
    proxy = services()["proxy"]
    published = {container_port(spec)[1] for spec in proxy["ports"]}
    assert published == {8000, *DEVICE_PORTS}
    for port in published:
        frontend_binding(port)
    match = re.search(r"127\.0\.0\.1:(\d+)(/\S*)", healthcheck_text(proxy))
    assert match
    health = frontend_binding(int(match.group(1)))
    assert directives("frontend", health, "monitor-uri") == [[match.group(2)]]
    assert any(
        spec.endswith("/usr/local/etc/haproxy/haproxy.cfg:ro") and spec.startswith("./haproxy.cfg")
        for spec in proxy["volumes"]
    )


def test_file_limits_fit_the_connection_limits(monkeypatch):
    """HAProxy refuses to start when it cannot raise its descriptor limit to what maxconn needs."""
    maxconn = int(directives("global", "", "maxconn")[0][0])
    proxy_files = services()["proxy"]["ulimits"]["nofile"]
    assert proxy_files["hard"] >= 2 * maxconn + 1000, "two descriptors per proxied connection"
    listener = service_running("listener")
    listener_files = services()[listener]["ulimits"]["nofile"]
    max_connections = settings_for(listener, monkeypatch).max_connections
    assert min(listener_files["soft"], listener_files["hard"]) >= max_connections + 1000


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed; its own config check skipped")
def test_haproxy_accepts_its_configuration(tmp_path):
    from tests.harness.haproxy import with_mounts

    # As the container sees it: the error files at the path compose.yml mounts them.
    config = tmp_path / "haproxy.cfg"
    config.write_text(with_mounts(HAPROXY_CFG.read_text()))
    result = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
