"""Dockerfile, .dockerignore and docker-compose.yml agree with the code they package.

Docker itself is not needed: the files are parsed and checked against Settings, the app's routes,
pyproject.toml and requirements.lock.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from stream.cli import COMMANDS
from stream.settings import Settings, documented_settings
from tests.support.paths import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE = REPO_ROOT / "docker-compose.yml"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
LOCK = REPO_ROOT / "requirements.lock"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
EXTERNAL_ENV = {"MLFLOW_TRACKING_URI"}  # read by the mlflow client, not by Settings
SETTINGS_ENV = {name for name, _, _ in documented_settings()}
CV2_DISTRIBUTIONS = {"opencv-python", "opencv-python-headless", "opencv-contrib-python",
                     "opencv-contrib-python-headless"}


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Per build stage (each starts at a FROM), its (INSTRUCTION, arguments) with line continuations
    joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            if word.upper() == "FROM":
                stages.append([])
            if stages:  # global ARGs (before the first FROM) are read by base_image()
                stages[-1].append((word.upper(), rest.strip()))
    return stages


def base_image() -> str:
    """The BASE build argument's default: every stage starts from it or from an earlier stage."""
    (default,) = re.findall(r"^ARG BASE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    return default


def dockerfile_instructions() -> list[tuple[str, str]]:
    """The final stage's instructions: what the image is."""
    return dockerfile_stages()[-1]


def stage(name: str) -> list[tuple[str, str]]:
    (found,) = [s for s in dockerfile_stages() if s[0][1].split()[-1] == name]
    return found


def instruction(name: str) -> list[str]:
    return [args for word, args in dockerfile_instructions() if word == name]


def exec_form(args: str) -> list[str]:
    return yaml.safe_load(args) if args.startswith("[") else shlex.split(args)


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def published(service: dict) -> dict[int, int]:
    """container port -> host port."""
    ports = {}
    for spec in service.get("ports", []):
        *host, container = str(spec).split(":")
        ports[int(container)] = int(host[-1]) if host else int(container)
    return ports


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"requirements.lock line is not pinned: {line!r}"
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_image_is_python_311_slim_non_root_with_one_process() -> None:
    assert base_image() == "python:3.11-slim"
    names: list[str] = []
    for found in dockerfile_stages():  # one Python: each stage is the base or builds on a stage
        source, *alias = found[0][1].split()
        assert source == "${BASE}" or source in names, found[0]
        names.append(alias[-1])
    assert names[-1] == "serve"  # a plain `docker build .` gives the serving image
    (user,) = instruction("USER")
    assert user not in {"root", "0"}
    cmd = exec_form(instruction("CMD")[-1])
    assert cmd[:2] == ["gesture-maze", "serve"]
    assert cmd[0] in PYPROJECT["project"]["scripts"]
    assert PYPROJECT["project"]["scripts"][cmd[0]] == "stream.cli:main"
    assert cmd[1] in COMMANDS
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert int(cmd[cmd.index("--port") + 1]) == Settings().port
    assert not instruction("ENTRYPOINT")


def test_image_ports_env_and_healthcheck_match_settings() -> None:
    assert instruction("EXPOSE") == [str(Settings().port)]
    env = {}
    for args in [a for w, a in stage("runtime") if w == "ENV"] + instruction("ENV"):
        env.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
    app_env = {name: value for name, value in env.items() if name.startswith("GM_")}
    assert app_env.keys() <= SETTINGS_ENV
    assert app_env["GM_HOST"] == "0.0.0.0" and int(app_env["GM_PORT"]) == Settings().port
    (health,) = instruction("HEALTHCHECK")
    assert f"127.0.0.1:{Settings().port}/health" in health
    assert "curl" not in health and "wget" not in health  # neither exists in python:3.11-slim


def test_dependencies_are_installed_from_the_lock_before_the_wheel_is_copied() -> None:
    steps = stage("runtime")
    copies = [i for i, (word, _) in enumerate(steps) if word == "COPY"]
    lock_copy = next(i for i in copies if "requirements.lock" in steps[i][1])
    lock_install = next(i for i, (w, a) in enumerate(steps) if w == "RUN" and "-c requirements.lock" in a)
    wheel_copy = next(i for i in copies if steps[i][1].startswith("--from=wheel "))
    package_install = next(i for i, (w, a) in enumerate(steps) if w == "RUN" and ".whl" in a)
    # Source changes invalidate the wheel stage and the last two steps, never the dependency layer.
    assert lock_copy < lock_install < wheel_copy < package_install
    assert not any(re.search(r"\b(stream|model|maze|frontend)/", steps[i][1]) for i in copies)


def test_the_image_installs_the_wheel_built_from_the_sources() -> None:
    build = stage("wheel")
    copied = {args.split()[0] for word, args in build if word == "COPY"}
    assert {"stream/", "model/", "maze/", "frontend/", "pyproject.toml"} <= copied
    (wheel_dir,) = re.findall(r"pip wheel --no-deps --wheel-dir (\S+) \.$",
                              " ".join(a for w, a in build if w == "RUN"))
    (from_wheel,) = [args.split() for word, args in stage("runtime")
                     if word == "COPY" and args.startswith("--from=wheel ")]
    assert from_wheel[1].rstrip("/") == wheel_dir
    (install,) = [a for w, a in stage("runtime") if w == "RUN" and ".whl" in a]
    assert re.search(rf"pip install --no-deps {re.escape(from_wheel[2].rstrip('/'))}/gesture_maze-\*\.whl",
                     install)
    # No hand-placed files: nothing is copied into an interpreter's site-packages (whose path names
    # a Python version), and the checkout is never installed in place.
    assert "site-packages" not in DOCKERFILE.read_text()
    assert "pip install --no-deps ." not in install


def test_the_web_client_ships_as_package_data() -> None:
    from stream.web import static

    setuptools = PYPROJECT["tool"]["setuptools"]
    assert "frontend" in setuptools["packages"]["find"]["include"]
    root = REPO_ROOT / "frontend"
    patterns = setuptools["package-data"]["frontend"]
    shipped = {path for pattern in patterns for path in root.glob(pattern) if path.is_file()}
    client = {path for path in root.rglob("*")
              if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts}
    assert client - shipped == set(), "frontend/ files the wheel would leave out"
    assert {"index.html", "watch.html", "lobby.html"} <= {p.name for p in shipped}
    # In the checkout (editable install) the app finds the client through the same package lookup.
    assert static.frontend_dir() == root


def test_lock_pins_every_runtime_dependency_within_its_range() -> None:
    pins = lock_pins()
    for spec in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(spec)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name], spec)
    assert CV2_DISTRIBUTIONS & pins.keys() == {"opencv-contrib-python"}


