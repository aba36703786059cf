#!/usr/bin/python3
"""An independent XEP-0047 (In-Band Bytestreams, v2.0.1) peer for interop tests.

Uses slixmpp's own xep_0047 plugin (not our code) through a real server. Controlled by
line commands on stdin, reports on stdout (one line each):

  READY <full-jid>                         after the session started
  send <to-jid> <nbytes> <block-size> <iq|message>
      -> SENT <nbytes> <sha256-hex>        after the stream was closed
  echo on                                  streams we accept are echoed back (same sid is
                                           not possible: a new stream is opened to the peer)
  RECEIVED <sid> <nbytes> <sha256-hex>     when an incoming stream ended
  quit

The payload is os.urandom; only its length and SHA-256 are reported, never the data.
"""
import asyncio
import hashlib
import logging
import os
import sys

from slixmpp import ClientXMPP

logging.basicConfig(level=logging.ERROR, stream=sys.stderr)


class Peer(ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0047", {"auto_accept": True, "max_block_size": 65535})
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("ibb_stream_start", self.on_stream)
        self.add_event_handler("ibb_stream_end", self.on_end)
        self.buffers = {}
        self.echo = False

    async def on_start(self, _event):
        self.send_presence()
        print("READY %s" % self.boundjid.full, flush=True)
        asyncio.ensure_future(self.commands())

    def on_stream(self, stream):
        self.buffers.setdefault(id(stream), [stream, bytearray()])

        def on_data(s):
            if s is stream:
                while not s.recv_queue.empty():
                    self.buffers[id(stream)][1].extend(s.recv_queue.get_nowait())

        self.add_event_handler("ibb_stream_data", on_data)

    def on_end(self, stream):
        entry = self.buffers.pop(id(stream), None)
        if entry is None:
            return  # one of our own outgoing streams
        data = bytes(entry[1])
        while not stream.recv_queue.empty():
            data += stream.recv_queue.get_nowait()
        print("RECEIVED %s %d %s" % (stream.sid, len(data), hashlib.sha256(data).hexdigest()), flush=True)
        if self.echo:
            asyncio.ensure_future(self.send_bytes(stream.peer_jid, data, stream.block_size, False))

    async def send_bytes(self, to, data, block_size, use_messages):
        stream = await self["xep_0047"].open_stream(to, block_size=block_size, use_messages=use_messages)
        self.buffers.pop(id(stream), None)
        await stream.sendall(data)
        await stream.close()
        print("SENT %d %s" % (len(data), hashlib.sha256(data).hexdigest()), flush=True)

    async def commands(self):
        loop = asyncio.get_event_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line or line.strip() == "quit":
                self.disconnect()
                return
            parts = line.split()
            try:
                if parts[0] == "send":
                    to, n, bs, mode = parts[1], int(parts[2]), int(parts[3]), parts[4]
                    await self.send_bytes(to, os.urandom(n), bs, mode == "message")
                elif parts[0] == "echo":
                    self.echo = parts[1] == "on"
                    print("OK", flush=True)
            except Exception as e:  # report, keep serving
                print("ERROR %s" % type(e).__name__, flush=True)


def main():
    jid, password, host, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    xmpp = Peer(jid, password)
    xmpp["feature_mechanisms"].unencrypted_plain = True
    xmpp.connect((host, port), force_starttls=False, disable_starttls=True)
    xmpp.add_event_handler("disconnected", lambda _e: xmpp.loop.stop())
    xmpp.loop.run_forever()


if __name__ == "__main__":
    main()
