"""gunicorn settings for the Pillow benchmark peer.

The defaults suit a 2-core machine: two processes, because Python runs one
thread at a time per process, and two threads in each, because Pillow
releases the GIL while it decodes, resizes and encodes. That gives four
requests in progress, as sharp's four libuv threads do. PILLOW_WORKERS and
PILLOW_THREADS override the counts.
"""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '3002')}"
workers = int(os.environ.get("PILLOW_WORKERS", "2"))
threads = int(os.environ.get("PILLOW_THREADS", "2"))
# gthread keeps HTTP/1.1 connections alive as the other servers do, whereas
# gunicorn's sync worker closes the connection after every response.
worker_class = "gthread"
keepalive = 5
# The 12 MP workload can queue for several seconds at 16 connections.
timeout = 60
accesslog = None
loglevel = "warning"
