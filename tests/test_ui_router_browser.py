"""The router's admin pages in headless Chromium, over a real router, real backends and
real traffic: the dashboard's figures move while traffic flows and a failing backend
turns red (and sorts first); the dtab playground renders the delegation tree of a real
dtab, flags a syntax error with line and column, keeps its state in a shareable URL,
and shows hostile text as text. Each test saves a screenshot in its tmp dir and checks
the DOM.

``NAMEROUTER_SCREENSHOTS=docs/img`` (``make screenshots``) also copies the screenshots
there and lets the dashboard collect a minute of history first, for the README.
"""
from __future__ import annotations

import asyncio
import os
from urllib.parse import quote

from tests.support.backends import Backend
from tests.support.browser import Page
from tests.support.routing import Traffic, running_router

FOR_README = bool(os.environ.get("NAMEROUTER_SCREENSHOTS"))


ROW = 'const r = document.querySelector(`#service-table tr[data-name="${arguments[0]}"]`)'


async def test_dashboard_shows_live_figures_and_a_failing_backend_turns_red(browser, tmp_path):
    page = Page(browser)
    async with Backend("web") as web, Backend("api") as api, Backend("flaky") as flaky, running_router(f"""
            /svc/web => /$/inet/127.0.0.1/{web.port};
            /svc/api => /$/inet/127.0.0.1/{api.port};
            /svc/flaky => /$/inet/127.0.0.1/{flaky.port};
            """, router_extra=f"""  client:
    kind: io.l5d.static
    configs:
    - prefix: /$/inet/127.0.0.1/{flaky.port}
      hostConnectionPool: {{maxSize: 8}}
""") as (_, base, port):
        traffic = [Traffic(port, "web", concurrency=2, pause=0.02).start(),
                   Traffic(port, "api", concurrency=1, pause=0.05).start()]
        try:
            await page.get(f"{base}/")
            # live figures: the router's request count moves while traffic flows
            first = await page.wait("""
                const v = document.querySelector('.router[data-router="outgoing"] [data-figure="requests"] .v');
                return v && Number(v.textContent) > 0 ? v.textContent : null""", what="router figures")
            await page.wait("""
                const v = document.querySelector('.router [data-figure="requests"] .v');
                return v && v.textContent !== arguments[0]""", first, what="the request count to change")
            await page.wait(ROW + """;
                const rps = r && r.querySelector('.rps').textContent;
                return r && rps !== '–' && Number(rps) > 0 && r.querySelector('.sr').classList.contains('good')""",
                            "/svc/web", what="/svc/web live and green")

            # a backend that fails every request: its service turns red and sorts first
            if FOR_README:  # half a minute of healthy history first makes a better picture
                await asyncio.sleep(30)
            traffic.append(Traffic(port, "flaky", concurrency=2, path="/status/500", pause=0.02).start())
            await page.wait(ROW + """;
                return r && r.classList.contains('row-bad') && r.querySelector('.sr').classList.contains('bad')
                       && r.querySelector('.sr').textContent === '0.00%'""", "/svc/flaky",
                            what="/svc/flaky red")
            first_row = await page.js("return document.querySelector('#service-table tbody tr').dataset.name")
            assert first_row == "/svc/flaky"  # worst success rate on top
            client_bad = await page.wait(f"""
                const r = document.querySelector('#client-table tr[data-name="/$/inet/127.0.0.1/{flaky.port}"]');
                return r && r.classList.contains('row-bad') && r.textContent""", what="the failing client red")
            assert f"127.0.0.1:{flaky.port}" in client_bad  # its endpoint, with pool figures
            # failure accrual removed the failing endpoint (a red "dead" badge); its pool limit
            dead = await page.wait(f"""
                const e = document.querySelector('#client-table tr[data-name="/$/inet/127.0.0.1/{flaky.port}"]'
                    + ' [data-endpoint="127.0.0.1:{flaky.port}"] .accrual');
                return e && e.dataset.accrual === 'dead' && e.classList.contains('bad') && e.title""",
                                   what="the failing endpoint marked dead by failure accrual")
            assert "io.l5d.consecutiveFailures" in dead and "next probe in" in dead
            assert await page.js(f"""return document.querySelector(
                '#client-table tr[data-name="/$/inet/127.0.0.1/{flaky.port}"] .pool-max').textContent""") == "8"
            assert await page.js(f"""return document.querySelector(
                '#client-table tr[data-name="/$/inet/127.0.0.1/{web.port}"] [data-accrual]').dataset.accrual""") == "alive"
            assert await page.js(f"""return document.querySelector(
                '#client-table tr[data-name="/$/inet/127.0.0.1/{web.port}"] .pool-max').textContent""") == "∞"
            sr_class = await page.js(
                "return document.querySelector('.router [data-figure=\"successRate\"] .v').className")
            assert "good" not in sr_class
            # the charts are SVG with a failures series
            assert await page.js("return document.querySelectorAll('.router svg path.s-fail').length") >= 1

            # filtering narrows both tables and lands in the URL
            await page.type("#filter", "fla")
            await page.wait("""const rows = document.querySelectorAll('#service-table tbody tr');
                return rows.length === 1 && rows[0].dataset.name === '/svc/flaky'""", what="filtered table")
            assert "q=fla" in await page.js("return location.search")
            await page.js("const f = document.querySelector('#filter'); f.value = '';"
                          "f.dispatchEvent(new Event('input'));")
            await page.wait("return document.querySelectorAll('#service-table tbody tr').length === 3",
                            what="all three services again")
            if FOR_README:
                await asyncio.sleep(30)
            shot = await page.screenshot(str(tmp_path / "dashboard.png"))
            assert os.path.getsize(shot) > 10_000
            assert await page.errors() == []
        finally:
            for t in traffic:
                await t.stop()