def test_default_model_ships_as_package_data_and_reaches_the_build_context() -> None:
    assert "default/*" in PYPROJECT["tool"]["setuptools"]["package-data"]["model"]
    ignored = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for needed in ("model", "model/default", "stream", "maze", "frontend", "requirements.lock",
                   "pyproject.toml", "README.md"):
        assert not any(Path(needed).match(pattern) or needed.startswith(pattern.rstrip("/") + "/")
                       for pattern in ignored), f".dockerignore excludes {needed}"
    assert ".venv" in ignored and ".git" in ignored


def test_health_route_exists_in_the_app() -> None:
    from stream.web.app import create_app

    app = create_app(Settings.from_env({}))
    paths = {getattr(route, "path", None) for route in app.routes}
    assert "/health" in paths and "/metrics" in paths


def test_compose_services_ports_and_health_checks() -> None:
    services = compose()["services"]
    assert set(services) >= {"app", "proxy", "redis", "mlflow", "prometheus", "grafana"}
    # Replicas are reached through the proxy only (deploy/nginx/cluster.conf listens on 8080).
    assert published(services["app"]) == {}
    assert published(services["proxy"]) == {8080: Settings().port}
    assert "./deploy/nginx/cluster.conf:/etc/nginx/nginx.conf:ro" in services["proxy"]["volumes"]
    assert services["app"]["environment"]["GM_STORE_URL"] == "redis://redis:6379/0"
    assert str(services["app"]["deploy"]["replicas"]).endswith("3}")
    assert published(services["mlflow"]) == {5000: 5000}
    assert published(services["prometheus"]) == {9090: 9090}
    assert published(services["grafana"]) == {3000: 3000}
    for name, service in services.items():
        if "jobs" in service.get("profiles", []):
            continue  # one-shot jobs (e.g. retrain) run to completion; nothing to health-check
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert f"127.0.0.1:{Settings().port}/health" in " ".join(services["app"]["healthcheck"]["test"])
    assert services["app"]["build"] == "."


def test_compose_app_environment_names_exist_in_settings() -> None:
    env = compose()["services"]["app"]["environment"]
    unknown = set(env) - SETTINGS_ENV - EXTERNAL_ENV
    assert not unknown, f"compose sets variables nothing reads: {sorted(unknown)}"
    assert "GESTURE_MODEL_URI" in SETTINGS_ENV and "GESTURE_MODEL_URI" in env
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["GM_HOST"] == "0.0.0.0" and int(env["GM_PORT"]) == Settings().port


def test_compose_mlflow_image_matches_the_locked_client() -> None:
    mlflow = compose()["services"]["mlflow"]
    image, _, tag = mlflow["image"].partition(":")
    assert image == "ghcr.io/mlflow/mlflow"
    assert tag == f"v{lock_pins()['mlflow']}"
    assert any(str(v).startswith("mlflow-data:") for v in mlflow["volumes"])


