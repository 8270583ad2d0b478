"""Process-level JAX settings shared by every entry point (CLI, Ray trial processes)."""
from __future__ import annotations

import os
import pathlib


def cache_dir() -> pathlib.Path:
    """The platform's cache root: env GAN_STUDY_CACHE, else ~/.cache/gan_study."""
    return pathlib.Path(os.environ.get("GAN_STUDY_CACHE", pathlib.Path.home() / ".cache" / "gan_study"))


def configure_jax() -> None:
    """Turns on JAX's persistent compilation cache, so trial processes that build the
    same program (same arm and shapes; hyperparameters are traced values) compile it
    once per machine instead of once per trial."""
    import jax

    directory = os.environ.get("JAX_COMPILATION_CACHE_DIR", str(cache_dir() / "jax_compilation"))
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
