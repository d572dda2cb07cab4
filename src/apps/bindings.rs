//! Rust bindings generated from `wit/app.wit` (world `app`): the guest's exports, called
//! asynchronously, and the `host` interface this crate implements in [`super::host`].

wasmtime::component::bindgen!({
    path: "wit",
    world: "app",
    exports: { default: async },
});
