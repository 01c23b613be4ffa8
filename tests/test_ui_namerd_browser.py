"""namerd's UI in headless Chromium: the namespace list, the dtab editor (a syntax error
refused with line and column; a good dtab reviewed with the dry run over the names a
real router bound through namerd, then saved with If-Match; a concurrent change
reported, nothing overwritten) and the per-namespace delegator. Screenshots go to the
test's tmp dir; the checks read the DOM."""
from __future__ import annotations

from namerouter.dtab import Dtab
from tests.support.backends import Backend
from tests.support.browser import Page
from tests.support.namerd_ui import namerd_with_router, route


async def set_text(page: Page, text: str) -> None:
    """Replace the editor's text the way typing does (an input event)."""
    await page.js("""const t = document.querySelector('#dtab'); t.value = arguments[0];
                     t.dispatchEvent(new Event('input', {bubbles: true}));""", text)


async def test_dtab_editor_validates_dry_runs_saves_and_reports_a_concurrent_change(browser, tmp_path):
    page = Page(browser)
    async with Backend("web") as web, Backend("api") as api, namerd_with_router(
            tmp_path, {"web": web.port, "api": api.port}, "/svc=>/#/io.l5d.fs") as (nd, base, rport):
        for host in ("web", "api"):  # the router binds both names through namerd
            assert (await route(rport, host))[0] == 200

        await page.get(base + "/")
        await page.wait("return document.querySelector('tr[data-namespace=\"default\"] a')", what="namespace list")
        await page.click('tr[data-namespace="default"] a')
        await page.wait("return document.querySelector('#valid-msg')", what="the editor to load")
        assert await page.js("return document.querySelector('#version').dataset.version") == "AAAAAAAAAAE="
        assert await page.js("return document.querySelector('#dtab').value") == "/svc => /#/io.l5d.fs;\n"

        # a syntax error: line and column from namerd's parser, review disabled
        await set_text(page, "/svc => /#/io.l5d.fs;\n/svc/api => /#/io.l5d.fs/web;\n/svc/x = > /y;\n")
        err = await page.wait("""const e = document.querySelector('#syntax-error');
            return e && [e.dataset.line, e.dataset.column, e.textContent]""", what="the syntax error")
        assert err[0] == "3" and err[1] == "9" and err[2].startswith("line 3, column 9:"), err  # after "="
        assert await page.js("return document.querySelector('#review').disabled") is True
        assert await page.js("return document.querySelector('#editor').classList.contains('invalid')")
        assert await page.js("return document.querySelector('#gutter .err').textContent") == "3"
        await page.screenshot(str(tmp_path / "namerd-syntax-error.png"))

        # a good dtab: the dry run names what changes, then Save writes it with If-Match
        good = "/svc => /#/io.l5d.fs;\n/svc/api => /#/io.l5d.fs/web;\n"
        await set_text(page, good)
        await page.wait("return document.querySelector('#valid-msg')", what="valid")
        await page.click("#review")
        await page.wait("return document.querySelector('#dry-run tr[data-name=\"/svc/api\"]')", what="dry run")
        changed = await page.js("""return Array.from(document.querySelectorAll('#dry-run tbody tr'))
            .map(r => [r.dataset.name, r.dataset.changed])""")
        assert ["/svc/api", "true"] in changed and ["/svc/web", "false"] in changed
        await page.screenshot(str(tmp_path / "namerd-dry-run.png"))
        assert (await nd.store.get("default")).dtab == Dtab.read("/svc=>/#/io.l5d.fs")  # nothing written yet
        await page.click("#save")
        saved = await page.wait("const e = document.querySelector('#saved'); return e && e.textContent",
                                what="saved")
        stored = await nd.store.get("default")
        assert stored.dtab == Dtab.read(good)
        new_version = await page.js("return document.querySelector('#version').dataset.version")
        assert new_version != "AAAAAAAAAAE=" and new_version in saved

        # someone else changes the namespace; saving from the editor is refused, theirs kept
        theirs = Dtab.read("/svc => /$/inet/127.0.0.1/1")
        await nd.store.update("default", theirs, stored.version)
        mine = "/svc => /#/io.l5d.fs;\n"
        await set_text(page, mine)
        await page.wait("return document.querySelector('#valid-msg')")
        await page.click("#review")
        await page.wait("return document.querySelector('#save')")
        await page.click("#save")
        conflict = await page.wait("const e = document.querySelector('#conflict'); return e && e.textContent",
                                   what="the conflict report")
        assert "someone else changed namespace default" in conflict
        assert (await nd.store.get("default")).dtab == theirs  # never overwritten
        assert "/svc => /$/inet/127.0.0.1/1;" in await page.text("#their-dtab")
        assert await page.js("return document.querySelector('#dtab').value") == mine  # my text kept
        await page.screenshot(str(tmp_path / "namerd-conflict.png"))
        await page.click("#load-theirs")
        await page.wait("return document.querySelector('#dtab').value.includes('/$/inet/127.0.0.1/1')",
                        what="their version loaded")

        # the namespace's delegator
        await page.get(base + "/delegator?namespace=default&path=/svc/web&dtab=" + "/svc/web=>/%23/io.l5d.fs/web")
        await page.wait("return document.querySelector('.node.bound .addr')", what="the delegation tree")
        addr = await page.js("return document.querySelector('.node.bound .addr').dataset.addr")
        assert addr == f"127.0.0.1:{web.port}"
        assert "dtab of namespace default" in await page.text("#base-title")
        await page.screenshot(str(tmp_path / "namerd-delegator.png"))
        assert await page.errors() == []
