#!/usr/bin/python3
"""A local RTSP server for tests and the demo: serves H.264 mp4 files without re-encoding.

Debian's GStreamer RTSP server (gir1.2-gst-rtsp-server-1.0) does the work; ffmpeg cannot serve
RTSP. Each mount passes a file through `qtdemux ! h264parse ! rtph264pay`, so eight cameras cost
well under a core. Every client starts at the file's beginning and the stream ends with the file
(make a long file with `ffmpeg -stream_loop N -i in.mp4 -c copy long.mp4`; scripts/demo.sh does).

    /usr/bin/python3 scripts/rtsp_server.py --port 8554 --mount cam1=media/a.mp4 --mount cam2=b.mp4

Run it with Debian's /usr/bin/python3 (python3-gi lives there, not in other Pythons).
Prints "READY rtsp://127.0.0.1:PORT/MOUNT ..." on stdout once it listens.
"""
import argparse
import os
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--mount", action="append", required=True, metavar="NAME=FILE")
    args = ap.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    urls = []
    for m in args.mount:
        name, _, path = m.partition("=")
        path = os.path.abspath(path)
        if not name or not os.path.isfile(path):
            sys.exit(f"rtsp_server: bad --mount {m!r}: need NAME=FILE with an existing file")
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            f'( filesrc location="{path}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )'
        )
        factory.set_shared(False)
        mounts.add_factory(f"/{name}", factory)
        urls.append(f"rtsp://{args.host}:{args.port}/{name}")
    if server.attach(None) == 0:
        sys.exit(f"rtsp_server: cannot listen on {args.host}:{args.port}")
    loop = GLib.MainLoop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("READY " + " ".join(urls), flush=True)
    loop.run()


if __name__ == "__main__":
    main()
