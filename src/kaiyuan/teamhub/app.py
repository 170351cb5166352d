"""The hub server's app (``kaiyuan hub serve``): the Hugging Face Hub's download routes
(:mod:`kaiyuan.teamhub.download`: what ``snapshot_download`` / ``hf_hub_download`` / ``from_pretrained`` call) and
upload routes (:mod:`kaiyuan.teamhub.upload`: what ``create_repo`` / ``upload_folder`` call) over one blob store and
one metadata database. Access rules: :mod:`kaiyuan.teamhub.context`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from kaiyuan import __version__
from kaiyuan.errors import KaiyuanError
from kaiyuan.teamhub import admin, download, search, upload
from kaiyuan.teamhub.blobs import BlobStore
from kaiyuan.teamhub.context import Hub, HubError
from kaiyuan.teamhub.meta import HubDB
from kaiyuan.teamhub.names import NameError_

# an upload in progress writes its temporary file as its bytes arrive; one untouched this long is a killed server's
STALE_UPLOAD_SECONDS = 600


def header_text(message: str) -> str:
    """``message`` fit for an HTTP header (latin-1 only, one line, bounded): non-ASCII percent-encoded."""
    return quote(message[:500], safe=" !\"#$&'()*+,-./:;<=>?@[]^_`{|}~")


def create_hub_app(storage: Path, database_url: str | None = None, max_file_bytes: int = 50 << 30) -> FastAPI:
    """The hub over ``storage`` (blobs under ``storage/blobs``; metadata in ``storage/hub.sqlite`` unless
    ``database_url`` names another database, e.g. ``postgresql+psycopg://…``)."""
    storage = Path(storage)
    storage.mkdir(parents=True, exist_ok=True)
    url = database_url or f"sqlite:///{storage / 'hub.sqlite'}"
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    app = FastAPI(title="kaiyuan hub", version=__version__)
    app.state.hub = Hub(HubDB(url), BlobStore(storage / "blobs", max_bytes=max_file_bytes), storage, max_file_bytes)
    # uploads a killed server never finished (not the fresh ones: another hub process on this storage may be writing)
    app.state.hub.blobs.sweep(older_than=time.time() - STALE_UPLOAD_SECONDS)

    @app.exception_handler(HubError)
    async def hub_error(_request: Request, exc: HubError) -> JSONResponse:
        headers = {"X-Error-Message": header_text(exc.message)}
        if exc.code:
            headers["X-Error-Code"] = exc.code
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(NameError_)
    async def bad_name(_request: Request, exc: NameError_) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400, headers={"X-Error-Message": header_text(str(exc))})

    @app.exception_handler(KaiyuanError)
    async def refused(_request: Request, exc: KaiyuanError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400, headers={"X-Error-Message": header_text(str(exc))})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    app.include_router(download.router)
    app.include_router(upload.router)
    app.include_router(admin.router)  # tags, deleting branches and repos, refs
    app.include_router(search.router)
    return app
