# stream-gate: a wasmgate app in Python (componentize-py), to show that any language that
# targets the component model can implement wit/app.wit. Publishing is allowed only for the
# stream names in settings.keys; anyone may connect and play; `NetConnection.call("echo", ...)`
# returns its arguments and `call("count")` the number of connects so far (kept in the
# instance's key-value store).
#
# Build: componentize-py -d ../../../wit -w app componentize app -o app.wasm
import json

from wit_world import exports
from wit_world.imports import host, types
from componentize_py_types import Err


class Guest(exports.Guest):
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
        n = int(host.kv_get("connects") or "0") + 1
        host.kv_set("connects", str(n))
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
        if method == "echo":
            return args
        if method == "count":
            return json.dumps(int(host.kv_get("connects") or "0"))
        raise Err(f"Method not found ({method}).")

    def on_call_result(self, client: int, call_id: int, ok: bool, value: str) -> None:
        pass

    def on_timer(self, id: int) -> None:
        pass

    def on_data(self, client: int, stream: str, handler: str, args: str) -> types.DataDecision:
        return types.DataDecision_Relay()
