"""The central service's web UI: server-rendered pages (Jinja2 templates in
`central/templates/`) for operators' daily work - the fleet live, a shim's
page, technicians and groups, sessions with in-browser playback, events
and central's audit trail, break-glass requests and their reviews - over
the same domain functions and the same role checks (`api.deps.require`)
as the API. Static files and the vendored JavaScript (htmx,
asciinema-player; `static/vendor/README`) are served from `/static`;
nothing is fetched from elsewhere and nothing is built.

It may import the rest of `shimmfa.central`, core and errors; never the
shim. `install(app)` adds it to the app `create_app` makes.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from shimmfa.central.ui import audit, auth, breakglass, fleet, people, reviews
from shimmfa.central.ui.render import templates

__all__ = ["STATIC", "install"]

STATIC = Path(__file__).resolve().parent.parent / "static"


def install(app: FastAPI) -> None:
    app.state.ui_templates = templates()
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    for module in (auth, fleet, people, audit, breakglass, reviews):
        app.include_router(module.router)
    auth.install_errors(app)

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/ui/fleet", status_code=303)
