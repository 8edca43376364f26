"""Process-wide settings, applied only when asked: ``structbandits.configure``.

Importing ``structbandits`` changes nothing global. The command line and the test suite call
``configure()`` (float64 and one LAPACK thread, below), and the experiment runners call
``ensure_configured()`` (the same, unless ``configure`` was already called). A library user who calls
the agents, posteriors or planners directly calls it once, before creating any JAX arrays:

    import structbandits
    structbandits.configure()            # x64=True, lapack_threads from the environment (default 1)

Why these two:

* ``x64``: posteriors here accumulate thousands of rank-one updates, and float32 Cholesky factors
  drift visibly over such runs; everything tested runs in float64. Arrays created before the switch
  keep their dtype, so call it first.
* ``lapack_threads``: JAX's CPU factorisations call the BLAS library that SciPy ships, whose threads
  thrash on small vmapped matrices when the cores are busy (``structbandits.lapack_threads``).
* ``compilation_cache`` (on unless turned off): compiling dominates short jobs on the CPU (seconds per
  agent), and JAX's persistent compilation cache keeps compiled programs on disk so that a repeated run
  of the same shapes loads them. The folder is ``~/.cache/structbandits/jax`` (or under
  ``$XDG_CACHE_HOME``); ``STRUCTBANDITS_COMPILATION_CACHE=off`` turns it off and ``=PATH`` moves it.
  Each machine type gets its own subfolder (a fingerprint of the CPU's architecture and feature flags),
  so a folder shared by machines with different CPUs never hands one a program built for another. A
  cached program is the same program, so results do not change; JAX keys each entry by the program,
  the JAX/XLA versions and the XLA flags. On the CPU, jaxlib 0.9 logs two long "Target machine feature
  +prefer-no-gather is not supported on the host machine ... could lead to execution errors such as
  SIGILL" errors for every program it loads from the cache (jax-ml/jax#38445, openxla/xla#44565:
  tuning flags counted as CPU features; the program loads and runs). While the cache is on,
  ``configure`` therefore raises the threshold of XLA's C++ log to FATAL (what
  ``TF_CPP_MIN_LOG_LEVEL=3`` does); turning the cache off restores ``TF_CPP_MIN_LOG_LEVEL``'s level.
  Python-side JAX warnings and every error JAX raises are unaffected.
"""

from __future__ import annotations

import hashlib
import os
import platform
import warnings
from pathlib import Path

import jax

from structbandits.errors import ValidationError
from structbandits.lapack_threads import limit_from_environment, limit_lapack_threads

__all__ = ["CACHE_VARIABLE", "compilation_cache_dir", "configure", "default_compilation_cache", "ensure_configured",
           "machine_fingerprint"]

CACHE_VARIABLE = "STRUCTBANDITS_COMPILATION_CACHE"
_OFF = {"", "0", "off", "false", "no", "none"}
_ON = {"1", "on", "true", "yes", "default"}
_MIN_COMPILE_SECONDS = 0.0  # cache every program: the many small ones add up (demo: warm compile 2.1 s vs 5.2 s at 0.2)
_FROM_ENVIRONMENT = "environment"
_applied: dict | None = None  # what the last configure() call applied in this process


def default_compilation_cache() -> Path:
    """``$XDG_CACHE_HOME/structbandits/jax`` (default ``~/.cache/structbandits/jax``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "structbandits" / "jax"


def compilation_cache_dir() -> Path | None:
    """The cache folder ``STRUCTBANDITS_COMPILATION_CACHE`` asks for: ``default_compilation_cache()``
    (unset, ``on``), None (``off``, ``0``, ``false``, ``no``, ``none``, empty: no cache) or the path it
    holds; see the module docstring."""
    if CACHE_VARIABLE not in os.environ:
        return default_compilation_cache()
    raw = os.environ[CACHE_VARIABLE].strip()
    if raw.lower() in _OFF:
        return None
    if raw.lower() in _ON:
        return default_compilation_cache()
    return Path(raw).expanduser()


def _quiet_cpu_loader(quiet: bool) -> None:
    """XLA's C++ log threshold: FATAL while the cache is on (the CPU loader's false SIGILL errors), and
    back to ``TF_CPP_MIN_LOG_LEVEL`` (default 0) when it is off. A JAX without the hook is left alone."""
    try:
        from jax._src.lib import utils
    except ImportError:
        return
    if not hasattr(utils, "absl_set_min_log_level"):
        return
    try:
        default = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        default = 0
    jax.devices()  # starting the backend resets the threshold, so start it first
    utils.absl_set_min_log_level(3 if quiet else default)


def machine_fingerprint() -> str:
    """12 hex digits naming this machine type: its architecture and CPU feature flags (``/proc/cpuinfo``)."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = " ".join(sorted(line.split(":", 1)[1].split()))
                break
    except OSError:
        flags = platform.processor()
    return hashlib.sha256(f"{platform.machine()}|{flags}".encode()).hexdigest()[:12]