async def test_playground_renders_the_delegation_tree_of_a_real_dtab(browser, tmp_path):
    page = Page(browser)
    async with Backend("web") as web:
        disco = tmp_path / "disco"
        disco.mkdir()
        (disco / "web").write_text(f"127.0.0.1 {web.port}\n")
        async with running_router("""
                /srv => /#/io.l5d.fs;
                /svc => /srv;
                /svc/shop => /srv/nothing | /srv/web;
                """, namers=f"namers:\n- kind: io.l5d.fs\n  rootDir: {disco}") as (_, base, _port):
            await page.get(f"{base}/delegator?namespace=outgoing&path=/svc/shop")
            await page.wait("return document.querySelector('#delegate-tree')", what="the tree")
            tree = await page.text("#delegate-tree")
            for step in ("/svc/shop", "/srv/nothing", "/srv/web", "/#/io.l5d.fs/web",
                         "by /svc/shop => /srv/nothing | /srv/web", "by /srv => /#/io.l5d.fs"):
                assert step in tree, step
            # the bound name with its live address
            addr = await page.js("return document.querySelector('.node.bound .addr').dataset.addr")
            assert addr == f"127.0.0.1:{web.port}"
            assert "/#/io.l5d.fs/web" in await page.text("#bound-summary")
            neg = await page.js("return document.querySelector('.node.neg .path').textContent")
            assert neg == "/#/io.l5d.fs/nothing"  # the namer has no such file
            assert "/srv => /#/io.l5d.fs;" in await page.text("#base")
            await page.screenshot(str(tmp_path / "delegator.png"))

            # a syntax error in the override: line and column, from the server's parser
            await page.type("#override", "/svc/web => /srv/web;\n/svc/x =>> /y")
            err = await page.wait("const e = document.querySelector('#override-error'); return e && e.textContent",
                                  what="the syntax error")
            assert err.startswith("line 2, column 10:"), err  # the second ">"

            # an override that fails the name: the failure is highlighted, the URL shares it
            await page.type("#override", "/svc/shop => /$/fail;")
            await page.wait("return document.querySelector('#override-status .ok')", what="valid override")
            await page.click("#go")
            await page.wait("return document.querySelector('.node.error[data-type=\"fail\"]')", what="a red fail")
            shared = await page.js("return location.href")
            assert "dtab=" in shared and "path=%2Fsvc%2Fshop" in shared
            await page.get(shared)
            await page.wait("return document.querySelector('.node.error[data-type=\"fail\"]')",
                            what="the shared URL to show the same tree")
            assert await page.js("return document.querySelector('#override').value") == "/svc/shop => /$/fail;"

            # an unknown name does not route, and says so
            await page.get(f"{base}/delegator?namespace=outgoing&path=/nothing/here")
            assert "does not route" in await page.wait(
                "const e = document.querySelector('#bound-summary'); return e && e.textContent")

            # hostile text from a shared link is shown, never run
            evil = '<img src=x onerror="window.__xss=1">'
            await page.get(f"{base}/delegator?namespace=outgoing&path={quote('/svc/<b>x')}&dtab={quote(evil)}")
            err = await page.wait("const e = document.querySelector('#override-error'); return e && e.textContent")
            assert "img src=x onerror=" in err  # shown as text
            assert await page.js("return window.__xss === undefined && document.querySelectorAll('img, b').length === 0")
            await page.get(f"{base}/delegator?namespace=outgoing&path={quote('/svc/<b onclick=x>bold</b>')}")
            err = await page.wait("const e = document.querySelector('#delegate-error'); return e && e.textContent")
            assert err.startswith("400: Invalid path") and "b onclick=x>bold</b>" in err
            assert await page.js("return document.querySelectorAll('#result b').length === 0")
            assert await page.errors() == []
