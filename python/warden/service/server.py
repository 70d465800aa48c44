"""`warden serve`: the app under uvicorn. uvicorn drains requests on SIGINT/SIGTERM, then the
app's lifespan closes every sandbox; a server that dies without that leaves nothing either,
since its sandboxes are its own processes' children in its own cgroups (see the notes)."""

from __future__ import annotations

import logging
import os

from warden.errors import ProviderUnavailable

__all__ = ["make_app", "serve"]

log = logging.getLogger("warden")


def make_app(state_dir: str | os.PathLike[str] | None = None,
             config_path: str | os.PathLike[str] | None = None):
    """The application for the keys in ``state_dir`` and the quotas in ``config_path``."""
    try:
        import prometheus_client  # noqa: F401
        import starlette  # noqa: F401
    except ImportError as exc:
        raise ProviderUnavailable("the HTTP service", "install it with "
                                  "`pip install 'warden[server]'`") from exc
    from warden.service import config, keys
    from warden.service.app import build_app

    return build_app(keys.KeyStore(keys.state_dir(state_dir)), config.load(config_path))


def serve(host: str, port: int, state_dir: str | None, config_path: str | None) -> None:
    app = make_app(state_dir, config_path)
    try:
        import uvicorn
    except ImportError as exc:
        raise ProviderUnavailable("the HTTP server", "install it with "
                                  "`pip install 'warden[server]'`") from exc
    log.info("serving on %s:%d", host, port)
    uvicorn.run(app, host=host, port=port, lifespan="on", timeout_graceful_shutdown=30,
                server_header=False)
