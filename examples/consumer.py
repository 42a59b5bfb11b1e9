#!/usr/bin/env python3
"""How the Django side reads analytics events: a Redis Stream consumer group with redis-py.

Each stream entry has four fields: event_type, camera_id, timestamp, payload (the whole event
as JSON). A consumer group lets several Django workers share the stream, each entry delivered to
one of them; an entry stays *pending* until the worker XACKs it, so a worker that crashes
mid-way loses nothing:

1. on start, the worker first re-reads its own pending entries (XREADGROUP with id "0"),
2. then claims entries other workers left pending for longer than --claim-idle-ms (XAUTOCLAIM),
3. then reads new entries (XREADGROUP with id ">"), handles each and XACKs it.

    REDIS_HOST=redis REDIS_DB=0 python examples/consumer.py --group django --consumer web-1

It finds Redis as the service does: REDIS_HOST (default 127.0.0.1 here, redis in the service),
REDIS_PORT (6379), REDIS_DB (0), REDIS_PASSWORD (none) and REDIS_STREAM (stream:events), from
the environment; --host, --port, --db, --password and --stream override them.

Delivery is at-least-once (docs/events.md, "Delivery"): the same event can arrive twice, with
the same event_id. Store events under a unique event_id (a unique index in Django) and treat a
duplicate key as "already handled".

Images (docs/events.md, "Snapshots"): an object event's `snapshot` names Redis keys holding
JPEGs that expire after SNAPSHOT_TTL_S (default 1 h), so a consumer copies what it keeps: with
--images DIR this one stores each object's thumbnail next to the event, as
DIR/<event_id>.json and DIR/<event_id>.thumb.jpg (and an anpr event's plate crop as
DIR/<event_id>.plate.jpg). In Django: an ImageField / FileField saved in handle().

Prints one JSON line per handled event: {"id", "event_type", "camera_id", "event_id", "summary"}.
In Django, put `handle()` in a management command (python manage.py consume_analytics) and
save the event in `handle()` before returning; XACK comes after it.
"""
import argparse
import json
import os
import sys
import time

import redis


def ensure_group(r, stream, group, from_start):
    """Creates the group (and the stream) unless it exists. New groups start at the end of the
    stream ("$"), or at its beginning with --from-start."""
    try:
        r.xgroup_create(stream, group, id="0" if from_start else "$", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


def store_images(r, event, images_dir):
    """Copies the event's pictures out of Redis before they expire: the object's thumbnail (the
    newest snapshot the event names) or the plate crop, next to the event's JSON. A picture
    already expired is simply missing (the event is still stored)."""
    os.makedirs(images_dir, exist_ok=True)
    base = os.path.join(images_dir, event["event_id"])
    with open(base + ".json", "w") as f:
        json.dump(event, f)
    keys = []
    if event["event_type"] == "object" and event.get("snapshot"):
        keys.append((event["snapshot"]["thumbnail_key"], ".thumb.jpg"))
    if event["event_type"] == "anpr" and event.get("plate_image_key"):
        keys.append((event["plate_image_key"], ".plate.jpg"))
    for key, suffix in keys:
        jpeg = r.get(key)
        if jpeg is not None:
            with open(base + suffix, "wb") as f:
                f.write(jpeg)


def handle(entry_id, fields, r=None, images_dir=None):
    """Parses one entry and does the work (here: prints it, and with --images stores the
    pictures). Raise to leave it pending."""
    event = json.loads(fields["payload"])
    if images_dir and r is not None:
        store_images(r, event, images_dir)
    if event["event_type"] == "detection":
        summary = ", ".join(f"{d['class_name']} {d['confidence']:.2f}" for d in event["detections"])
    elif event["event_type"] == "motion":
        summary = f"area {event['affected_area_percentage']:.3f}"
    elif event["event_type"] == "anpr":
        summary = f"plate {event['anpr_result']['text']}"
    elif event["event_type"] == "object":
        summary = f"{event['class_name']} {event['track_id']} {event['lifecycle']}"
        if event.get("snapshot"):
            summary += f" snapshot {event['snapshot']['key']}"
    else:
        summary = ""
    print(json.dumps({"id": entry_id, "event_type": fields["event_type"], "camera_id": fields["camera_id"],
                      "event_id": event["event_id"], "summary": summary}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    env = os.environ.get
    ap.add_argument("--host", default=env("REDIS_HOST", "127.0.0.1"), help="default: $REDIS_HOST or 127.0.0.1")
    ap.add_argument("--port", type=int, default=int(env("REDIS_PORT", "6379")), help="default: $REDIS_PORT or 6379")
    ap.add_argument("--db", type=int, default=int(env("REDIS_DB", "0")), help="default: $REDIS_DB or 0")
    ap.add_argument("--password", default=env("REDIS_PASSWORD") or None, help="default: $REDIS_PASSWORD")
    ap.add_argument("--stream", default=env("REDIS_STREAM", "stream:events"), help="default: $REDIS_STREAM or stream:events")
    ap.add_argument("--group", default="django")
    ap.add_argument("--consumer", default="web-1")
    ap.add_argument("--from-start", action="store_true", help="a new group reads the stream from its beginning")
    ap.add_argument("--count", type=int, default=0, help="stop after this many events (0 = run forever)")
    ap.add_argument("--max-seconds", type=float, default=0, help="stop after this long (0 = no limit)")
    ap.add_argument("--claim-idle-ms", type=int, default=60000, help="claim other consumers' entries pending this long")
    ap.add_argument("--no-ack", action="store_true", help="never XACK (simulates a worker that crashes)")
    ap.add_argument("--images", default=None, metavar="DIR",
                    help="store each event (JSON) with its object thumbnail / plate crop (JPEG) in DIR")
    args = ap.parse_args()

    r = redis.Redis(host=args.host, port=args.port, db=args.db, password=args.password, decode_responses=True)
    # JPEGs are bytes: a second client that does not decode replies
    raw = redis.Redis(host=args.host, port=args.port, db=args.db, password=args.password)
    ensure_group(r, args.stream, args.group, args.from_start)
    handled, started = 0, time.monotonic()

    def done():
        return (args.count and handled >= args.count) or (args.max_seconds and time.monotonic() - started >= args.max_seconds)

    def batch():
        """How many entries to ask for: never more than we will handle (a delivered entry stays
        pending for this consumer until acked)."""
        return min(100, args.count - handled) if args.count else 100

    def process(entries):
        nonlocal handled
        for entry_id, fields in entries:
            if done():
                return
            if not fields:  # deleted by MAXLEN trimming while pending: nothing to handle
                r.xack(args.stream, args.group, entry_id)
                continue
            handle(entry_id, fields, raw, args.images)
            if not args.no_ack:
                r.xack(args.stream, args.group, entry_id)
            handled += 1

    # 1. our own pending entries (delivered before a crash, never acked)
    while not done():
        reply = r.xreadgroup(args.group, args.consumer, {args.stream: "0"}, count=batch())
        entries = reply[0][1] if reply else []
        if not entries or args.no_ack:
            break
        process(entries)
    # 2. entries other consumers left pending too long
    cursor = "0-0"
    while not done():
        cursor, claimed, *_ = r.xautoclaim(args.stream, args.group, args.consumer, args.claim_idle_ms, cursor, count=batch())
        process(claimed)
        if cursor == "0-0":
            break
    # 3. new entries
    while not done():
        reply = r.xreadgroup(args.group, args.consumer, {args.stream: ">"}, count=batch(), block=1000)
        if reply:
            process(reply[0][1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
