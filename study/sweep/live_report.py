"""The live report: `STUDY_DIR/report/index.html` rebuilt while a study runs.

`LiveReport.update(done)` is called by the study's progress with the number of ended
configurations; every `every` of them it merges the trials' rows (store.collect) and starts
`python -m analysis.report STUDY_DIR` as a separate, low-priority process, so the Ray driver
never waits on matplotlib. At most one build runs at a time (a build still running when the
next is due is left to finish; the next starts at the following update). `finish()` stops
a build still running (by its own process id) before the study's final, synchronous build.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from study.storage import store

# A report build of a 144-trial, 8-arm study took 19-22 s of one core on the shared 2-core
# machine (synthetic table1-sized study, build_report timed). Every 36 ended trials = 3 builds
# during a 144-trial study (~60 CPU-s of ~1,500 in a 12.5-minute study on 2 cores, ~4%, at
# nice 10, so trials keep priority) plus the final one it always had.
DEFAULT_EVERY = 36


class LiveReport:
    def __init__(self, study_dir: pathlib.Path, every: int = DEFAULT_EVERY, log=None):
        if every < 1:
            raise ValueError(f"report every {every} trials is not allowed; need >= 1")
        self.study_dir = pathlib.Path(study_dir)
        self.index = self.study_dir / "report" / "index.html"
        self.every = every
        self.built_at = 0  # ended configurations at the last build start
        self.builds = 0
        self.process: subprocess.Popen | None = None
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))

    def update(self, done: int) -> bool:
        """Starts a rebuild when `every` more configurations ended since the last one and no
        build is running; returns whether one started."""
        if done - self.built_at < self.every or self.running():
            return False

        try:
            store.collect(self.study_dir)
        except Exception as error:  # a live report must never stop the study
            self.log(f"[study {self.study_dir.name}] live report skipped: {type(error).__name__}: {error}")
            return False
        self.built_at = done
        self.builds += 1
        self.process = subprocess.Popen(
            [sys.executable, "-m", "analysis.report", str(self.study_dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=(lambda: os.nice(10)) if hasattr(os, "nice") else None,
        )
        return True

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def finish(self) -> None:
        """Ends a build still running (our own child, by its pid) so the final build owns the folder."""
        if self.running():
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
