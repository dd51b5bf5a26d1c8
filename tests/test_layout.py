"""The packages' boundaries (docs/architecture.md): the core (``docsieve``) imports neither the Celery side
(``worker``) nor the scheduler, nor any library only the deployment installs; the scheduler builds on the
worker, never the reverse; so no import cycle runs between packages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("docsieve", "worker", "scheduler")
DEPLOYMENT_LIBRARIES = ("celery", "kombu", "redis", "psycopg", "flower", "billiard")


def imports_of(package: str) -> dict[str, set[str]]:
    """Every module each file of a package imports, at its top or inside a function."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
        found[str(path.relative_to(REPO))] = names
    return found


def _reaching(package: str, tops: tuple[str, ...]) -> dict[str, list[str]]:
    return {
        file: hits
        for file, names in imports_of(package).items()
        if (hits := sorted(n for n in names if n.split(".")[0] in tops))
    }


def test_the_core_imports_neither_the_worker_nor_the_scheduler() -> None:
    assert _reaching("docsieve", ("worker", "scheduler")) == {}


def test_the_core_names_no_deployment_library_but_the_lazy_redis_clients_of_the_shared_rate_limits() -> None:
    assert _reaching("docsieve", DEPLOYMENT_LIBRARIES) == {
        "docsieve/politeness.py": ["redis"],
        "docsieve/service/_limits.py": ["redis"],
    }


def test_the_worker_never_imports_the_scheduler() -> None:
    assert _reaching("worker", ("scheduler",)) == {}


def test_no_import_cycle_between_packages() -> None:
    depends = {
        package: {n.split(".")[0] for names in imports_of(package).values() for n in names} & set(PACKAGES) - {package}
        for package in PACKAGES
    }
    assert depends == {"docsieve": set(), "worker": {"docsieve"}, "scheduler": {"docsieve", "worker"}}


@pytest.mark.slow
def test_loading_every_core_module_loads_nothing_of_the_deployment() -> None:
    """At run time too: every module of the core imported, and none of the worker, the scheduler or the
    deployment's libraries came with them (the migrations' environment runs Alembic when imported: left out)."""
    code = (
        "import importlib, pkgutil, sys, docsieve\n"
        "for m in pkgutil.walk_packages(docsieve.__path__, 'docsieve.'):\n"
        "    if not m.name.startswith('docsieve.migrations'):\n"
        "        importlib.import_module(m.name)\n"
        f"tops = {set(PACKAGES[1:]) | set(DEPLOYMENT_LIBRARIES)!r}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in tops))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


API_LIBRARIES = ("fastapi", "uvicorn", "starlette", "jinja2", "prometheus_client", "pyarrow")
WITHOUT_DEPLOYMENT = f"""
import sys

class Missing:
    '''As if only `pip install docsieve` had run: the deployment's and the API's libraries cannot be imported.'''

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {set(DEPLOYMENT_LIBRARIES) | set(API_LIBRARIES)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, Missing())
from docsieve.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_the_embedded_default_runs_without_the_deployments_or_the_apis_packages(tmp_path: Path) -> None:
    def docsieve(*args: str) -> subprocess.CompletedProcess:
        store = f"sqlite:///{tmp_path / 'embedded.db'}"
        command = [sys.executable, "-c", WITHOUT_DEPLOYMENT, *args, "--store", store]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)

    ingested = docsieve("ingest", "seeds/", "--quiet")
    assert ingested.returncode == 0 and "read 25" in ingested.stdout, ingested.stderr
    status = docsieve("status")
    assert status.returncode == 0, status.stderr
    assert "queues: none (the deployment's packages are not installed" in status.stdout
    assert "records: canonical 13" in status.stdout
    submitted = docsieve("submit", "seeds/")
    assert submitted.returncode == 2
    assert "submit needs the deployment's packages: pip install 'docsieve[deploy]'" in submitted.stderr
    served = docsieve("serve")
    assert served.returncode == 2 and "pip install 'docsieve[api]'" in served.stderr, served.stderr
    parquet = docsieve("export", "--format", "parquet", "-o", str(tmp_path / "x.parquet"))
    assert parquet.returncode == 2 and "pip install 'docsieve[parquet]'" in parquet.stderr, parquet.stderr
    assert docsieve("export", "--format", "csv").stdout.startswith("id,source,status")
