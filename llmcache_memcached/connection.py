"""One connection to one memcached server: pymemcache's ``Client`` with a lean multi-get.

Every key the backend sends is already plain ASCII of at most 250 bytes (see
:func:`llmcache_memcached.keys.entry_key`), so the per-key checks are skipped, and the hit
path's ``get k1 k2 ...`` reply is read by a small parser of its own: pymemcache's parser
costs a few microseconds per value, which is most of a hit's budget over its floor. Every
other command (sets, deletes, gets/cas, stats) is pymemcache's own.
"""

from __future__ import annotations

from functools import cache
from typing import Any

__all__ = ["RECV_SIZE", "connection_class"]

RECV_SIZE = 65536


@cache
def connection_class() -> type[Any]:
    """Return the connection class (pymemcache is imported on first use)."""
    from pymemcache.client.base import Client
    from pymemcache.exceptions import MemcacheUnexpectedCloseError, MemcacheUnknownError

    def whole_reply(data: bytes) -> dict[str, bytes] | None:
        """Parse a reply that arrived in one read (the usual case), or return ``None``."""
        found: dict[str, bytes] = {}
        pos = 0
        size = len(data)
        while data.startswith(b"VALUE ", pos):
            eol = data.find(b"\r\n", pos)  # found: the data ends with END\r\n
            fields = data[pos:eol].split()
            start = eol + 2
            end = start + int(fields[3])
            if end + 2 > size:
                return None
            found[fields[1].decode("ascii")] = data[start:end]
            pos = end + 2
        return found if pos + 5 == size else None  # then only "END\r\n" is left

    def receive(sock: Any, buf: bytearray, wanted: int) -> None:
        chunk = sock.recv(max(wanted, RECV_SIZE))
        if not chunk:
            raise MemcacheUnexpectedCloseError()
        buf += chunk

    class Connection(Client):  # type: ignore[misc]
        def check_key(self, key: str, key_prefix: bytes) -> bytes:
            return key.encode("ascii")

        def fetch(self, keys: list[str]) -> dict[str, bytes]:
            """Run ``get`` for ``keys`` in one round trip; return the values found."""
            if self.sock is None:
                self._connect()
            sock = self.sock
            try:
                sock.sendall(("get " + " ".join(keys) + "\r\n").encode("ascii"))
                data = sock.recv(RECV_SIZE)
                found = whole_reply(data) if data.endswith(b"END\r\n") else None
                return self._values(sock, bytearray(data)) if found is None else found
            except Exception:
                self.close()  # a half-read reply must never meet the next command
                raise

        def _values(self, sock: Any, buf: bytearray) -> dict[str, bytes]:
            """Parse ``VALUE <key> <flags> <bytes>`` blocks up to ``END``."""
            found: dict[str, bytes] = {}
            pos = 0
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    del buf[:pos]
                    pos = 0
                    receive(sock, buf, RECV_SIZE)
                elif buf.startswith(b"VALUE ", pos):
                    _, key, _, size = bytes(buf[pos:eol]).split(b" ", 4)[:4]
                    start = eol + 2
                    end = start + int(size)
                    while len(buf) < end + 2:
                        receive(sock, buf, end + 2 - len(buf))
                    found[key.decode("ascii")] = bytes(buf[start:end])
                    pos = end + 2
                elif buf.startswith(b"END\r\n", pos):
                    return found
                else:
                    line = bytes(buf[pos:eol])
                    self._raise_errors(line, b"get")  # ERROR, CLIENT_ERROR, SERVER_ERROR
                    raise MemcacheUnknownError(line[:32])

    return Connection
