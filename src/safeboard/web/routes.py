"""Pages. Public shells only: every byte of data they show comes from the API, which
checks the session; the pages themselves hold nothing secret."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from safeboard.auth.dependencies import PUBLIC

__all__ = ["STATIC_DIR", "router", "static_files"]

PAGES_DIR = Path(__file__).with_name("pages")
STATIC_DIR = Path(__file__).with_name("static")

router = APIRouter(dependencies=[PUBLIC], include_in_schema=False)


@cache
def _page(name: str) -> str:
    return (PAGES_DIR / f"{name}.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse)
def home() -> HTMLResponse:
    return HTMLResponse(_page("home"))


@router.get("/login", response_class=HTMLResponse)
def login_page() -> HTMLResponse:
    return HTMLResponse(_page("login"))


@router.get("/invite", response_class=HTMLResponse)
def invite_page() -> HTMLResponse:
    return HTMLResponse(_page("invite"))


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR)
