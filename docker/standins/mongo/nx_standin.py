"""Stand-in for mongo:7, FOR TESTS on machines that reach no image registry, never for production.

nx-27017 (a MongoDB wire-protocol server over SQLite) on 0.0.0.0:27017 with its data in /data/db, plus what
compose.yaml relies on in the official image and nx lacks: the root user. As the official image does, the user is
made from MONGO_INITDB_ROOT_USERNAME and MONGO_INITDB_ROOT_PASSWORD when the data folder is new (later starts keep
it, whatever the environment says), and then the server runs as `mongod --auth` would: a connection may only
greet, ping and authenticate (SCRAM-SHA-256, in the admin database) until it has authenticated. Without those
variables it runs without authentication, as the official image does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import signal
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nx_27017.handler import NeoSQLiteHandler
from nx_27017.server import run_server_threaded

DATA = Path("/data/db")
USERS = DATA / "standin-root-user.json"
MECHANISM = "SCRAM-SHA-256"
ITERATIONS = 15_000  # mongod's default for SCRAM-SHA-256
# What mongod --auth answers before a connection authenticates.
OPEN = {"hello", "ismaster", "ping", "buildinfo", "saslstart", "saslcontinue", "endsessions"}
Reply = dict[str, Any]


@dataclass(frozen=True)
class Credentials:
    """A user as mongod keeps it: the SCRAM keys, never the password."""

    user: str
    salt: str  # base64
    stored_key: str  # base64
    server_key: str  # base64

    @classmethod
    def of(cls, user: str, password: str) -> Credentials:
        salt = secrets.token_bytes(28)
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS)
        client_key = _hmac(salted, b"Client Key")
        stored = hashlib.sha256(client_key).digest()
        return cls(user, _b64(salt), _b64(stored), _b64(_hmac(salted, b"Server Key")))


def root_user() -> Credentials | None:
    """The root user made on the first start; None: no authentication."""
    if USERS.exists():
        return Credentials(**json.loads(USERS.read_text()))
    user, password = (
        os.environ.get("MONGO_INITDB_ROOT_USERNAME"),
        os.environ.get("MONGO_INITDB_ROOT_PASSWORD"),
    )
    if not (user and password):
        return None
    credentials = Credentials.of(user, password)
    USERS.write_text(json.dumps(asdict(credentials)))
    return credentials


class AuthenticatingHandler(NeoSQLiteHandler):
    """nx's handler behind SCRAM-SHA-256 authentication, per connection (nx names each connection)."""

    def __init__(self, root: Credentials, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._root = root
        self._lock = threading.Lock()
        self._authenticated: set[str] = set()
        self._conversations: dict[str, bytes] = {}  # connection -> the auth message so far

    def handle_command(self, msg: dict[str, Any]) -> tuple[int, Reply]:
        command, connection = _body(msg), msg.get("_conn_id") or ""
        name = next(iter(command), "").lower()
        if name == "saslstart":
            return msg["request_id"], self._sasl_start(connection, command)
        if name == "saslcontinue":
            return msg["request_id"], self._sasl_continue(connection, command)
        if not self._allowed(connection, name):
            return msg["request_id"], _unauthorized(name)
        request_id, reply = super().handle_command(msg)
        if name in ("hello", "ismaster") and "saslSupportedMechs" in command:
            reply["saslSupportedMechs"] = [MECHANISM]
        return request_id, reply

    def handle_insert(self, msg: dict[str, Any]) -> tuple[int, Reply]:
        if not self._allowed(msg.get("_conn_id") or "", "insert"):
            return msg["request_id"], _unauthorized("insert")
        return super().handle_insert(msg)

    def close_streams_for_connection(self, conn_id: Any) -> None:
        with self._lock:
            self._authenticated.discard(conn_id)
            self._conversations.pop(conn_id, None)
        super().close_streams_for_connection(conn_id)

    def _allowed(self, connection: str, name: str) -> bool:
        with self._lock:
            return name in OPEN or connection in self._authenticated

    def _sasl_start(self, connection: str, command: dict[str, Any]) -> Reply:
        payload = bytes(command.get("payload", b""))
        bare = payload.split(b",", 2)[2] if payload.count(b",") >= 2 else b""
        fields = _fields(bare)
        user_ok = fields.get(b"n", b"").decode() == self._root.user and command.get("$db") == "admin"
        if command.get("mechanism") != MECHANISM or not user_ok or b"r" not in fields:
            return _auth_failed()
        nonce = fields[b"r"] + base64.b64encode(secrets.token_bytes(18))
        server_first = b"r=%s,s=%s,i=%d" % (nonce, self._root.salt.encode(), ITERATIONS)
        with self._lock:
            self._conversations[connection] = bare + b"," + server_first
        return {"conversationId": 1, "done": False, "payload": server_first, "ok": 1}

    def _sasl_continue(self, connection: str, command: dict[str, Any]) -> Reply:
        with self._lock:
            so_far = self._conversations.pop(connection, None)
        payload = bytes(command.get("payload", b""))
        without_proof, _, proof = payload.rpartition(b",p=")
        if so_far is None or not proof or _fields(without_proof).get(b"r") != _fields(so_far).get(b"r"):
            return _auth_failed()
        auth_message = so_far + b"," + without_proof
        stored_key = base64.b64decode(self._root.stored_key)
        signature = _hmac(stored_key, auth_message)
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=False))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key):
            return _auth_failed()
        with self._lock:
            self._authenticated.add(connection)
        server_signature = _hmac(base64.b64decode(self._root.server_key), auth_message)
        return {
            "conversationId": 1,
            "done": True,
            "payload": b"v=" + _b64(server_signature).encode(),
            "ok": 1,
        }


def _body(msg: dict[str, Any]) -> dict[str, Any]:
    return next(
        (doc for kind, doc in msg.get("sections", []) if kind == "body" and isinstance(doc, dict)), {}
    )


def _fields(message: bytes) -> dict[bytes, bytes]:
    return dict(item.split(b"=", 1) for item in message.split(b",") if b"=" in item)


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unauthorized(name: str) -> Reply:
    return {
        "ok": 0,
        "errmsg": f"Command {name} requires authentication",
        "code": 13,
        "codeName": "Unauthorized",
    }


def _auth_failed() -> Reply:
    return {"ok": 0, "errmsg": "Authentication failed.", "code": 18, "codeName": "AuthenticationFailed"}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings: dict[str, Any] = {"data_dir": str(DATA)}
    root = root_user()
    handler = AuthenticatingHandler(root, **settings) if root else NeoSQLiteHandler(**settings)
    logging.info(
        "nx-27017 stand-in on 0.0.0.0:27017, %s", "root user required" if root else "no authentication"
    )
    # PID 1 of its container: without a handler SIGTERM does nothing, and every stop would wait for SIGKILL.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_server_threaded("0.0.0.0", 27017, handler, use_threading=False)


if __name__ == "__main__":
    main()
