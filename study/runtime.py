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


# Ray settings of a study's driver process. Ray reads RAY_DEDUP_LOGS once, when `ray` is
# imported (ray._private.ray_constants), so setting it in init_ray after `import ray` came
# too late and the driver still folded trial lines into "[repeated 6x across cluster]".
# RAY_AIR_NEW_OUTPUT=0 selects Tune's legacy reporter, which at verbose=0 prints nothing;
# the new one prints "View detailed results here" and a TensorBoard hint on stdout at any
# verbosity, and stdout of `python -m study.run` holds only the report path.
# A value the user set in the environment wins.
RAY_DRIVER_ENVIRONMENT = {"RAY_DEDUP_LOGS": "0", "RAY_AIR_NEW_OUTPUT": "0"}


def configure_ray_driver() -> None:
    """Sets RAY_DRIVER_ENVIRONMENT (unless set); call before anything imports ray."""
    for name, value in RAY_DRIVER_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
