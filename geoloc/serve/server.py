"""`geoloc serve`: run the web page and its API with uvicorn (one or more worker processes)."""

from __future__ import annotations

import errno
import os
import socket
from typing import Callable

from ..errors import InputError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_WORKERS = 1
MAX_WORKERS = 32


def check_address(host: str, port: int) -> None:
    """InputError now, rather than a uvicorn log line later, when HOST:PORT cannot be listened on."""
    if not 0 < port < 65536:
        raise InputError(f"--port {port}: must be between 1 and 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(f"--host {host}: cannot resolve ({exc.strerror})") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise InputError(f"{host}:{port}: cannot listen ({reason})",
                             hint="choose another --port, or stop what is using it") from None


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, model: str | None = None,
          workers: int = DEFAULT_WORKERS, announce: Callable[[str], None] | None = None,
          log_level: str = "info") -> None:
    """Serve the page and the API on HOST:PORT until interrupted.

    The model (default: the best-validated ready model with embeddings) is loaded once per worker
    process before it accepts requests; every worker keeps its own pool of read-only connections.
    """
    import uvicorn

    from .app import ENV_MODEL, create_app
    from .service import Service

    if not 1 <= workers <= MAX_WORKERS:
        raise InputError(f"--workers {workers}: must be between 1 and {MAX_WORKERS}")
    check_address(host, port)
    shown = f"[{host}]" if ":" in host else host
    if workers == 1:
        app = create_app(model)
        name = app.state.service.default_model
        target, options = app, {}
    else:
        service = Service(model=model)
        name = service.default_model
        service.require_model(name)  # fail here, not in every worker
        os.environ[ENV_MODEL] = name
        target, options = "geoloc.serve.app:app_from_env", {"factory": True, "workers": workers}
    if announce:
        announce(f"geoloc: serving model '{name}' on http://{shown}:{port}/ "
                 f"(evaluation runs at /eval, API docs at /docs); Ctrl+C stops")
    uvicorn.run(target, host=host, port=port, log_level=log_level, server_header=False,
                timeout_graceful_shutdown=5, **options)
