"""``namerd dtab``: manage dtabs through namerd's HTTP API (like Linkerd's namerctl).

    namerd dtab list
    namerd dtab get NS                    dtab text, headed by "# version: <ETag>"
    namerd dtab create NS FILE|-
    namerd dtab update NS FILE|- [--version ETAG]
    namerd dtab apply NS FILE|-          create, or update if it exists
    namerd dtab delete NS
    common: --namerd URL (default $NAMERD_URL or http://127.0.0.1:4180)
            --cacert FILE, --cert FILE --key FILE: for an https:// namerd (as curl's options;
            --cert/--key when namerd requires client certificates)
    create/update/apply: --dry-run --names /svc/a,/svc/b  (show binding changes, write nothing)

``update`` never overwrites blindly: it sends ``If-Match`` with the version the
operator started from — ``--version``, else the ``# version:`` line that ``get``
wrote at the top of the file, else the version current when the command starts.
If someone else changed the namespace meanwhile namerd answers 412 and nothing is
written. Dtab syntax errors are reported as ``FILE:line:col: message`` (exit 2)
before anything is sent.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional, Sequence

from .dryrun import change_row, format_row, summarize
from .dtabtext import DtabParseError, parse_dtab_at

DEFAULT_URL = "http://127.0.0.1:4180"
_VERSION_RE = re.compile(r"^\s*#\s*version:\s*(\S+)\s*$", re.MULTILINE)


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Client:
    """Minimal synchronous client of the dtab endpoints (stdlib HTTP is enough here)."""

    def __init__(self, base: str, timeout: float = 10.0, ssl_context: Optional[ssl.SSLContext] = None) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.ssl_context = ssl_context

    def request(self, method: str, path: str, body: Optional[bytes] = None,
                headers: Optional[dict[str, str]] = None) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.ssl_context) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise CliError(f"cannot reach namerd at {self.base}: {reason}") from None

    def get(self, ns: str) -> Optional[tuple[str, str]]:
        """(dtab text, version) or None when the namespace does not exist."""
        status, headers, body = self.request("GET", _ns_path(ns), headers={"Accept": "application/dtab"})
        if status == 404:
            return None
        _check(status, body, f"get {ns}")
        return body.decode("utf-8"), headers.get("etag", "")

    def delegate(self, ns: Optional[str], path: str, dtab: str = "") -> Any:
        q = {"path": path}
        if dtab:
            q["dtab"] = dtab
        if ns is not None:
            url = f"{_ns_path(ns, 'delegate')}?{urllib.parse.urlencode(q)}"
        else:
            url = f"/api/1/delegate?{urllib.parse.urlencode(q)}"
        status, _, body = self.request("GET", url)
        _check(status, body, f"delegate {path}")
        return json.loads(body)


def _ns_path(ns: str, what: str = "dtabs") -> str:
    return f"/api/1/{what}/{urllib.parse.quote(ns, safe='')}"


def _check(status: int, body: bytes, what: str) -> None:
    if 200 <= status < 300:
        return
    detail = body.decode("utf-8", "replace").strip()
    raise CliError(f"{what}: namerd answered {status}{': ' + detail if detail else ''}")


def _read_source(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    try:
        with open(name, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise CliError(f"cannot read {name}: {e.strerror or e}", 2) from None


def _parse(text: str, name: str) -> str:
    """Validate locally; return the canonical text to send."""
    try:
        dtab = parse_dtab_at(text, "<stdin>" if name == "-" else name)
    except DtabParseError as e:
        raise CliError(str(e), 2) from None
    return dtab.show()


def _pretty(dtab_text: str) -> str:
    """One dentry per line, as operators write them."""
    from namerouter.dtab import Dtab

    d = Dtab.read(dtab_text)
    return "".join(f"{e.prefix.show()} => {e.dst.show()};\n" for e in d)


# Dry run (the comparison itself is namerd/dryrun.py, shared with the namerd UI) -------

def dry_run(client: Client, ns: str, new_text: str, names: list[str], out: Any) -> None:
    exists = client.get(ns) is not None
    out.write(f"dry run: namespace {ns} would be {'updated' if exists else 'created'}; nothing written\n")
    for name in names:
        before = summarize(client.delegate(ns, name)) if exists else "~"
        after = summarize(client.delegate(None, name, new_text))
        out.write(format_row(change_row(name, before, after)) + "\n")


# Commands ---------------------------------------------------------------------------

def cmd_list(client: Client, args: argparse.Namespace) -> int:
    status, _, body = client.request("GET", "/api/1/dtabs")
    _check(status, body, "list")
    for ns in json.loads(body):
        print(ns)
    return 0


def cmd_get(client: Client, args: argparse.Namespace) -> int:
    got = client.get(args.ns)
    if got is None:
        raise CliError(f"namespace {args.ns} does not exist")
    text, version = got
    sys.stdout.write(f"# namespace: {args.ns}\n# version: {version}\n{_pretty(text)}")
    return 0


def _write_guard(client: Client, args: argparse.Namespace, text: str) -> bool:
    """Handle --dry-run; True when the caller should stop."""
    if not args.dry_run:
        return False
    names = [n for n in (args.names or "").split(",") if n.strip()]
    dry_run(client, args.ns, text, [n.strip() for n in names], sys.stdout)
    return True


def cmd_create(client: Client, args: argparse.Namespace) -> int:
    text = _parse(_read_source(args.file), args.file)
    if _write_guard(client, args, text):
        return 0
    status, _, body = client.request("POST", _ns_path(args.ns), text.encode(),
                                     {"Content-Type": "application/dtab"})
    if status == 409:
        raise CliError(f"namespace {args.ns} already exists; use `namerd dtab update` or `apply`")
    _check(status, body, f"create {args.ns}")
    print(f"created {args.ns}")
    return 0


def _update(client: Client, ns: str, text: str, version: str) -> None:
    status, _, body = client.request("PUT", _ns_path(ns), text.encode(),
                                     {"Content-Type": "application/dtab", "If-Match": version})
    if status == 412:
        now = client.get(ns)
        cur = now[1] if now else "(deleted)"
        raise CliError(f"namespace {ns} was changed by someone else: you started from version {version}, "
                       f"it is now {cur}. Nothing was written; `namerd dtab get {ns}`, merge, and retry.")
    if status == 404:
        raise CliError(f"namespace {ns} does not exist; use `namerd dtab create` or `apply`")
    _check(status, body, f"update {ns}")


def cmd_update(client: Client, args: argparse.Namespace) -> int:
    raw = _read_source(args.file)
    text = _parse(raw, args.file)
    version = args.version or _file_version(raw)
    if _write_guard(client, args, text):
        return 0
    if version is None:
        got = client.get(args.ns)
        if got is None:
            raise CliError(f"namespace {args.ns} does not exist; use `namerd dtab create` or `apply`")
        version = got[1]
    _update(client, args.ns, text, version)
    print(f"updated {args.ns}")
    return 0


def cmd_apply(client: Client, args: argparse.Namespace) -> int:
    raw = _read_source(args.file)
    text = _parse(raw, args.file)
    if _write_guard(client, args, text):
        return 0
    version = args.version or _file_version(raw)
    got = client.get(args.ns)
    if got is None:
        status, _, body = client.request("POST", _ns_path(args.ns), text.encode(),
                                         {"Content-Type": "application/dtab"})
        if status != 409:
            _check(status, body, f"create {args.ns}")
            print(f"created {args.ns}")
            return 0
        got = client.get(args.ns)  # created by someone else meanwhile: fall through to update
        if got is None:
            raise CliError(f"namespace {args.ns} is being created and deleted concurrently; retry")
    _update(client, args.ns, text, version or got[1])
    print(f"updated {args.ns}")
    return 0


def cmd_delete(client: Client, args: argparse.Namespace) -> int:
    status, _, body = client.request("DELETE", _ns_path(args.ns))
    if status == 404:
        raise CliError(f"namespace {args.ns} does not exist")
    _check(status, body, f"delete {args.ns}")
    print(f"deleted {args.ns}")
    return 0


def _file_version(raw: str) -> Optional[str]:
    m = _VERSION_RE.search(raw)
    return m.group(1) if m else None


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--namerd", default=os.environ.get("NAMERD_URL", DEFAULT_URL),
                        help="namerd HTTP API base URL (default $NAMERD_URL or %(default)s)")
    common.add_argument("--cacert", help="CA certificate(s) to verify an https:// namerd with")
    common.add_argument("--cert", help="client certificate, for a namerd that requires one")
    common.add_argument("--key", help="the client certificate's key")
    writes = argparse.ArgumentParser(add_help=False)
    writes.add_argument("--dry-run", action="store_true",
                        help="show how --names would bind with the new dtab; write nothing")
    writes.add_argument("--names", default="", help="comma-separated names for --dry-run, e.g. /svc/a,/svc/b")
    p = argparse.ArgumentParser(prog="namerd dtab", description="Manage dtabs stored in namerd.")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", parents=[common], help="list namespaces").set_defaults(fn=cmd_list)
    g = sub.add_parser("get", parents=[common], help="show a namespace's dtab and version")
    g.add_argument("ns")
    g.set_defaults(fn=cmd_get)
    for name, fn, helptext in (("create", cmd_create, "create a namespace"),
                               ("update", cmd_update, "replace a dtab (If-Match protected)"),
                               ("apply", cmd_apply, "create or update")):
        sp = sub.add_parser(name, parents=[common, writes], help=helptext)
        sp.add_argument("ns")
        sp.add_argument("file", help="dtab file, or - for stdin")
        if name != "create":
            sp.add_argument("--version", help="the ETag you started from (default: the file's "
                                              "'# version:' line, else the current one)")
        sp.set_defaults(fn=fn)
    d = sub.add_parser("delete", parents=[common], help="delete a namespace")
    d.add_argument("ns")
    d.set_defaults(fn=cmd_delete)
    return p


def _ssl_context(cacert: Optional[str], cert: Optional[str], key: Optional[str]) -> Optional[ssl.SSLContext]:
    """TLS to namerd (``https://`` URLs): trust ``cacert`` (else the system's CAs) and
    present ``cert``/``key`` when given."""
    if not (cacert or cert):
        return None
    ctx = ssl.create_default_context(cafile=cacert)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    if getattr(args, "dry_run", False) and not args.names:
        sys.stderr.write("namerd dtab: --dry-run needs --names /svc/a,/svc/b\n")
        return 2
    try:
        ctx = _ssl_context(args.cacert, args.cert, args.key)
    except (OSError, ssl.SSLError) as e:
        sys.stderr.write(f"namerd dtab: TLS files: {e}\n")
        return 2
    client = Client(args.namerd, ssl_context=ctx)
    try:
        status: int = args.fn(client, args)
        return status
    except CliError as e:
        sys.stderr.write(f"namerd dtab: {e}\n" if e.code != 2 else f"{e}\n")
        return e.code
