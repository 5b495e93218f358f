"""A publisher in its own process, driven line by line on stdin, for the kill -9 tests.

    publish N CAMERA   store N events; prints "stored ID SEQ" for each, then "ok"
    connected T        wait up to T s for the broker; prints "connected True|False"
    idle T             wait up to T s until the outbox is empty; prints "idle True|False"
    close              close the publisher (flush, offline) and exit
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anpr_edge.config import MqttConfig
from anpr_edge.publisher import MqttPublisher
from anpr_edge.values import PlateEvent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--outbox", required=True)
    parser.add_argument("--device", default="box")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="child %(levelname)s %(name)s: %(message)s")
    config = MqttConfig(enabled=True, port=args.port, outbox_path=Path(args.outbox), reconnect_min_s=0.1,
                        reconnect_max_s=0.5, keepalive_s=5, replay_rate=200)
    publisher = MqttPublisher(config, args.device).start()
    for line in sys.stdin:
        command, *rest = line.split()
        if command == "publish":
            count, camera = int(rest[0]), rest[1]
            for _ in range(count):
                now = time.time()
                event = publisher.publish(PlateEvent(camera_id=camera, start_time=now - 1.5, end_time=now,
                                                     text="AB123CD", confidence=0.95, reads=4))
                print("stored", event.id, event.seq)
            print("ok", flush=True)
        elif command == "connected":
            print("connected", publisher.wait_connected(float(rest[0])), flush=True)
        elif command == "idle":
            print("idle", publisher.wait_idle(float(rest[0])), flush=True)
        elif command == "close":
            publisher.close(5.0)
            return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
