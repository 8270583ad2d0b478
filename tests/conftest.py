"""Test-session settings.

- One isolated cache for the whole run (compiled programs, domain classifier, reference
  statistics): tests never depend on what an earlier run left behind, and every test
  process of this run shares it. The variable is set here, in the process that starts
  pytest-xdist's workers, so they and every trial process they start inherit it.
- JAX's persistent compilation cache on in the test processes too (trial processes turn it
  on themselves): a program compiled by one test, worker or trial process is loaded by
  the others instead of compiled again.
- Tests that run whole studies through Ray share one xdist group, so one worker runs them
  one at a time (no two local Ray clusters compete for the two cores at once) while the
  other workers run the rest.
"""
import os
import tempfile

import pytest

if "GAN_STUDY_CACHE" not in os.environ:
    os.environ["GAN_STUDY_CACHE"] = tempfile.mkdtemp(prefix="gan_study_test_cache_")
# Tests must never find real Inception weights by accident: they test the domain path
# unless a test passes weights explicitly.
os.environ.pop("FID_INCEPTION_WEIGHTS", None)
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

from study import runtime  # noqa: E402  (after GAN_STUDY_CACHE: the cache folder is read from it)

runtime.configure_jax()

# Modules whose tests start Ray (a local cluster, `python -m study.run`, or the loopback
# two-node cluster). A new module that starts Ray belongs here.
RAY_MODULES = {
    "test_bayes", "test_cli_errors", "test_cluster", "test_signals", "test_storage", "test_study_resume",
    "test_study_run",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rpartition(".")[2] in RAY_MODULES:
            item.add_marker(pytest.mark.xdist_group("ray"))


@pytest.fixture(scope="session")
def cache_dir():
    return os.environ["GAN_STUDY_CACHE"]
