"""The console's sub-application, mounted at /console/ by the app factory."""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bot.console import auth, grid_pages, pages, rate_pages, staff_pages

STATIC = Path(__file__).parent / "static"


async def stylesheet(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "console.css", headers={"Cache-Control": "public, max-age=3600"})


def console_app() -> web.Application:
    app = web.Application(middlewares=[auth.console_middleware])
    aiohttp_jinja2.setup(app, loader=jinja2.PackageLoader("bot.console", "templates"), autoescape=True)
    app.router.add_get("/", pages.index)
    app.router.add_get("/login", auth.login_form)
    app.router.add_post("/login", auth.login)
    app.router.add_post("/logout", auth.logout)
    app.router.add_get("/cases", pages.case_list)
    app.router.add_get("/cases/{number}", pages.case_page)
    app.router.add_post("/cases/{number}/{action}", pages.case_action)
    app.router.add_get("/cases/{number}/media/{event}", pages.case_media)
    app.router.add_get("/map", grid_pages.case_map)
    app.router.add_get("/rates", rate_pages.rates_page)
    app.router.add_get("/rates.xlsx", rate_pages.rates_xlsx)
    app.router.add_get("/rates.csv", rate_pages.rates_csv)
    app.router.add_get("/grid", grid_pages.grid_view)
    app.router.add_get("/grid/export", grid_pages.grid_export)
    app.router.add_post("/grid/import", grid_pages.grid_import)
    app.router.add_get("/staff", staff_pages.staff_index)
    app.router.add_post("/staff", staff_pages.add_member)
    app.router.add_get("/staff/{id}", staff_pages.member_page)
    app.router.add_post("/staff/{id}/edit", staff_pages.edit_member)
    app.router.add_post("/staff/{id}/deactivate", staff_pages.deactivate_member)
    app.router.add_post("/staff/{id}/reactivate", staff_pages.reactivate_member)
    app.router.add_post("/staff/{id}/password", staff_pages.set_member_password)
    app.router.add_post("/staff/{id}/link", staff_pages.send_login_link)
    app.router.add_get("/link/{token}", staff_pages.link_form)
    app.router.add_post("/link/{token}", staff_pages.link_login)
    app.router.add_get("/static/console.css", stylesheet)
    return app
