# stream-gate: a wasmgate app in Python (componentize-py), to show that any language that
# targets the component model can implement wit/app.wit. Publishing is allowed only for the
# stream names in settings.keys; anyone may connect and play. Client-callable methods
# (`NetConnection.call(name, responder, args...)`) show the rest of the host interface:
#   echo(args...)        -> the arguments as a list
#   count()              -> connects so far (kept in the instance's key-value store)
#   settings()           -> the app.toml [settings] table, read back through host.settings()
#   remember(key, value) -> stores a string in the key-value store; recall(key) reads it back
#                           (null when unset), forget(key) deletes it, keys() lists them all
#   whoami()             -> what the host knows about the calling client
#   streams()            -> the live streams of this instance
#   so_set(name, key, v) -> sets a slot of the temporary shared object `name` (any JSON value)
#   so_get(name, key)    -> reads it back (null when unset); so_keys(name) lists the slots
# Shared objects clients use are theirs to change, except keys starting with "admin.": those
# only the app may write, so a client's change to one is denied (it gets the old value back).
# Every other method is answered with `_error` "Method not found (NAME).".
#
# Build: scripts/build-python-guest.sh (a pinned componentize-py in a venv), or by hand in this
# folder: componentize-py -d ../../../wit -w app componentize app -o app.wasm
import json

from wit_world import exports
from wit_world.imports import host, types
from componentize_py_types import Err


def _connects() -> int:
    return int(host.kv_get("connects") or "0")


class Guest(exports.Guest):
    # Filled by `start`; one Python interpreter serves one app instance.
    keys: list = []

    def start(self, app: str, instance: str, settings: str) -> None:
        cfg = json.loads(settings or "{}")
        keys = cfg.get("keys")
        if not isinstance(keys, list):
            raise Err("settings.keys must be a list of stream names")
        Guest.keys = [str(k) for k in keys]
        host.log(types.Level.INFO, f"stream-gate (Python) started for {app}/{instance}")

    def stop(self) -> None:
        pass

    def on_connect(self, client: types.ClientInfo, args: str) -> types.ConnectDecision:
        host.kv_set("connects", str(_connects() + 1))
        return types.ConnectDecision_Accept()

    def on_disconnect(self, client: int) -> None:
        pass

    def on_publish(self, client: int, stream: str, query: str) -> types.Access:
        if stream in Guest.keys:
            return types.Access_Allow()
        return types.Access_Deny(f"Unknown stream key {stream}.")

    def on_unpublish(self, client: int, stream: str) -> None:
        pass

    def on_play(self, client: int, stream: str, query: str) -> types.Access:
        return types.Access_Allow()

    def on_stop(self, client: int, stream: str) -> None:
        pass

    def on_call(self, client: int, method: str, args: str) -> str:
        a = json.loads(args)
        if method == "echo":
            return json.dumps(a)
        if method == "count":
            return json.dumps(_connects())
        if method == "settings":
            return host.settings()
        if method == "remember":
            if len(a) != 2 or not all(isinstance(x, str) for x in a):
                raise Err("remember(key, value) takes two strings")
            host.kv_set(a[0], a[1])
            return "null"
        if method == "recall":
            return json.dumps(host.kv_get(str(a[0])) if a else None)
        if method == "forget":
            if a:
                host.kv_delete(str(a[0]))
            return "null"
        if method == "keys":
            return json.dumps(host.kv_keys())
        if method == "whoami":
            c = host.get_client(client)
            if c is None:
                raise Err("unknown client")
            return json.dumps({"id": c.id, "address": c.address, "transport": c.transport,
                               "app": c.app, "instance": c.instance, "query": c.query})
        if method in ("so_set", "so_get", "so_keys"):
            if not a or not isinstance(a[0], str):
                raise Err(f"{method}(name, ...) needs a shared object name")
            so = types.SharedObject(name=a[0], persistent=False)
            if method == "so_set":
                if len(a) != 3 or not isinstance(a[1], str):
                    raise Err("so_set(name, key, value)")
                host.so_set(so, a[1], json.dumps(a[2]))
                return "null"
            if method == "so_get":
                value = host.so_get(so, str(a[1]) if len(a) > 1 else "")
                return value if value is not None else "null"
            return json.dumps(host.so_keys(so))
        if method == "streams":
            return json.dumps([{"name": s.name, "publishing": s.publishing, "players": s.players}
                               for s in host.streams()])
        raise Err(f"Method not found ({method}).")

    def on_call_result(self, client: int, call_id: int, ok: bool, value: str) -> None:
        pass

    def on_timer(self, id: int) -> None:
        pass

    def on_data(self, client: int, stream: str, handler: str, args: str) -> types.DataDecision:
        return types.DataDecision_Relay()

    def on_so_connect(self, client: int, so: types.SharedObject) -> types.Access:
        return types.Access_Allow()

    def on_so_change(self, client: int, so: types.SharedObject, key: str,
                     value: str | None) -> types.SoChangeDecision:
        if key.startswith("admin."):
            return types.SoChangeDecision_Deny(f"{key} is written by the app only")
        return types.SoChangeDecision_Allow()

    def on_so_send(self, client: int, so: types.SharedObject, handler: str,
                   args: str) -> types.DataDecision:
        return types.DataDecision_Relay()
