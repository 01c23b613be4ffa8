"""Register service instances with the real Apache Curator library (Debian's
libcurator-discovery-java) from a small Java program, ``java/CuratorRegister.java``,
compiled once per test session."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
DISCOVERY_JAR = "/usr/share/java/curator-x-discovery.jar"  # its manifest names every dependency

_classes: Optional[str] = None


def curator_available() -> bool:
    return os.path.exists(DISCOVERY_JAR) and shutil.which("javac") is not None


def _compiled() -> str:
    global _classes
    if _classes is None:
        out = tempfile.mkdtemp(prefix="curator-register-")
        subprocess.run(["javac", "-cp", DISCOVERY_JAR, "-d", out, os.path.join(HERE, "java", "CuratorRegister.java")],
                       check=True, capture_output=True, timeout=120)
        _classes = out
    return _classes


class CuratorRegistration:
    """One JVM holding Curator registrations; ``close()`` unregisters, ``kill()`` crashes."""

    def __init__(self, zk_hosts: str, base_path: str, *instances: tuple) -> None:
        specs = [",".join(str(x) for x in inst) for inst in instances]  # (name, id, address, port[, sslPort])
        self.proc = subprocess.Popen(
            ["java", "-Xmx64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             "-cp", f"{_compiled()}:{DISCOVERY_JAR}", "CuratorRegister", zk_hosts, base_path, *specs],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if line.strip() != "registered":
            self.kill()
            raise RuntimeError(f"Curator registration failed (exit {self.proc.poll()})")

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
