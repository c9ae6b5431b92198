#!/usr/bin/env python3
"""A minimal POS client for a till's Tillmesh daemon (Python 3, standard library only).

It reads the daemon's address and token from the till's home, looks products up
by barcode, rings up sales with an idempotency key each, retrying a sale whose
reply was lost (a timeout, a daemon restart) with the same key so that it is
recorded once, and can follow the event stream.

    python3 examples/pos_client.py --home ~/.local/share/tillmesh scan 4006381333931
    python3 examples/pos_client.py --home HOME sell 4006381333931:2 APPLES:750g --tender card
    python3 examples/pos_client.py --home HOME ring 20 --code BREAD   # 20 sales, one by one
    python3 examples/pos_client.py --home HOME follow                 # print events as they come

Every sale prints one JSON line: {"key": ..., "receipt": ..., "status": 201|200}.
"""

import argparse
import http.client
import json
import os
import sys
import time
import uuid


class Till:
    """The local API of one till's daemon."""

    def __init__(self, home, patience=60.0):
        self.home = home
        self.patience = patience

    def _api(self):
        # Read each time: a restarted daemon has a new port and token.
        with open(os.path.join(self.home, "api.json")) as f:
            info = json.load(f)
        return info["port"], info["token"]

    def request(self, method, path, body=None, headers=None, timeout=10):
        port, token = self._api()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        h = {"Authorization": "Bearer " + token}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        try:
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            payload = resp.read()
            return resp.status, json.loads(payload) if payload else None
        finally:
            conn.close()

    def scan(self, barcode):
        status, body = self.request("GET", "/v1/products?barcode=" + barcode)
        if status != 200:
            raise RuntimeError(body["detail"])
        return body["items"]

    def sell(self, lines, tender, key=None):
        """Record a sale once, however many tries it takes."""
        key = key or str(uuid.uuid4())
        sale = {"lines": lines, "tender": tender}
        deadline = time.monotonic() + self.patience
        while True:
            try:
                status, body = self.request(
                    "POST", "/v1/sales", sale, {"Idempotency-Key": key}
                )
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                # No daemon, a dropped connection or a lost reply: the sale may
                # or may not be recorded; the same key makes the retry safe.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
                continue
            if status in (200, 201):
                return key, status, body
            if status == 503 and time.monotonic() < deadline:
                time.sleep(0.2)  # the daemon is stopping; ask the next one
                continue
            raise RuntimeError("sale refused (%s %s): %s" % (status, body["code"], body["detail"]))

    def follow(self, last_id=None):
        """Yield events (id, type, data) for ever, reconnecting with Last-Event-ID."""
        while True:
            try:
                port, token = self._api()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                h = {"Authorization": "Bearer " + token, "Accept": "text/event-stream"}
                if last_id is not None:
                    h["Last-Event-ID"] = str(last_id)
                conn.request("GET", "/v1/events", headers=h)
                resp = conn.getresponse()
                event, data = "message", ""
                for raw in resp:
                    line = raw.decode().rstrip("\r\n")
                    if line.startswith("id:"):
                        last_id = int(line[3:].strip())
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
                    elif line == "" and data:
                        yield last_id, event, json.loads(data)
                        event, data = "message", ""
            except (OSError, http.client.HTTPException, ValueError):
                time.sleep(0.5)


def parse_line(text):
    """CODE[:QTY|:<grams>g] as the command line writes a line."""
    code, _, qty = text.partition(":")
    line = {"barcode": code} if code.isdigit() and len(code) in (8, 12, 13, 14) else {"sku": code}
    if qty.endswith("g"):
        line["grams"] = int(qty[:-1])
    elif qty:
        line["qty"] = int(qty)
    return line


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--home", default=os.environ.get("TILLMESH_HOME"), required=False)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("scan")
    s.add_argument("barcode")
    s = sub.add_parser("sell")
    s.add_argument("lines", nargs="+")
    s.add_argument("--tender", default="card")
    s = sub.add_parser("ring")
    s.add_argument("count", type=int)
    s.add_argument("--code", default="BREAD")
    sub.add_parser("follow")
    a = p.parse_args()
    if not a.home:
        p.error("give --home or set TILLMESH_HOME")
    till = Till(a.home)
    if a.cmd == "scan":
        print(json.dumps(till.scan(a.barcode)))
    elif a.cmd == "sell":
        key, status, sale = till.sell([parse_line(l) for l in a.lines], a.tender)
        print(json.dumps({"key": key, "receipt": sale["receipt"], "status": status,
                          "total_cents": sale["total_cents"]}))
    elif a.cmd == "ring":
        for _ in range(a.count):
            key, status, sale = till.sell([parse_line(a.code)], "cash")
            print(json.dumps({"key": key, "receipt": sale["receipt"], "status": status}), flush=True)
    elif a.cmd == "follow":
        for event_id, kind, data in till.follow():
            print(json.dumps({"id": event_id, "kind": kind, "data": data}), flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