def _usable_cache_folder(folder: Path | None, asked_by: str | None) -> Path | None:
    """``folder``'s machine subfolder (``machine_fingerprint()``), made if needed, where it can be written.
    Otherwise a folder someone named
    (``asked_by``: the argument or the environment variable) is a ``ValidationError`` naming it, and the
    default folder (nobody asked for it; e.g. a read-only home) gives a warning and no cache."""
    if folder is None:
        return None
    target = folder / machine_fingerprint()
    try:
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"{folder} is a file")
        target.mkdir(parents=True, exist_ok=True)
        if not os.access(target, os.W_OK | os.X_OK):
            raise PermissionError(f"{target} is not writable")
    except OSError as err:
        reason = f"{err.strerror}: {err.filename}" if err.strerror and err.filename else str(err)
        if asked_by is not None:
            raise ValidationError(f"{asked_by}: expected a folder the compilation cache can be written to, got "
                                  f"{folder} ({reason})") from None
        warnings.warn(f"the compilation cache folder {folder} cannot be used ({reason}); running without the "
                      f"persistent compilation cache (set {CACHE_VARIABLE}=PATH to move it, or =off)",
                      RuntimeWarning, stacklevel=3)
        return None
    return target  # never load a program built for another CPU


def _set_compilation_cache(folder: Path | None) -> str | None:
    """Point JAX's persistent cache at ``folder`` (a machine subfolder from ``_usable_cache_folder``) or none."""
    from jax.experimental.compilation_cache import compilation_cache

    wanted = None if folder is None else str(folder)
    if wanted != jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", wanted)
        compilation_cache.reset_cache()  # the next compile opens the new folder (or none)
    if wanted is not None:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", _MIN_COMPILE_SECONDS)
    _quiet_cpu_loader(wanted is not None)
    return wanted


def configure(x64: bool = True, lapack_threads: int | str | None = _FROM_ENVIRONMENT,
              compilation_cache: str | Path | None = _FROM_ENVIRONMENT) -> dict:
    """Apply the process-wide numerical settings the package is tested with.

    Parameters
    ----------
    x64 : switch JAX to float64 (``jax_enable_x64``); False switches it off again.
    lapack_threads : threads for the BLAS library behind JAX's CPU LAPACK kernels: an integer >= 1,
        ``None`` to leave the thread counts alone, or ``"environment"`` (default) for the value of
        ``STRUCTBANDITS_LAPACK_THREADS`` (default 1; ``0`` leaves them alone).
    compilation_cache : a folder for JAX's persistent compilation cache (entries go to a subfolder
        per machine type), ``None`` for no cache, or ``"environment"`` (default):
        ``compilation_cache_dir()``: the default folder unless ``STRUCTBANDITS_COMPILATION_CACHE`` says
        otherwise. While a cache is on, XLA's C++ log threshold is FATAL (module docstring). A folder
        that cannot be made or written is a ``ValidationError`` naming ``compilation_cache`` or
        ``STRUCTBANDITS_COMPILATION_CACHE`` when one of them named it; the default folder (e.g. under a
        read-only home) gives a ``RuntimeWarning`` and the run goes on without a cache.

    Returns
    -------
    dict with ``x64`` (the setting now in force), ``lapack_libraries`` (the libraries capped) and
    ``compilation_cache`` (the folder in use, or None).
    """
    if not isinstance(x64, bool):
        raise ValidationError(f"x64: expected True or False, got {x64!r}")
    from_environment = isinstance(lapack_threads, str) and lapack_threads == _FROM_ENVIRONMENT
    valid_count = isinstance(lapack_threads, int) and not isinstance(lapack_threads, bool) and lapack_threads >= 1
    if not (lapack_threads is None or from_environment or valid_count):
        raise ValidationError(f"lapack_threads: expected an integer >= 1, None or 'environment', "
                              f"got {lapack_threads!r}")
    asked_by = None  # who named the cache folder: None for the default folder (nobody asked for it)
    if compilation_cache is None:
        cache_folder = None
    elif isinstance(compilation_cache, str) and compilation_cache == _FROM_ENVIRONMENT:
        cache_folder = compilation_cache_dir()
        if os.environ.get(CACHE_VARIABLE, "").strip().lower() not in _OFF | _ON:
            asked_by = CACHE_VARIABLE
    elif isinstance(compilation_cache, (str, Path)):
        cache_folder = Path(compilation_cache).expanduser()
        asked_by = "compilation_cache"
    else:
        raise ValidationError(f"compilation_cache: expected a folder path, None or 'environment', "
                              f"got {compilation_cache!r}")
    cache_folder = _usable_cache_folder(cache_folder, asked_by)
    jax.config.update("jax_enable_x64", x64)
    cache = _set_compilation_cache(cache_folder)
    if lapack_threads is None:
        capped = []
    elif from_environment:
        capped = limit_from_environment()
    else:
        capped = limit_lapack_threads(lapack_threads)
    global _applied
    _applied = {"x64": bool(jax.config.jax_enable_x64), "lapack_libraries": capped, "compilation_cache": cache}
    return dict(_applied)


def ensure_configured() -> dict:
    """``configure()`` with its defaults, unless ``configure`` was already called in this process.

    The experiment runners call this on entry, so a script that only calls a runner gets the tested
    settings, while settings a user chose with an explicit ``configure(...)`` call are kept.
    """
    return dict(_applied) if _applied is not None else configure()
