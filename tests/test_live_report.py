"""The live report: rebuilt in a separate process every N ended trials, never two at once."""
from __future__ import annotations

import time

from study.sweep.live_report import LiveReport


def test_live_report_rebuilds_every_n_and_one_at_a_time(tmp_path):
    (tmp_path / "manifest.json").write_text('{"study": "live", "space": "smoke", "started": "2026-01-01T00:00:00"}')
    live = LiveReport(tmp_path, every=2, log=lambda message: None)
    assert not live.update(1)  # fewer than N ended
    assert live.update(2) and live.running()
    assert not live.update(4)  # due, but the first build still runs: never two at once
    deadline = time.time() + 120
    while live.running() and time.time() < deadline:
        time.sleep(0.2)
    assert live.process.returncode == 0
    html = (tmp_path / "report" / "index.html").read_text()
    assert "No results yet" in html and "still running" in html
    assert (tmp_path / "results.parquet").is_file()  # rows merged before the build
    assert live.update(4) and live.builds == 2
    live.finish()  # stops the running build (own child) so the final build owns the folder
    assert not live.running()
