"""Stopping a study with Ctrl-C (SIGINT) or SIGTERM: a clean stop that `--resume` continues.

Without this, Ray Tune's own SIGINT handler ends `Tuner.fit` quietly (the study then
wrote its manifest as finished and exited 0, with a hint naming `Tuner.restore`), and
SIGTERM hit Ray's driver handler mid-flight (a native abort, rc 134).

`study_guard()` (around a whole study, in `study.run`) takes over both signals; the
first one asks Ray Tune to stop through its own graceful path (SIGUSR1: the running
trials are stopped, Ray's experiment state is saved; every trial keeps the checkpoint
of its last evaluation), and when `Tuner.fit` returns, `tune_fit()` raises
`Interrupted`, so nothing after it (a Bayesian round's feeding, the report, the
`finished` mark) runs. A second signal stops at once. Outside a guard (tests, a
library caller), `tune_fit()` changes nothing.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """The study was stopped by a signal. A BaseException, like KeyboardInterrupt, so no
    `except Exception` on the way swallows it."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (130 SIGINT, 143 SIGTERM)."""
        return 128 + self.signum


_state = {"active": False, "received": None, "in_fit": False}


def received() -> int | None:
    """The first stop signal received under the current guard, or None."""
    return _state["received"]


def _handler(signum: int, frame) -> None:
    first = _state["received"] is None
    if first:
        _state["received"] = signum
        tune_stop = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
        # Inside Tuner.fit, Ray Tune's SIGUSR1 handler ends its loop gracefully; anywhere
        # else (Ray starting, between Bayesian rounds) the study stops where it is.
        if _state["in_fit"]:
            print(f"[study] {signal.Signals(signum).name} received: stopping the trials and saving the study's "
                  f"state (send it again to stop at once)", file=sys.stderr, flush=True)
            if callable(tune_stop):
                os.kill(os.getpid(), signal.SIGUSR1)
            else:
                # Tuner.fit is setting up: raising now would leave Ray's experiment state
                # half written (a resume then found no trials). Ask Tune to stop as soon
                # as its loop has installed its handler.
                threading.Thread(target=_stop_tune_when_ready, daemon=True).start()
            return
    raise Interrupted(_state["received"])


def _stop_tune_when_ready() -> None:
    while _state["in_fit"]:
        if callable(signal.getsignal(signal.SIGUSR1)):
            os.kill(os.getpid(), signal.SIGUSR1)
            return
        time.sleep(0.05)


def _install() -> None:
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, _handler)


class _NoRestoreHint(logging.Filter):
    """Drops Ray Tune's 'Resume experiment with: Tuner.restore(...)': a study resumes with
    `python -m study.run --resume STUDY_DIR`, which the guard's caller prints."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore" not in record.getMessage()


@contextlib.contextmanager
def study_guard():
    """Takes over SIGINT and SIGTERM for the duration of a study; restores the previous
    handlers after. Raises nothing itself; `Interrupted` comes from `tune_fit` or from a
    signal received outside Tuner.fit."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS} if main_thread else {}
    # Ray Tune must not install its own SIGINT handler over ours inside Tuner.fit.
    old_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    _state.update(active=True, received=None, in_fit=False)
    hint_filter = _NoRestoreHint()
    tune_logger = logging.getLogger("ray.tune.tune")
    tune_logger.addFilter(hint_filter)
    _install()
    try:
        yield
    finally:
        _state.update(active=False, in_fit=False)
        tune_logger.removeFilter(hint_filter)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if old_env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = old_env


def reinstall() -> None:
    """Takes the signals back after something replaced a handler (`ray.init` sets its own
    SIGTERM handler in the driver). No-op outside a guard."""
    if _state["active"]:
        _install()


@contextlib.contextmanager
def tune_fit():
    """Wraps `Tuner.fit()`: under a guard, a stop signal ends the fit through Ray Tune's
    graceful path and then raises `Interrupted`. Outside a guard: no effect."""
    if not _state["active"]:
        yield
        return
    _install()
    if hasattr(signal, "SIGUSR1"):
        # Ray Tune installs its SIGUSR1 (graceful stop) handler at the start of each fit and
        # never removes it: reset, so a callable handler means this fit's.
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    _state["in_fit"] = True
    try:
        yield
    finally:
        _state["in_fit"] = False
    if _state["received"] is not None:
        raise Interrupted(_state["received"])
