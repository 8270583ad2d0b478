"""Test-session settings: an isolated cache (compiled programs, domain classifier,
reference statistics) so tests never depend on what an earlier run left behind."""
import os
import tempfile

import pytest

if "GAN_STUDY_CACHE" not in os.environ:
    os.environ["GAN_STUDY_CACHE"] = tempfile.mkdtemp(prefix="gan_study_test_cache_")
# Tests must never find real Inception weights by accident: they test the domain path
# unless a test passes weights explicitly.
os.environ.pop("FID_INCEPTION_WEIGHTS", None)
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def cache_dir():
    return os.environ["GAN_STUDY_CACHE"]
