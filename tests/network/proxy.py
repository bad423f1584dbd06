"""A TCP proxy on loopback that a test can cut (close every connection, refuse new ones)
or black-hole (keep connections open, forward nothing), as a network partition would, or
slow down (every reply from the server held for `delay` seconds), as a distant server is."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.mode = "pass"  # "pass" | "blackhole" | "cut"
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        self.delay = 0.0  # seconds each chunk from the server waits before it is passed on
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.mode == "cut":
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self.closed and self.mode != "cut":
                if self.mode == "blackhole":
                    # Nothing read, nothing passed on, no error on either side: the
                    # kernels buffer it (a partition's TCP retransmits), and it goes on
                    # after heal() in order, as it would after a real one.
                    time.sleep(0.01)
                    continue
                ready, _, _ = select.select([a, b], [], [], 0.05)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is b and self.delay:
                        time.sleep(self.delay)
                    peers[s].sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        self.mode = "cut"
        with self.lock:
            for s in self.conns:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            self.conns.clear()

    def blackhole(self) -> None:
        self.mode = "blackhole"

    def heal(self) -> None:
        self.mode = "pass"

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()
