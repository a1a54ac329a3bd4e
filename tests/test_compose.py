"""docker-compose.yml and Dockerfile: every command is a real `relais` command, nothing undocumented."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from entrypoints.cli.main import build_parser
from entrypoints.settings import ENV_DOC
from projections.runner import PROJECTIONS

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

ONE_SHOT = {"migrate"}  # runs `relais db upgrade` and exits: no restart, no healthcheck
SECRETS = ("RELAIS_SECRET_KEY", "RELAIS_CIPHER_KEY", "POSTGRES_PASSWORD")


@pytest.fixture(scope="module")
def raw() -> str:
    return COMPOSE_FILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compose(raw: str) -> dict:
    return yaml.safe_load(raw)


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


def our_image(compose: dict) -> str:
    return compose["x-relais"]["image"]


def relais_services(compose: dict) -> dict[str, dict]:
    """Services that run the Relais image (ENTRYPOINT `relais`)."""
    image = our_image(compose)
    return {name: s for name, s in compose["services"].items() if s.get("image") == image or "build" in s}


def words(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(w) for w in command]


def parses(argv: list[str]) -> bool:
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        return False
    return True


def test_no_version_key_and_compose_spec_top_level(compose: dict) -> None:
    assert "version" not in compose
    assert set(compose) <= {"services", "volumes", "networks", "secrets", "configs", "name"} | {
        k for k in compose if k.startswith("x-")
    }


def test_expected_services_are_there(services: dict) -> None:
    assert {"postgres", "redis", "migrate", "web", "scp", "worker"} <= set(services)
    assert services["postgres"]["image"] == "postgres:15"
    assert services["redis"]["image"] == "redis:7"


def test_every_relais_service_runs_a_real_relais_command(compose: dict) -> None:
    ours = relais_services(compose)
    assert {"migrate", "web", "scp", "worker"} <= set(ours)
    for name, service in ours.items():
        assert "command" in service, f"{name}: no command (the image's default is `relais up`, everything at once)"
        argv = words(service["command"])
        assert parses(argv), f"{name}: `relais {' '.join(argv)}` is not a relais command"
    assert words(ours["migrate"]["command"]) == ["db", "upgrade"]
    assert words(ours["web"]["command"]) == ["serve"]
    assert words(ours["scp"]["command"]) == ["scp"]
    assert words(ours["worker"]["command"]) == ["worker"]


def test_healthchecks_that_call_relais_are_real_commands(compose: dict) -> None:
    for name, service in relais_services(compose).items():
        test = (service.get("healthcheck") or {}).get("test")
        if isinstance(test, list) and test[0] == "CMD" and test[1] == "relais":
            assert parses(test[2:]), f"{name}: healthcheck `{' '.join(test[1:])}` is not a relais command"


def test_one_service_per_projection(services: dict) -> None:
    declared = {n.removeprefix("projections-") for n in services if n.startswith("projections-")}
    assert declared == set(PROJECTIONS)
    for name in PROJECTIONS:
        assert words(services[f"projections-{name}"]["command"]) == ["projections", "run", name]


def test_long_running_services_restart_and_have_healthchecks(services: dict) -> None:
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service.get("restart", "no") == "no", f"{name} is one-shot"
            continue
        assert service.get("restart") in ("unless-stopped", "always"), f"{name}: no restart policy"
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name}: no healthcheck"
        test = check["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name}: {test}"


def test_parts_start_after_a_successful_migration(compose: dict) -> None:
    for name, service in relais_services(compose).items():
        if name in ONE_SHOT:
            continue
        deps = service.get("depends_on") or {}
        assert deps.get("migrate", {}).get("condition") == "service_completed_successfully", name
    deps = compose["services"]["migrate"]["depends_on"]
    assert deps["postgres"]["condition"] == "service_healthy"
    for name, service in compose["services"].items():
        for dep in service.get("depends_on") or {}:
            assert dep in compose["services"], f"{name} depends on unknown service {dep}"


def test_every_relais_variable_is_documented(raw: str, compose: dict) -> None:
    named = set(re.findall(r"\bRELAIS_[A-Z0-9_]+", raw))
    for service in compose["services"].values():
        env = service.get("environment") or {}
        keys = env if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]
        named |= {k for k in keys if k.startswith("RELAIS_")}
    undocumented = sorted(named - set(ENV_DOC))
    assert not undocumented, f"not in adapters.settings.ENV_DOC: {undocumented}"


def test_environment_wiring(raw: str, compose: dict) -> None:
    env = compose["x-relais-env"]
    for name in relais_services(compose):
        service_env = compose["services"][name]["environment"]
        assert {k: v for k, v in service_env.items() if k in env} == env, f"{name} lacks the x-relais-env anchor"
    assert env["RELAIS_HTTP_HOST"] == "0.0.0.0"
    assert env["RELAIS_DICOM_HOST"] == "0.0.0.0"
    assert env["RELAIS_DATA_DIR"] == "/var/lib/relais"
    assert env["RELAIS_DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["RELAIS_DATABASE_URL"]
    assert env["RELAIS_REDIS_URL"].startswith("redis://redis:6379")
    for secret in SECRETS:  # required: compose refuses to start without them
        assert re.search(r"\$\{" + secret + r":\?", raw), f"{secret} must be ${{{secret}:?…}}"


def test_published_ports_are_loopback_by_default(compose: dict) -> None:
    env = compose["x-relais-env"]
    published = {}
    for name, service in compose["services"].items():
        for port in service.get("ports") or []:
            assert isinstance(port, str), f"{name}: use the short syntax with an address"
            defaults = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", port)  # ${VAR:-x} → x
            assert defaults.count(":") == 2, f"{name}: {port}: address:published:target expected"
            address, _published, target = defaults.split(":")
            assert address == "127.0.0.1", f"{name}: {port} not on loopback"
            published[name] = target
    assert published.get("web") == env["RELAIS_HTTP_PORT"]
    assert published.get("scp") == env["RELAIS_DICOM_PORT"]
    assert set(published) == {"web", "scp"}, "only the web and the DICOM node are published"


def test_referenced_volumes_are_declared(compose: dict) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source and not source.startswith((".", "/", "~", "$")):
                assert source in declared, f"{name}: volume {source} not declared"
                used.add(source)
    assert used == declared, f"declared but unused: {declared - used}"
    mounts = {v.split(":")[1] for s in compose["services"].values() for v in s.get("volumes") or []}
    assert {"/var/lib/postgresql/data", "/var/lib/relais"} <= mounts


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert "pip install -c requirements.lock ." in text
    assert re.search(r'^ENTRYPOINT \["relais"\]$', text, re.M)
    assert re.search(r"^EXPOSE .*\b8000\b", text, re.M) and re.search(r"^EXPOSE .*\b11112\b", text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    copied = set(re.findall(r"^COPY (?!--from)(\S+)", text, re.M))
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not copied & set(ignored), "the Dockerfile copies something .dockerignore leaves out"


# ---------------------------------------------------------------------------- compose itself


def _compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) or `docker-compose`, if one of them runs here (no engine needed)."""
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for cmd in candidates:
        try:
            if subprocess.run([*cmd, "version"], capture_output=True, timeout=30).returncode == 0:
                return cmd
        except (OSError, subprocess.TimeoutExpired):
            continue
    return None


def _config(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = _compose_command()
    if cmd is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is available")
    empty = tmp_path / "empty.env"
    empty.write_text("")
    base = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("COMPOSE_")}
    return subprocess.run(
        [*cmd, "--env-file", str(empty), "-f", str(COMPOSE_FILE), "config"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={**base, **env},
    )


def test_compose_config_is_valid(tmp_path: Path) -> None:
    result = _config(tmp_path, {s: f"dummy-{s.lower()}" for s in SECRETS})
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == set(yaml.safe_load(COMPOSE_FILE.read_text())["services"])


def test_compose_refuses_to_start_without_secrets(tmp_path: Path) -> None:
    result = _config(tmp_path, {})
    assert result.returncode != 0
    assert any(s in result.stderr for s in SECRETS), result.stderr
