"""Start the video catalog: the three apps and (unless ``--no-router``) a namerouter.

    python examples/videos/run.py                 # all healthy, through the router
    python examples/videos/run.py --flaky         # videos-api fails ~1/3 of requests
    python examples/videos/run.py --flaky --no-router   # apps call each other directly

Then open http://127.0.0.1:7001/ (videos-web). Ctrl-C stops everything.
``--base-port N`` moves the apps to N, N+1, N+2, the router to N+3 and its admin to N+4
(the config is rewritten into a temporary file).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

APPS = (("videos-web", "videos_web.py"), ("playlists-api", "playlists_api.py"), ("videos-api", "videos_api.py"))


def render_config(web: int, playlists: int, api: int, router: int, admin: int) -> str:
    with open(os.path.join(HERE, "linkerd.yaml")) as f:
        text = f.read()
    for old, new in (("127.1/7001", f"127.1/{web}"), ("127.1/7002", f"127.1/{playlists}"),
                     ("127.1/7003", f"127.1/{api}"), ("port: 4140", f"port: {router}"),
                     ("port: 9990", f"port: {admin}")):
        text = text.replace(old, new)
    return text


def start(base: int = 7001, flaky: bool = False, router: bool = True) -> list[subprocess.Popen]:
    """Start everything; returns the processes (router last). Ports: see the module doc."""
    web, playlists, api, rport, admin = base, base + 1, base + 2, base + 3, base + 4
    ports = {"videos-web": web, "playlists-api": playlists, "videos-api": api}
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "no_proxy", "all_proxy")}
    if router:
        env["http_proxy"] = f"http://127.0.0.1:{rport}"
        env["VIDEOS_API_URL"] = "http://videos-api"
        env["PLAYLISTS_API_URL"] = "http://playlists-api"
    else:
        env["VIDEOS_API_URL"] = f"http://127.0.0.1:{api}"
        env["PLAYLISTS_API_URL"] = f"http://127.0.0.1:{playlists}"
    procs = []
    for name, script in APPS:
        e = dict(env, PORT=str(ports[name]), FLAKY="true" if flaky and name == "videos-api" else "false")
        procs.append(subprocess.Popen([sys.executable, os.path.join(HERE, script)], cwd=HERE, env=e))
    if router:
        cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        cfg.write(render_config(web, playlists, api, rport, admin))
        cfg.close()
        procs.append(subprocess.Popen([sys.executable, "-m", "namerouter", cfg.name], cwd=ROOT,
                                      env={k: v for k, v in os.environ.items() if k.lower() != "http_proxy"}))
    wait_ready([web, playlists, api] + ([admin] if router else []), procs)
    return procs


def wait_ready(ports: list[int], procs: list[subprocess.Popen], timeout: float = 20.0) -> None:
    import socket
    deadline = time.monotonic() + timeout
    for p in ports:
        while True:
            for proc in procs:
                if proc.poll() is not None:
                    stop(procs)
                    raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", p), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    stop(procs)
                    raise TimeoutError(f"nothing listening on 127.0.0.1:{p}")
                time.sleep(0.05)


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flaky", action="store_true", help="videos-api fails about 1/3 of requests")
    ap.add_argument("--no-router", action="store_true", help="apps call each other directly")
    ap.add_argument("--base-port", type=int, default=7001)
    args = ap.parse_args()
    procs = start(args.base_port, args.flaky, not args.no_router)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        url = f"http://127.0.0.1:{args.base_port}/"
        try:
            with urllib.request.urlopen(url) as r:  # noqa: S310 (loopback)
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        print(f"videos-web: {url} (first page: {status})", flush=True)
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        stop(procs)


if __name__ == "__main__":
    main()
