"""Building and running the project's container image with podman, for the image test.

Registries cannot be reached here, so the base image is a Debian made locally by
``docker/debian-base.sh`` (debootstrap + ``podman import``; its root file system is cached
as a tarball, so only the first run on a machine pays the minutes of debootstrap).
``podman run`` needs the flags shared/reference/components.md found to work on this
kind of machine: runc, cgroupfs, host networking, explicit ulimits.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE_IMAGE = "localhost/namerouter-debian-base:bookworm"
RUN_FLAGS = ["--runtime", "runc", "--cgroup-manager", "cgroupfs"]
RUN_OPTS = ["--network=host", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *RUN_FLAGS, *args], capture_output=True, text=True, timeout=timeout,
                          check=check)


def unavailable() -> Optional[str]:
    """Why the container test cannot run here, or None."""
    for tool, pkg in (("podman", "podman"), ("runc", "runc"), ("debootstrap", "debootstrap")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package {pkg}; `make test` installs it)"
    if os.geteuid() != 0:
        return "debootstrap and rootful podman need root"
    try:
        r = podman("info", timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"podman does not work here: {e}"
    if r.returncode != 0:
        return f"podman does not work here: {r.stderr.strip()[:300]}"
    return None


def ensure_base_image() -> str:
    """The local Debian base (made once per machine; imported again from the cached tarball)."""
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        subprocess.run(["bash", os.path.join(ROOT, "docker", "debian-base.sh"), BASE_IMAGE], check=True,
                       capture_output=True, text=True, timeout=1800)
    return BASE_IMAGE


def build_image(tag: str, base: str, extra: tuple | list = ()) -> None:
    """``podman build`` of the project's Dockerfile on ``base`` (pip reaches PyPI over the host network)."""
    r = podman("build", "--network=host", *extra, "--build-arg", f"BASE={base}", "-t", tag, ROOT, timeout=1200,
               check=False)
    if r.returncode != 0:
        raise RuntimeError(f"podman build failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")


class Container:
    """``podman run -d`` of the image with files mounted read-only; stopped with SIGTERM."""

    def __init__(self, image: str, args: list[str], mounts: dict[str, str]) -> None:
        self.image = image
        self.args = args
        self.mounts = mounts
        self.id: Optional[str] = None

    async def start(self) -> "Container":
        vols = [x for host, inside in self.mounts.items() for x in ("-v", f"{host}:{inside}:ro")]
        r = await asyncio.to_thread(podman, "run", "-d", *RUN_OPTS, *vols, self.image, *self.args)
        self.id = r.stdout.strip()
        return self

    async def logs(self) -> str:
        r = await asyncio.to_thread(podman, "logs", self.id or "", check=False)
        return r.stdout + r.stderr

    async def stop(self) -> int:
        """SIGTERM, then the exit status (0 = a clean drain and shutdown)."""
        if self.id is None:
            return -1
        await asyncio.to_thread(podman, "stop", "-t", "20", self.id, check=False)
        r = await asyncio.to_thread(podman, "inspect", "--format", "{{.State.ExitCode}}", self.id, check=False)
        await asyncio.to_thread(podman, "rm", "-f", self.id, check=False)
        self.id = None
        return int(r.stdout.strip() or -1)
