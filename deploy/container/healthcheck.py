"""Container health check: GET /healthz on the service's own port (no curl in the image).

Exit 0 when the process answers 200, 1 otherwise. TLS is used when VERITEE_TLS_CERTFILE is
set; the certificate names the service, not 127.0.0.1, so the check does not verify it (it
only asks this container's own process whether it is alive).
"""

import os
import ssl
import sys
import urllib.request

port = os.environ.get("VERITEE_PORT", "8080")
tls = bool(os.environ.get("VERITEE_TLS_CERTFILE"))
context = ssl._create_unverified_context() if tls else None  # loopback liveness only
url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/healthz"
try:
    with urllib.request.urlopen(url, timeout=3, context=context) as r:
        sys.exit(0 if r.status == 200 else 1)
except OSError:
    sys.exit(1)
