"""A small Flask app for BytePort: a greeting page, a JSON API and /healthz.

GREETING (from the manifest's env block) sets the greeting; PORT (default
8080) the port to listen on.
"""

import os
import platform
import socket
import time

from flask import Flask, jsonify, render_template_string

app = Flask(__name__)
STARTED = time.time()

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{{ greeting }}</title>
  <style>
    body { margin: 0; min-height: 100vh; display: grid; place-items: center;
           background: #fefce8; color: #1c1917;
           font: 18px/1.6 system-ui, sans-serif; }
    main { max-width: 40rem; padding: 2rem; }
    h1 { font-size: 2.6rem; margin: 0 0 .5rem; }
    dl { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; }
    dt { color: #78716c; }
    code { background: #fef3c7; padding: .1rem .3rem; border-radius: .25rem; }
  </style>
</head>
<body>
  <main>
    <h1>{{ greeting }}</h1>
    <p>Flask {{ flask_version }} on Python {{ python }}, answering from its own VM.</p>
    <dl>
      <dt>host</dt><dd><code>{{ host }}</code></dd>
      <dt>uptime</dt><dd>{{ uptime }} s</dd>
      <dt>API</dt><dd><a href="/api/info">/api/info</a></dd>
    </dl>
  </main>
</body>
</html>
"""


def flask_version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flask")
    except PackageNotFoundError:
        return "unknown"


def info():
    return {
        "greeting": os.environ.get("GREETING", "Hello"),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "flask_version": flask_version(),
        "uptime": round(time.time() - STARTED, 1),
    }


@app.get("/")
def index():
    return render_template_string(PAGE, **info())


@app.get("/api/info")
def api_info():
    return jsonify(info())


@app.get("/healthz")
def healthz():
    return "ok\n", 200, {"Content-Type": "text/plain"}


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    app.run(host="0.0.0.0", port=port)
