"""deploy/Dockerfile, checked without a container runtime (this machine has a docker client but no daemon, and no
registry to pull base images from): hadolint, the runtime stage's shape, and the build stage's own install steps
replayed in a clean virtualenv, whose `gateway serve` then answers the image's health check over the emulator.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.devstack.stack import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY
from tests.deploy.support import DEPLOY, DOCKERFILE, REPO, VENV_BIN, serve_options
from tests.support.processes import GatewayProcess, run_to_exit, start_gateway

UV = REPO / ".cache" / "uv-bootstrap" / "bin" / "uv"
# Packages that must never be in the image: the emulator and the development tools.
NOT_IN_IMAGE = ("moto", "pytest", "ruff", "mypy", "cfnlint", "grpc_tools", "hypothesis")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [argument for word, argument in self.instructions if word == keyword]


def stages(path: Path = DOCKERFILE) -> list[Stage]:
    """The Dockerfile's stages and their instructions (continuation lines joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    found: list[Stage] = []
    for line in logical:
        word, _, argument = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            parts = argument.split()
            found.append(Stage(name=parts[2] if len(parts) > 2 else "", base=parts[0]))
        elif found:
            found[-1].instructions.append((word, argument.strip()))
    return found


def env_pairs(argument: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in shlex.split(argument))


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [str(VENV_BIN / "hadolint"), str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_the_image_runs_gateway_serve_as_a_user_that_is_not_root_with_both_faces_exposed() -> None:
    runtime = stages()[-1]
    [user] = runtime.all("USER")
    uid = user.split(":")[0]
    assert uid.isdigit(), "a numeric USER, so runAsNonRoot can check it"
    assert int(uid) != 0
    assert runtime.all("ENTRYPOINT") == ['["gateway", "serve"]']
    exposed = {port for argument in runtime.all("EXPOSE") for port in argument.split()}
    assert {"50051", "8080"} <= exposed
    [health] = runtime.all("HEALTHCHECK")
    assert "/opt/gateway/healthcheck.py" in health
    assert not runtime.all("RUN") or all("pip" not in r and "apt" not in r for r in runtime.all("RUN"))
    env = {k: v for argument in runtime.all("ENV") for k, v in env_pairs(argument).items()}
    names = {option.env for option in serve_options().values()}
    gateway_names = {k for k in env if k.startswith("GATEWAY_")}
    assert gateway_names <= names, f"not serve settings: {sorted(gateway_names - names)}"


def test_every_file_the_dockerfile_copies_from_the_context_exists_and_is_not_ignored() -> None:
    ignored = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for stage in stages():
        for argument in stage.all("COPY"):
            if argument.startswith("--from="):
                continue
            *sources, _ = argument.split()
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
                assert not any(Path(source).match(pattern.lstrip("*/")) for pattern in ignored), source


def test_uv_in_the_image_is_the_version_the_makefile_pins() -> None:
    pinned = re.search(r"^UV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert pinned is not None
    build = next(s for s in stages() if s.name == "build")
    assert any(f"uv=={pinned.group(1)}" in run for run in build.all("RUN"))


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build stage's COPY and `uv sync` steps replayed into a clean virtualenv (no container runtime here)."""
    root = tmp_path_factory.mktemp("image")
    context, venv = root / "src", root / "opt-gateway"
    context.mkdir()
    build = next(s for s in stages() if s.name == "build")
    env = {k: v for argument in build.all("ENV") for k, v in env_pairs(argument).items()}
    assert env["UV_PROJECT_ENVIRONMENT"] == "/opt/gateway"
    env["UV_PROJECT_ENVIRONMENT"] = str(venv)
    for word, argument in build.instructions:
        if word == "COPY":
            *sources, target = argument.split()
            for source in sources:
                destination = context / (Path(source).name if target == "./" else target)
                if (REPO / source).is_dir():
                    shutil.copytree(REPO / source, destination, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(REPO / source, destination)
        elif word == "RUN" and argument.startswith("uv "):
            command = [str(UV), *shlex.split(argument)[1:], "--python", shutil.which("python3") or "python3"]
            result = subprocess.run(
                command,
                cwd=context,
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert result.returncode == 0, f"{argument}:\n{result.stderr[-2000:]}"
    return venv


def test_the_image_has_the_gateway_and_its_template_and_no_emulator_or_dev_tools(image_venv: Path) -> None:
    python = image_venv / "bin" / "python"
    help_text = subprocess.run(
        [str(image_venv / "bin" / "gateway"), "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "serve" in help_text
    probe = (
        "import importlib.util, sys; "
        f"print([m for m in {NOT_IN_IMAGE!r} if importlib.util.find_spec(m)]); "
        "import importlib.resources as r; print(r.files('gateway').joinpath('devstack/booking-gateway.yaml'))"
    )
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60, check=True).stdout
    present, template = out.splitlines()
    assert present == "[]", f"in the image but not a runtime dependency: {present}"
    assert template.startswith(str(image_venv)), template
    assert Path(template).read_text() == (REPO / "deploy" / "aws" / "booking-gateway.yaml").read_text()
    assert importlib.util.find_spec("moto") is not None  # the test's own environment does have it


@pytest.fixture
async def image_gateway(image_venv: Path, settings: Settings) -> AsyncIterator[GatewayProcess]:
    """`gateway serve` from the image's virtualenv, pointed at the session's emulator as a pod is at AWS."""
    env = {
        **settings.to_environment(),
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
    }
    process = await start_gateway(
        command=[
            str(image_venv / "bin" / "gateway"),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--web-listen",
            "127.0.0.1:0",
        ],
        env=env,
    )
    try:
        yield process
    finally:
        await process.stop()


async def test_the_images_health_check_passes_once_its_gateway_serves(
    image_venv: Path, image_gateway: GatewayProcess
) -> None:
    env = {"GATEWAY_LISTEN": image_gateway.target, "PATH": f"{image_venv / 'bin'}:{os.environ['PATH']}"}
    code, out, err = await run_to_exit(str(image_venv / "bin" / "python"), str(DEPLOY / "healthcheck.py"), env=env)
    assert code == 0, f"healthcheck.py: {out}{err}"
    await image_gateway.stop()
    code, _, err = await run_to_exit(str(image_venv / "bin" / "python"), str(DEPLOY / "healthcheck.py"), env=env)
    assert code == 1
    assert "health check failed: UNAVAILABLE" in err
