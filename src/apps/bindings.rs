//! Rust bindings generated from `wit/app.wit` (world `app`): the guest's exports, called
//! asynchronously, and the `host` interface this crate implements in [`super::host`].

wasmtime::component::bindgen!({
    path: "wit",
    world: "app",
    exports: { default: async },
    // The `kv-*` calls go to the state store, which may be a networked one: the guest waits
    // suspended, not the thread.
    imports: {
        "wasmgate:app/host.kv-get": async,
        "wasmgate:app/host.kv-set": async,
        "wasmgate:app/host.kv-delete": async,
        "wasmgate:app/host.kv-keys": async,
        // A persistent shared object is loaded from disk on first use.
        "wasmgate:app/host.so-get": async,
        "wasmgate:app/host.so-set": async,
        "wasmgate:app/host.so-delete": async,
        "wasmgate:app/host.so-send": async,
        "wasmgate:app/host.so-keys": async,
        "wasmgate:app/host.so-lock": async,
        "wasmgate:app/host.so-unlock": async,
    },
});
