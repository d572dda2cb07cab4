//! Stream sources: what feeds a live stream in the [`Registry`](super::registry::Registry). An
//! RTMP publisher is one today; an edge relay pulling from an origin or a looped file are more.
//!
//! A source claims a name with `Registry::publish(key, source)` and gets a
//! [`Publisher`](super::registry::Publisher) handle whose `push` ingests messages (encoded once,
//! cached for late joiners, fanned out). The registry keeps the source itself only to name it
//! (the admin API's `publisher`) and to stop it: when a new publisher takes the name over, or an
//! operator ends the stream, the registry's caller calls [`StreamSource::stop`], and the source
//! drops its handle, which unpublishes.

/// Something that publishes into the registry.
pub trait StreamSource: Send + Sync {
    /// A gateway-wide id: the connection id of an RTMP publisher; a relay or file source takes
    /// one from the same counter, so the admin API can name any source by number.
    fn id(&self) -> u64;

    /// What kind of source this is, for logs: `rtmp` today.
    fn kind(&self) -> &'static str;

    /// Asks the source to stop feeding the stream and let go of its publisher handle. Returns
    /// at once; the stream is unpublished when the handle is dropped.
    fn stop(&self, reason: &str);
}
