#!/usr/bin/env python3
"""A real SMTP server for the tests, on Debian's aiosmtpd.

Listens on 127.0.0.1:PORT and writes every message it accepts to DIR as
NNNNNN.json: the SMTP envelope (mail_from, rcpt_tos) and the parsed message
(message_id, from, to, subject, text, html). With --delay-ms it waits that
long after the end of DATA, writes DIR/pending-NNNNNN while it waits, and
accepts the message only if the client is still connected after the wait:
a client that vanished never saw "250", so the message was not handed over.
Prints "ready" once it listens; stops on SIGTERM or SIGINT.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import signal
import threading

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out_dir, delay_ms):
        self.out_dir = out_dir
        self.delay = delay_ms / 1000.0
        self.lock = threading.Lock()
        self.count = len([n for n in os.listdir(out_dir) if n.endswith(".json")])

    def _next(self):
        with self.lock:
            self.count += 1
            return self.count

    async def handle_DATA(self, server, session, envelope):
        n = self._next()
        if self.delay:
            marker = os.path.join(self.out_dir, "pending-%06d" % n)
            open(marker, "w").close()
            await asyncio.sleep(self.delay)
            os.remove(marker)
            transport = getattr(server, "transport", None)
            if transport is None or transport.is_closing():
                return "451 connection lost before the reply"
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "message_id": str(msg.get("Message-ID", "")),
            "from": str(msg.get("From", "")),
            "to": str(msg.get("To", "")),
            "subject": str(msg.get("Subject", "")),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
        }
        path = os.path.join(self.out_dir, "%06d.json" % n)
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 OK"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--delay-ms", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    controller = Controller(Sink(args.dir, args.delay_ms), hostname="127.0.0.1", port=args.port)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
