"""Test-session plumbing: one real Ray instance for the whole session (starting Ray
costs ~10 s here), shared by in-process runs and by CLI subprocesses via --address."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(scope="session")
def ray_address() -> str:
    """Start Ray once; yield its address so subprocesses can join instead of starting another."""
    import ray
    from maker.cluster import ensure_ray

    ensure_ray(num_cpus=2)
    address = ray.get_runtime_context().gcs_address
    yield address
    ray.shutdown()


@pytest.fixture
def maker_cli(capsys):
    """`maker ARGS...` in this process (as `maker.cli.main`): a namespace with its
    returncode, stdout and stderr, as `subprocess.run` gives them."""
    from types import SimpleNamespace

    from maker.cli.main import main

    def call(*args: str) -> SimpleNamespace:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return call