def test_compose_monitoring_mounts_exist_and_target_the_app() -> None:
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), f"{name} mounts missing {source}"
    prometheus = yaml.safe_load((REPO_ROOT / "monitoring" / "prometheus.yml").read_text())
    # Every replica: DNS service discovery of the compose service name.
    discovery = [sd for job in prometheus["scrape_configs"] if job["job_name"] == "gesture-maze"
                 for sd in job["dns_sd_configs"]]
    assert discovery == [{"names": ["app"], "type": "A", "port": Settings().port, "refresh_interval": "15s"}]


def test_grafana_is_anonymous_read_only_and_needs_an_admin_password() -> None:
    env = compose()["services"]["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    # `${VAR:?message}`: compose refuses to start without it, so admin/admin never exists.
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", env["GF_SECURITY_ADMIN_PASSWORD"])
    assert "admin" not in env["GF_SECURITY_ADMIN_PASSWORD"].lower().replace("grafana_admin_password", "")


@pytest.mark.parametrize("service", ["prometheus", "grafana"])
def test_third_party_images_are_pinned(service: str) -> None:
    image = compose()["services"][service]["image"]
    assert re.search(r":v?\d+\.\d+\.\d+$", image), image


NGINX_DIR = REPO_ROOT / "deploy" / "nginx"
NGINX_TOP_LEVEL = {"gesture-maze.conf": "http", "cluster.conf": "main"}  # file -> context it goes in
# The loopback scrape listener is the single host's: compose's Prometheus scrapes each replica itself.
NGINX_ONLY_IN = {"includes/metrics.conf": "gesture-maze.conf"}


def nginx_statements(path: Path) -> list[tuple[str, list[str]]]:
    """(directive, arguments) of every statement and block opening, comments dropped, in order."""
    out: list[tuple[str, list[str]]] = []
    words: list[str] = []
    for token in re.findall(r"""#[^\n]*|'[^']*'|"[^"]*"|[;{}]|[^\s;{}'"#]+""", path.read_text()):
        if token.startswith("#"):
            continue
        if token in {";", "{", "}"}:
            if words:
                out.append((words[0], words[1:]))
            words = []
        else:
            words.append(token[1:-1] if token[0] in "'\"" else token)
    return out


def nginx_includes(path: Path) -> list[str]:
    return [args[0] for directive, args in nginx_statements(path) if directive == "include"]


def test_both_nginx_configs_take_the_shared_parts_from_the_same_include_files() -> None:
    shared = sorted(f"includes/{p.name}" for p in (NGINX_DIR / "includes").glob("*.conf"))
    assert shared, "deploy/nginx/includes/ is empty"
    for name in NGINX_TOP_LEVEL:
        included = nginx_includes(NGINX_DIR / name)
        wanted = [f for f in shared if NGINX_ONLY_IN.get(f, name) == name]
        assert sorted(included) == wanted, name  # every shared file, each once
        # What a top-level config may still say itself: where it listens and what it proxies to.
        own = {directive for directive, _ in nginx_statements(NGINX_DIR / name)}
        assert own <= {"worker_processes", "events", "worker_connections", "http", "include", "upstream",
                       "server", "listen", "server_name"}, (name, own)


def test_limits_and_timeouts_are_set_in_one_place() -> None:
    settings = Settings()
    where: dict[str, list[tuple[str, list[str]]]] = {}
    for path in sorted((NGINX_DIR / "includes").glob("*.conf")):
        for directive, args in nginx_statements(path):
            where.setdefault(directive, []).append((path.name, args))
    for directive in ("client_max_body_size", "client_header_timeout", "keepalive_timeout", "limit_conn",
                      "limit_conn_zone", "keepalive", "proxy_connect_timeout", "server_tokens"):
        assert len(where[directive]) == 1, (directive, where.get(directive))
    # The WebSocket read timeout: once, above the app's idle timeout (the app closes idle sockets
    # itself, with a reason, before the proxy would cut them).
    ws_read = [args for _, args in where["proxy_read_timeout"] if args[0] != "30s"]
    assert len(ws_read) == 1 and int(ws_read[0][0].rstrip("s")) > settings.idle_timeout_s
    (body,) = where["client_max_body_size"]
    assert int(body[1][0].rstrip("k")) * 1024 > settings.max_frame_bytes
    # Every refusal nginx makes itself answers in the app's JSON error shape.
    pages = {code for _, args in where["error_page"] for code in args[:-1]}
    assert {"400", "413", "414", "429", "494", "502", "503", "504"} <= pages


def test_compose_mounts_the_nginx_includes_beside_the_cluster_config() -> None:
    volumes = compose()["services"]["proxy"]["volumes"]
    assert "./deploy/nginx/cluster.conf:/etc/nginx/nginx.conf:ro" in volumes
    # Relative `include` paths resolve against the main config's directory (/etc/nginx/).
    assert "./deploy/nginx/includes:/etc/nginx/includes:ro" in [v.split("#")[0].strip() for v in volumes]
