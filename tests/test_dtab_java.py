"""Java primitives the dtab language depends on, checked against a real JVM.

Finagle's parser and printer lean on Java: ``Character.isWhitespace`` (where whitespace
and comments may go), ``Character.isDigit`` (what starts a weight), ``String.format("%.2f")``
(weights), ``Integer.parseInt`` (``/$/inet`` ports). When a JDK is installed (ZooKeeper
brings one here), this runs a small Java program (single-file source launch) and compares
its answers with ours; otherwise it is skipped.
"""
from __future__ import annotations

import random
import shutil
import struct
import subprocess

import pytest

from namerouter.dtab._explain import JAVA_WHITESPACE
from namerouter.dtab.system import java_parse_int
from namerouter.dtab.tree import format_weight

JAVA_SOURCE = r"""
import java.nio.file.*;
import java.util.*;
public class Probe {
  public static void main(String[] a) throws Exception {
    Path dir = Path.of(a[0]);
    StringBuilder ws = new StringBuilder(), dg = new StringBuilder();
    for (int c = 0; c <= 0xFFFF; c++) {
      if (Character.isWhitespace((char) c)) ws.append(c).append(' ');
      if (Character.isDigit((char) c)) dg.append(c).append(' ');
    }
    Files.writeString(dir.resolve("ws.out"), ws.toString());
    Files.writeString(dir.resolve("digits.out"), dg.toString());
    List<String> out = new ArrayList<>();
    for (String line : Files.readAllLines(dir.resolve("doubles.in")))
      out.add(String.format(Locale.ROOT, "%.2f", Double.longBitsToDouble(Long.parseUnsignedLong(line, 16))));
    Files.write(dir.resolve("doubles.out"), out);
    List<String> ints = new ArrayList<>();
    for (String line : Files.readAllLines(dir.resolve("ints.in"))) {
      try { ints.add(Integer.toString(Integer.parseInt(line))); }
      catch (NumberFormatException e) { ints.add("ERR"); }
    }
    Files.write(dir.resolve("ints.out"), ints);
  }
}
"""

INTS = ["80", "+80", "-1", "0080", "\u0668\u0660", "2147483647", "2147483648", "-2147483648",
        "-2147483649", "+", "-", "8 0", "1_0", "\uff18\uff10", "0x10", "\u0663", "08080"]


def _java_can_run_source() -> bool:
    java = shutil.which("java")
    if not java:
        return False
    r = subprocess.run([java, "--list-modules"], capture_output=True, text=True, timeout=60)
    return "jdk.compiler" in r.stdout


@pytest.fixture(scope="module")
def java_answers(tmp_path_factory):
    if not _java_can_run_source():
        pytest.skip("no JDK (java with jdk.compiler) installed")
    d = tmp_path_factory.mktemp("java")
    rng = random.Random(7)
    doubles = [0.125, 2.675, 1.005, 0.005, 0.015, 1e20, 1e-7, 123.455, 5e-324, 0.0, 1e15 + 0.125]
    doubles += [rng.randint(0, 100000) / 1000 for _ in range(1500)]
    doubles += [rng.uniform(0, 1e6) for _ in range(1500)]
    (d / "doubles.in").write_text(
        "\n".join(format(struct.unpack("<Q", struct.pack("<d", x))[0], "x") for x in doubles) + "\n")
    (d / "ints.in").write_text("\n".join(INTS) + "\n", encoding="utf-8")
    (d / "Probe.java").write_text(JAVA_SOURCE)
    subprocess.run(["java", "-Dfile.encoding=UTF-8", str(d / "Probe.java"), str(d)],
                   check=True, capture_output=True, timeout=120)
    return d, doubles


def test_java_whitespace_set(java_answers):
    d, _ = java_answers
    java = {int(x) for x in (d / "ws.out").read_text().split()}
    assert java == {ord(c) for c in JAVA_WHITESPACE}


def test_java_digit_set_is_pythons_isdecimal(java_answers):
    d, _ = java_answers
    java = {int(x) for x in (d / "digits.out").read_text().split()}
    assert java == {c for c in range(0x10000) if chr(c).isdecimal()}


def test_java_percent_2f(java_answers):
    d, doubles = java_answers
    java = (d / "doubles.out").read_text().split("\n")
    mismatches = [(x, java[i], format_weight(x)) for i, x in enumerate(doubles) if java[i] != format_weight(x)]
    assert mismatches == []


def test_java_parse_int(java_answers):
    d, _ = java_answers
    java = (d / "ints.out").read_text(encoding="utf-8").split("\n")
    ours = [str(v) if (v := java_parse_int(s)) is not None else "ERR" for s in INTS]
    assert ours == java[: len(INTS)]
