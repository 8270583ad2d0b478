"""The report renders in headless Chromium from disk, and every figure and sample loads.

Needs Debian's chromium (`apt-get install -y chromium`); skipped with that reason when
it is not installed.
"""
from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess

import pytest

from analysis.report import build_report
from analysis.synthetic import write_synthetic_studies

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium); cannot render the report")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Runs after every image settled: writes one JSON verdict into the DOM for --dump-dom.
CHECK_SCRIPT = """
<script>
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (img) { return !(img.complete && img.naturalWidth > 0); })
                     .map(function (img) { return img.getAttribute('src'); });
  var out = document.createElement('pre');
  out.id = 'image-check';
  out.textContent = JSON.stringify({total: images.length, broken: broken,
                                    sections: document.querySelectorAll('section').length});
  document.body.appendChild(out);
});
</script>
"""


def _chromium(tmp_path: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=90)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("chromium_report")
    dirs = write_synthetic_studies(root / "studies", rows=300, seed=2)
    return build_report(dirs, out_dir=root / "report")


def test_every_image_loads_in_chromium(report, tmp_path):
    page = report.parent / "check.html"  # beside index.html, so relative paths resolve the same
    page.write_text(report.read_text().replace("</body>", CHECK_SCRIPT + "</body>"))
    result = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    match = re.search(r'<pre id="image-check">(.*?)</pre>', result.stdout, re.S)
    assert match, f"no verdict in the dumped DOM; chromium stderr: {result.stderr[-500:]}"
    verdict = json.loads(match.group(1).replace("&quot;", '"'))
    expected = len(re.findall(r"<img ", report.read_text()))
    assert verdict["total"] == expected and expected >= 10
    assert verdict["broken"] == []
    assert verdict["sections"] == 10


def test_screenshot_is_not_blank(report, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    _chromium(tmp_path, "--window-size=1400,2000", f"--screenshot={shot}", report.as_uri())
    assert shot.is_file(), "chromium wrote no screenshot"
    image = Image.open(shot).convert("L")
    assert image.size == (1400, 2000)
    # a rendered report has text and figures: many distinct grey levels, not one blank colour
    assert len(image.getcolors(maxcolors=256 * 256)) > 50
