"""`modeldeploy serve`: parse the configuration, start uvicorn, load the model in the background.

The HTTP server starts before the model is loaded so that /ping (liveness) answers at once and
/health (readiness) tells "loading" from "ready"; a model that cannot be loaded (or that the
safety settings refuse) stops the process with exit code 1, so the pod shows the reason in its
log and crash-loops instead of sitting unready.

SIGTERM: uvicorn stops accepting, lets in-flight requests finish, and returns; the process then
exits 0. (uvicorn re-raises the signal it caught once it is done; our own no-op SIGTERM handler
is what it restores, so the exit code stays 0 rather than -15.)
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from modeldeploy.serving.config import ConfigError, ServeConfig, parse

log = logging.getLogger("modeldeploy.serving")


def main(argv: list[str]) -> int:
    try:
        config = parse(argv)
    except ConfigError as exc:
        print(f"modeldeploy serve: {exc}", file=sys.stderr)
        return 2
    from modeldeploy.serving import logs

    logs.configure(config.log_level)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    return serve(config)


def serve(config: ServeConfig) -> int:
    import uvicorn
    from prometheus_client import disable_created_metrics

    from modeldeploy.serving.app import ServingApp
    from modeldeploy.serving.protocol import guarded_httptools

    # *_created series double the series count for nothing here.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    fatal: list[str] = []
    server: uvicorn.Server | None = None

    def on_fatal(message: str) -> None:
        fatal.append(message)
        if server is not None:
            server.should_exit = True

    app = ServingApp(config, on_fatal=on_fatal)
    uconfig = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        lifespan="on",
        log_config=None,
        access_log=False,
        # Slow clients are dropped: a request head within header_timeout and at most 16 KiB
        # of it (protocol.py; h11's own limit for the requests handed to h11), idle keep-alive
        # 5 s; the body's deadline is the app's.
        http=guarded_httptools(config.header_timeout, 16 * 1024),
        h11_max_incomplete_event_size=16 * 1024,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=int(config.timeout) + 5,
    )
    server = uvicorn.Server(uconfig)
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    log.info(
        "starting",
        extra={"model_uri": config.model_uri, "port": config.port, "drift": config.drift},
    )
    server.run()
    if fatal:
        print(f"modeldeploy serve: {fatal[0]}", file=sys.stderr)
        return 1
    log.info("stopped")
    return 0
