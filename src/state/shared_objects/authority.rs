//! The server's copy of every remote shared object, per instance: applies clients' requests
//! under [`SoLimits`] and turns what changed into one message per subscriber per tick.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::rtmp::amf::{Amf0Value, encode_amf0};
use crate::rtmp::shared_object::{SoEvent, SoMessage};
use crate::state::store::Scope;

use super::limits::{Bucket, SoLimits, valid_so_name};
use super::store::StoredSo;

/// An opaque client handle, chosen by the caller (the connection driver's client id).
pub type ClientId = u64;

/// Status level of every refusal the authority reports.
pub const LEVEL_ERROR: &str = "error";

/// Why a request was not applied. Each has a status code the client is told (see [`code`]).
///
/// [`code`]: SoRefusal::code
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SoRefusal {
    #[error("shared object name is not allowed")]
    BadName,
    #[error("shared object exists as {} and was asked for as {}", persistence(*.existing), persistence(!*.existing))]
    PersistenceMismatch { existing: bool },
    #[error("instance already has {max} shared objects")]
    TooManyObjects { max: usize },
    #[error("shared object already has {max} subscribers")]
    TooManySubscribers { max: usize },
    #[error("shared object would hold more than {max} slots")]
    TooManySlots { max: usize },
    #[error("shared object would hold more than {max} bytes")]
    TooManyBytes { max: usize },
    #[error("slot key longer than 65535 bytes")]
    KeyTooLong,
    #[error("more than {max} messages waiting for the next tick")]
    TooManyMessages { max: usize },
    #[error("client is over its request rate")]
    RateLimited,
    #[error("client has not used this shared object")]
    NotSubscribed,
    #[error("persistent shared object is not loaded; load it from the store first")]
    NotLoaded,
    #[error("no such shared object")]
    NoSuchObject,
    /// The app's `on-so-connect` refused the Use (its reason is logged, not sent: a Status
    /// carries only a code).
    #[error("the application refused the use: {0}")]
    ReadDenied(String),
    /// The app's `on-so-change` refused a change or remove.
    #[error("the application refused the change: {0}")]
    WriteDenied(String),
}

fn persistence(persistent: bool) -> &'static str {
    if persistent {
        "persistent"
    } else {
        "temporary"
    }
}

impl SoRefusal {
    /// The code of the Status event the client gets. `BadPersistence` and
    /// `ObjectCreationFailed` are the codes Red5 (`StatusCodes`) and FMS send; the limit codes
    /// are ours.
    pub fn code(&self) -> &'static str {
        match self {
            SoRefusal::PersistenceMismatch { .. } => "SharedObject.BadPersistence",
            SoRefusal::BadName
            | SoRefusal::TooManyObjects { .. }
            | SoRefusal::TooManySubscribers { .. }
            | SoRefusal::NotLoaded
            | SoRefusal::NoSuchObject => "SharedObject.ObjectCreationFailed",
            SoRefusal::TooManySlots { .. }
            | SoRefusal::TooManyBytes { .. }
            | SoRefusal::KeyTooLong
            | SoRefusal::TooManyMessages { .. } => "SharedObject.LimitExceeded",
            SoRefusal::RateLimited => "SharedObject.RateLimited",
            // FMS's codes for a client without read or write access to an object.
            SoRefusal::ReadDenied(_) => "SharedObject.NoReadAccess",
            SoRefusal::NotSubscribed | SoRefusal::WriteDenied(_) => "SharedObject.NoWriteAccess",
        }
    }

    /// The message to send to a client whose Use was refused (it is not a subscriber, so no tick
    /// will carry it).
    pub fn status_message(&self, name: &str, persistent: bool) -> SoMessage {
        SoMessage::new(name, 0, persistent, vec![self.status_event()])
    }

    fn status_event(&self) -> SoEvent {
        SoEvent::Status {
            code: self.code().to_owned(),
            level: LEVEL_ERROR.to_owned(),
        }
    }
}

/// The answer to an accepted Use: send `message` (Use Success, Clear, then every slot as a
/// Change) to the client at once.
#[derive(Debug, Clone, PartialEq)]
pub struct UseReply {
    pub message: SoMessage,
}

/// One message for one client, produced by [`SharedObjects::tick`].
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub client: ClientId,
    pub scope: Scope,
    pub message: SoMessage,
}

/// A persistent shared object to write to the [`SoStore`](super::SoStore) (on a blocking thread).
#[derive(Debug, Clone, PartialEq)]
pub struct SaveRequest {
    pub scope: Scope,
    pub name: String,
    pub version: u32,
    pub slots: Vec<(String, Amf0Value)>,
}

/// What one tick produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Drained {
    pub messages: Vec<Outgoing>,
    pub saves: Vec<SaveRequest>,
}

/// What [`SharedObjects::handle`] did with one client message.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Handled {
    /// Send these to the client now (Use replies and refused-Use statuses).
    pub replies: Vec<SoMessage>,
    /// Every refusal, for the log; statuses for those that need one are queued or in `replies`.
    pub refused: Vec<SoRefusal>,
}

/// An application's decision about one event of a client message, for
/// [`SharedObjects::handle_ruled`].
#[derive(Debug, Clone, PartialEq)]
pub enum Ruling {
    /// Apply the event as the client sent it.
    Allow,
    /// Refuse it, for this reason (logged). A refused Use is answered with
    /// `SharedObject.NoReadAccess`; a refused change or remove with `SharedObject.NoWriteAccess`
    /// and the slot's current value, so the client's optimistic local copy reverts (Flash
    /// reports it as a `reject` in `onSync`); a refused Send Message is dropped.
    Deny(String),
    /// Apply this instead: a Request Change with the app's value (for a change or a remove; every
    /// subscriber, the requester too, gets Change with it), or a Send Message with the app's
    /// arguments.
    Rewrite(SoEvent),
}

struct Slot {
    value: Amf0Value,
    /// Key (u16 length + bytes) plus encoded value: what the slot counts against `max_bytes`.
    cost: usize,
}

struct Object {
    persistent: bool,
    version: u32,
    slots: BTreeMap<String, Slot>,
    bytes: usize,
    subscribers: BTreeSet<ClientId>,
    /// Keys changed or removed since the last tick, with the client whose change was applied
    /// last (it gets Success instead of Change; `None` means the app or a remove).
    dirty: BTreeMap<String, Option<ClientId>>,
    /// Keys each client changed since the last tick (each gets one Success).
    successes: BTreeMap<ClientId, BTreeSet<String>>,
    messages: Vec<(String, Vec<Amf0Value>)>,
    message_bytes: usize,
    /// Refusal codes per client since the last tick, deduplicated, so the queue is bounded by
    /// subscribers × codes however many requests a client makes.
    statuses: BTreeMap<ClientId, BTreeSet<&'static str>>,
    /// Keys whose change or remove the app refused, per client: each gets the slot's current
    /// value (or Remove) back at the next tick.
    reverts: BTreeMap<ClientId, BTreeSet<String>>,
    /// The instance's app opened it (a host call): it stays loaded while the instance runs, even
    /// with no subscriber, as a server-side `SharedObject.get` does in FMS.
    held: bool,
    lock_depth: u32,
    /// A change was applied under a lock: bump the version once at the last unlock.
    bump_on_unlock: bool,
    /// Slots changed since the last save request.
    unsaved: bool,
}

impl Object {
    fn new(persistent: bool, version: u32) -> Object {
        Object {
            persistent,
            version,
            slots: BTreeMap::new(),
            bytes: 0,
            subscribers: BTreeSet::new(),
            dirty: BTreeMap::new(),
            successes: BTreeMap::new(),
            messages: Vec::new(),
            message_bytes: 0,
            statuses: BTreeMap::new(),
            reverts: BTreeMap::new(),
            held: false,
            lock_depth: 0,
            bump_on_unlock: false,
            unsaved: false,
        }
    }

    fn applied(&mut self) {
        if self.lock_depth > 0 {
            self.bump_on_unlock = true;
        } else {
            self.version = self.version.wrapping_add(1);
        }
        if self.persistent {
            self.unsaved = true;
        }
    }

    /// Queues `handler(args...)` for every subscriber at the next tick, within the pending
    /// count and byte bounds.
    fn queue_message(
        &mut self,
        limits: &SoLimits,
        handler: &str,
        args: Vec<Amf0Value>,
    ) -> Result<(), SoRefusal> {
        let event = SoEvent::SendMessage {
            handler: handler.to_owned(),
            args,
        };
        let size = event.encoded_len();
        if self.messages.len() >= limits.max_pending_messages
            || self.message_bytes + size > limits.max_bytes
        {
            return Err(SoRefusal::TooManyMessages {
                max: limits.max_pending_messages,
            });
        }
        if let SoEvent::SendMessage { handler, args } = event {
            self.messages.push((handler, args));
            self.message_bytes += size;
        }
        Ok(())
    }

    fn refuse(&mut self, client: ClientId, refusal: SoRefusal) -> SoRefusal {
        if self.subscribers.contains(&client) {
            self.statuses
                .entry(client)
                .or_default()
                .insert(refusal.code());
        }
        refusal
    }

    fn set(
        &mut self,
        limits: &SoLimits,
        writer: Option<ClientId>,
        key: &str,
        value: Amf0Value,
    ) -> Result<(), SoRefusal> {
        if key.len() > usize::from(u16::MAX) {
            return Err(SoRefusal::KeyTooLong);
        }
        let mut encoded = Vec::new();
        encode_amf0(&value, &mut encoded);
        let cost = 2 + key.len() + encoded.len();
        let old = self.slots.get(key).map(|s| s.cost);
        if old.is_none() && self.slots.len() >= limits.max_slots {
            return Err(SoRefusal::TooManySlots {
                max: limits.max_slots,
            });
        }
        let bytes = self.bytes - old.unwrap_or(0) + cost;
        if bytes > limits.max_bytes {
            return Err(SoRefusal::TooManyBytes {
                max: limits.max_bytes,
            });
        }
        self.bytes = bytes;
        self.slots.insert(key.to_owned(), Slot { value, cost });
        self.dirty.insert(key.to_owned(), writer);
        if let Some(client) = writer {
            self.successes
                .entry(client)
                .or_default()
                .insert(key.to_owned());
        }
        self.applied();
        Ok(())
    }

    fn remove(&mut self, key: &str) -> bool {
        let Some(slot) = self.slots.remove(key) else {
            return false;
        };
        self.bytes -= slot.cost;
        // Everyone, the requester too, gets Remove (Red5 sends the owner CLIENT_DELETE_DATA).
        self.dirty.insert(key.to_owned(), None);
        self.applied();
        true
    }

    fn snapshot(&self) -> Vec<(String, Amf0Value)> {
        self.slots
            .iter()
            .map(|(k, s)| (k.clone(), s.value.clone()))
            .collect()
    }

    fn has_pending(&self) -> bool {
        !(self.dirty.is_empty()
            && self.successes.is_empty()
            && self.messages.is_empty()
            && self.statuses.is_empty()
            && self.reverts.is_empty())
    }

    /// This tick's message for `client`, if it has anything to hear.
    fn events_for(&self, client: ClientId) -> Vec<SoEvent> {
        let mut events = Vec::new();
        if let Some(keys) = self.successes.get(&client) {
            events.extend(keys.iter().map(|key| SoEvent::Success { key: key.clone() }));
        }
        for (key, writer) in &self.dirty {
            if *writer == Some(client) {
                continue;
            }
            events.push(match self.slots.get(key) {
                Some(slot) => SoEvent::Change {
                    key: key.clone(),
                    value: slot.value.clone(),
                },
                None => SoEvent::Remove { key: key.clone() },
            });
        }
        if let Some(keys) = self.reverts.get(&client) {
            // A key another write made dirty already goes out with its current value above.
            for key in keys {
                if self.dirty.get(key).is_some_and(|w| *w != Some(client)) {
                    continue;
                }
                events.push(match self.slots.get(key) {
                    Some(slot) => SoEvent::Change {
                        key: key.clone(),
                        value: slot.value.clone(),
                    },
                    None => SoEvent::Remove { key: key.clone() },
                });
            }
        }
        for (handler, args) in &self.messages {
            events.push(SoEvent::SendMessage {
                handler: handler.clone(),
                args: args.clone(),
            });
        }
        if let Some(codes) = self.statuses.get(&client) {
            events.extend(codes.iter().map(|code| SoEvent::Status {
                code: (*code).to_owned(),
                level: LEVEL_ERROR.to_owned(),
            }));
        }
        events
    }

    fn clear_pending(&mut self) {
        self.dirty.clear();
        self.successes.clear();
        self.messages.clear();
        self.message_bytes = 0;
        self.statuses.clear();
        self.reverts.clear();
    }

    /// Nothing keeps it loaded: no subscriber, no lock, not held by the app.
    fn unused(&self) -> bool {
        self.subscribers.is_empty() && self.lock_depth == 0 && !self.held
    }
}

/// Every shared object of every instance, sans-IO: callers feed client requests (already decoded
/// by `rtmp::shared_object`) and the time, and take messages and save requests from [`tick`].
///
/// Call order, per connection driver:
/// 1. On a Use of a persistent object, if [`needs_load`] says so, load it from the
///    [`SoStore`](super::SoStore) on a blocking thread and [`restore`] it; then [`use_so`] (or
///    [`handle`] the whole message) and send the [`UseReply`] at once.
/// 2. Feed requests as they arrive ([`request_change`], [`request_remove`], [`send_message`],
///    [`release`], or [`handle`]); [`disconnect`] when a client goes.
/// 3. Every tick (tens of milliseconds), [`tick`]: send each [`Outgoing`] to its client and run
///    each [`SaveRequest`] on a blocking thread.
///
/// Rules (Red5's `SharedObject`/`RTMPHandler.onSharedObject` and FMS, where they agree):
/// - A new object starts at version 1; every applied change or remove bumps it by one; a refused
///   one does not; between [`lock`] and the matching [`unlock`] the changes are held back from
///   subscribers and bump the version once, at the unlock. Use and Send Message do not bump.
/// - A Use of an existing object with the other persistence is refused with
///   `SharedObject.BadPersistence` (level `error`) and the client is not subscribed, as Red5
///   does; the object is unchanged.
/// - The Use reply always carries Clear, for persistent objects too (Red5 sends it only for
///   temporary ones): clients' local persistent copies are not synchronised by version here, so
///   the client drops its copy and takes the server's.
/// - The requester of an applied change gets Success for that key and every other subscriber gets
///   Change; a remove sends Remove to all; Send Message reaches every subscriber, the sender too
///   (Flash's `SharedObject.send`). Each subscriber gets at most one message per object per tick,
///   holding all its events; a key changed twice in a tick goes out once, with its last value.
/// - A temporary object goes away with its last subscriber; a persistent one is saved at the next
///   tick and then unloaded when nobody uses it.
///
/// [`tick`]: SharedObjects::tick
/// [`needs_load`]: SharedObjects::needs_load
/// [`restore`]: SharedObjects::restore
/// [`use_so`]: SharedObjects::use_so
/// [`handle`]: SharedObjects::handle
/// [`request_change`]: SharedObjects::request_change
/// [`request_remove`]: SharedObjects::request_remove
/// [`send_message`]: SharedObjects::send_message
/// [`release`]: SharedObjects::release
/// [`disconnect`]: SharedObjects::disconnect
/// [`lock`]: SharedObjects::lock
/// [`unlock`]: SharedObjects::unlock
pub struct SharedObjects {
    limits: SoLimits,
    scopes: BTreeMap<Scope, BTreeMap<String, Object>>,
    /// One bucket per client that made a request; dropped by [`SharedObjects::disconnect`].
    buckets: HashMap<ClientId, Bucket>,
}

impl SharedObjects {
    pub fn new(limits: SoLimits) -> SharedObjects {
        SharedObjects {
            limits,
            scopes: BTreeMap::new(),
            buckets: HashMap::new(),
        }
    }

    pub fn limits(&self) -> &SoLimits {
        &self.limits
    }

    fn object(&self, scope: &Scope, name: &str) -> Option<&Object> {
        self.scopes.get(scope)?.get(name)
    }

    fn object_mut(&mut self, scope: &Scope, name: &str) -> Option<&mut Object> {
        self.scopes.get_mut(scope)?.get_mut(name)
    }

    /// True when a Use of this persistent object must wait for [`restore`](Self::restore).
    pub fn needs_load(&self, scope: &Scope, name: &str, persistent: bool) -> bool {
        persistent && self.object(scope, name).is_none()
    }

    /// Puts a persistent object read from the store in memory (`stored` is `None` when the store
    /// has none: it starts empty). Does nothing if it is already loaded. Slots past the limits
    /// are dropped, in key order, rather than refusing the object. Use it before the next
    /// [`tick`](Self::tick): a tick unloads persistent objects nobody uses.
    pub fn restore(
        &mut self,
        scope: &Scope,
        name: &str,
        stored: Option<StoredSo>,
    ) -> Result<(), SoRefusal> {
        if !valid_so_name(name, self.limits.max_name_len) {
            return Err(SoRefusal::BadName);
        }
        let limits = self.limits;
        let objects = self.scopes.entry(scope.clone()).or_default();
        if objects.contains_key(name) {
            return Ok(());
        }
        if objects.len() >= limits.max_objects {
            return Err(SoRefusal::TooManyObjects {
                max: limits.max_objects,
            });
        }
        let mut object = Object::new(true, 1);
        if let Some(stored) = stored {
            for (key, value) in stored.slots {
                let _ = object.set(&limits, None, &key, value);
            }
            object.version = stored.version;
            object.dirty.clear();
            object.unsaved = false;
        }
        objects.insert(name.to_owned(), object);
        Ok(())
    }

    /// Subscribes `client`, creating a temporary object if there is none. A persistent object
    /// must be loaded first ([`needs_load`](Self::needs_load)). On refusal, send the client
    /// [`SoRefusal::status_message`].
    pub fn use_so(
        &mut self,
        scope: &Scope,
        client: ClientId,
        name: &str,
        persistent: bool,
    ) -> Result<UseReply, SoRefusal> {
        if !valid_so_name(name, self.limits.max_name_len) {
            return Err(SoRefusal::BadName);
        }
        let limits = self.limits;
        if !self.scopes.get(scope).is_some_and(|o| o.contains_key(name)) {
            if persistent {
                return Err(SoRefusal::NotLoaded);
            }
            let count = self.scopes.get(scope).map_or(0, BTreeMap::len);
            if count >= limits.max_objects {
                return Err(SoRefusal::TooManyObjects {
                    max: limits.max_objects,
                });
            }
        }
        let object = self
            .scopes
            .entry(scope.clone())
            .or_default()
            .entry(name.to_owned())
            .or_insert_with(|| Object::new(false, 1));
        if object.persistent != persistent {
            return Err(SoRefusal::PersistenceMismatch {
                existing: object.persistent,
            });
        }
        if !object.subscribers.contains(&client)
            && object.subscribers.len() >= limits.max_subscribers
        {
            return Err(SoRefusal::TooManySubscribers {
                max: limits.max_subscribers,
            });
        }
        object.subscribers.insert(client);
        let mut events = vec![SoEvent::UseSuccess, SoEvent::Clear];
        events.extend(object.slots.iter().map(|(key, slot)| SoEvent::Change {
            key: key.clone(),
            value: slot.value.clone(),
        }));
        Ok(UseReply {
            message: SoMessage::new(name, object.version, persistent, events),
        })
    }

    /// Unsubscribes `client`; a temporary object with nobody left goes away. Returns whether it
    /// was subscribed.
    pub fn release(&mut self, scope: &Scope, client: ClientId, name: &str) -> bool {
        let Some(objects) = self.scopes.get_mut(scope) else {
            return false;
        };
        let Some(object) = objects.get_mut(name) else {
            return false;
        };
        let was = object.subscribers.remove(&client);
        object.successes.remove(&client);
        object.statuses.remove(&client);
        object.reverts.remove(&client);
        if object.unused() && !object.persistent {
            objects.remove(name);
        }
        if objects.is_empty() {
            self.scopes.remove(scope);
        }
        was
    }

    /// Releases `client` everywhere and forgets its rate budget.
    pub fn disconnect(&mut self, client: ClientId) {
        let mut used = Vec::new();
        for (scope, objects) in &self.scopes {
            for (name, object) in objects {
                if object.subscribers.contains(&client) {
                    used.push((scope.clone(), name.clone()));
                }
            }
        }
        for (scope, name) in used {
            self.release(&scope, client, &name);
        }
        self.buckets.remove(&client);
    }

    /// The subscribed object and one token of `client`'s budget, or why not.
    fn writable(
        &mut self,
        scope: &Scope,
        client: ClientId,
        name: &str,
        now_ms: u64,
    ) -> Result<&mut Object, SoRefusal> {
        let limits = self.limits;
        let subscribed = self
            .object(scope, name)
            .is_some_and(|o| o.subscribers.contains(&client));
        if !subscribed {
            // No subscription, no bucket: a client that never used an object leaves nothing.
            return Err(SoRefusal::NotSubscribed);
        }
        let allowed = self
            .buckets
            .entry(client)
            .or_insert_with(|| Bucket::full(&limits, now_ms))
            .take(&limits, now_ms);
        let object = self
            .object_mut(scope, name)
            .ok_or(SoRefusal::NotSubscribed)?;
        if !allowed {
            return Err(object.refuse(client, SoRefusal::RateLimited));
        }
        Ok(object)
    }

    /// A client's Request Change: applied (Success to it, Change to the others at the next tick)
    /// or refused (a Status to it at the next tick, the reason returned).
    pub fn request_change(
        &mut self,
        scope: &Scope,
        client: ClientId,
        name: &str,
        key: &str,
        value: Amf0Value,
        now_ms: u64,
    ) -> Result<(), SoRefusal> {
        self.change(scope, client, name, key, value, now_ms, true)
    }

    /// A client's change as the app rewrote it: applied like [`request_change`] but everyone,
    /// the requester too, gets Change with the app's value (the requester's value was not the
    /// one applied, so a Success would be a lie).
    ///
    /// [`request_change`]: Self::request_change
    pub fn request_change_rewritten(
        &mut self,
        scope: &Scope,
        client: ClientId,
        name: &str,
        key: &str,
        value: Amf0Value,
        now_ms: u64,
    ) -> Result<(), SoRefusal> {
        self.change(scope, client, name, key, value, now_ms, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn change(
        &mut self,
        scope: &Scope,
        client: ClientId,
        name: &str,
        key: &str,
        value: Amf0Value,
        now_ms: u64,
        as_sent: bool,
    ) -> Result<(), SoRefusal> {
        let limits = self.limits;
        let object = self.writable(scope, client, name, now_ms)?;
        let writer = as_sent.then_some(client);
        match object.set(&limits, writer, key, value) {
            Ok(()) => Ok(()),
            Err(refusal) => Err(object.refuse(client, refusal)),
        }
    }

    /// The app refused a client's change or remove of `key`: the client gets
    /// `SharedObject.NoWriteAccess` and the slot's current value at the next tick. Counts
    /// against the client's rate like an applied request.
    pub fn deny_change(
        &mut self,
        scope: &Scope,
        client: ClientId,
        name: &str,
        key: &str,
        reason: &str,
        now_ms: u64,
    ) -> SoRefusal {
        let refusal = SoRefusal::WriteDenied(reason.to_owned());
        match self.writable(scope, client, name, now_ms) {
            Ok(object) => {
                object
                    .reverts
                    .entry(client)
                    .or_default()
                    .insert(key.to_owned());
                object.refuse(client, refusal)
            }
            Err(other) => other,
        }
    }

    /// A client's Request Remove; removing a missing key is accepted and changes nothing.
    pub fn request_remove(
        &mut self,
        scope: &Scope,
        client: ClientId,
        name: &str,
        key: &str,
        now_ms: u64,
    ) -> Result<(), SoRefusal> {
        let object = self.writable(scope, client, name, now_ms)?;
        object.remove(key);
        Ok(())
    }

    /// A client's Send Message: every subscriber, the sender too, gets it at the next tick.
    pub fn send_message(
        &mut self,
        scope: &Scope,
        client: ClientId,
        name: &str,
        handler: &str,
        args: Vec<Amf0Value>,
        now_ms: u64,
    ) -> Result<(), SoRefusal> {
        let limits = self.limits;
        let object = self.writable(scope, client, name, now_ms)?;
        object
            .queue_message(&limits, handler, args)
            .map_err(|refusal| object.refuse(client, refusal))
    }

    /// The app sets a slot of a loaded object (no rate limit; every subscriber gets Change).
    pub fn set(
        &mut self,
        scope: &Scope,
        name: &str,
        key: &str,
        value: Amf0Value,
    ) -> Result<(), SoRefusal> {
        let limits = self.limits;
        let object = self
            .object_mut(scope, name)
            .ok_or(SoRefusal::NoSuchObject)?;
        object.set(&limits, None, key, value)
    }

    /// Opens `name` for the instance's app (its host calls): a temporary object is created if
    /// missing; a persistent one must be loaded first ([`needs_load`](Self::needs_load),
    /// [`restore`](Self::restore)). The object then stays loaded, with or without subscribers,
    /// until [`release_app`](Self::release_app).
    pub fn open_for_app(
        &mut self,
        scope: &Scope,
        name: &str,
        persistent: bool,
    ) -> Result<(), SoRefusal> {
        if !valid_so_name(name, self.limits.max_name_len) {
            return Err(SoRefusal::BadName);
        }
        let max = self.limits.max_objects;
        let objects = self.scopes.entry(scope.clone()).or_default();
        if !objects.contains_key(name) {
            if persistent {
                return Err(SoRefusal::NotLoaded);
            }
            if objects.len() >= max {
                return Err(SoRefusal::TooManyObjects { max });
            }
        }
        let object = objects
            .entry(name.to_owned())
            .or_insert_with(|| Object::new(false, 1));
        if object.persistent != persistent {
            return Err(SoRefusal::PersistenceMismatch {
                existing: object.persistent,
            });
        }
        object.held = true;
        Ok(())
    }

    /// The instance's app stopped: what it held stays only while clients use it (a persistent
    /// object is saved, then unloaded, at the next tick).
    pub fn release_app(&mut self, scope: &Scope) {
        if let Some(objects) = self.scopes.get_mut(scope) {
            for object in objects.values_mut() {
                object.held = false;
                object.lock_depth = 0;
                if object.bump_on_unlock {
                    object.bump_on_unlock = false;
                    object.version = object.version.wrapping_add(1);
                }
            }
            objects.retain(|_, o| o.persistent || !o.unused());
        }
        self.scopes.retain(|_, objects| !objects.is_empty());
    }

    /// The app sends `handler(args...)` to every subscriber at the next tick.
    pub fn app_send(
        &mut self,
        scope: &Scope,
        name: &str,
        handler: &str,
        args: Vec<Amf0Value>,
    ) -> Result<(), SoRefusal> {
        let limits = self.limits;
        let object = self
            .object_mut(scope, name)
            .ok_or(SoRefusal::NoSuchObject)?;
        object.queue_message(&limits, handler, args)
    }

    /// Keys of a loaded object, in order.
    pub fn keys(&self, scope: &Scope, name: &str) -> Option<Vec<String>> {
        self.object(scope, name)
            .map(|o| o.slots.keys().cloned().collect())
    }

    /// The app removes a slot; returns whether it was there.
    pub fn remove(&mut self, scope: &Scope, name: &str, key: &str) -> Result<bool, SoRefusal> {
        let object = self
            .object_mut(scope, name)
            .ok_or(SoRefusal::NoSuchObject)?;
        Ok(object.remove(key))
    }

    /// Holds changes back from subscribers until the matching [`unlock`](Self::unlock), and
    /// makes them one version bump. Locks nest. Returns false when there is no such object.
    pub fn lock(&mut self, scope: &Scope, name: &str) -> bool {
        match self.object_mut(scope, name) {
            Some(object) => {
                object.lock_depth = object.lock_depth.saturating_add(1);
                true
            }
            None => false,
        }
    }

    /// Ends one [`lock`](Self::lock); the last one bumps the version once if anything changed.
    /// Returns false when the object is not locked.
    pub fn unlock(&mut self, scope: &Scope, name: &str) -> bool {
        let Some(object) = self.object_mut(scope, name) else {
            return false;
        };
        if object.lock_depth == 0 {
            return false;
        }
        object.lock_depth -= 1;
        if object.lock_depth == 0 && object.bump_on_unlock {
            object.bump_on_unlock = false;
            object.version = object.version.wrapping_add(1);
        }
        true
    }

    pub fn version(&self, scope: &Scope, name: &str) -> Option<u32> {
        self.object(scope, name).map(|o| o.version)
    }

    pub fn get(&self, scope: &Scope, name: &str, key: &str) -> Option<&Amf0Value> {
        self.object(scope, name)?.slots.get(key).map(|s| &s.value)
    }

    /// Every slot of an object, in key order.
    pub fn slots(&self, scope: &Scope, name: &str) -> Option<Vec<(String, Amf0Value)>> {
        self.object(scope, name).map(Object::snapshot)
    }

    /// Bytes the object's slots count against [`SoLimits::max_bytes`].
    pub fn bytes(&self, scope: &Scope, name: &str) -> Option<usize> {
        self.object(scope, name).map(|o| o.bytes)
    }

    pub fn subscribers(&self, scope: &Scope, name: &str) -> Option<Vec<ClientId>> {
        self.object(scope, name)
            .map(|o| o.subscribers.iter().copied().collect())
    }

    /// Names of the loaded objects of an instance.
    pub fn names(&self, scope: &Scope) -> Vec<String> {
        self.scopes
            .get(scope)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Applies one decoded client message: Use, Release, Request Change, Request Remove and Send
    /// Message, in order; events only a server sends are ignored. A refused Use stops the rest of
    /// the message (the client is not subscribed, so the rest would be refused too). A Use of a
    /// persistent object that [`needs_load`](Self::needs_load) is refused with
    /// [`SoRefusal::NotLoaded`]: load and [`restore`](Self::restore) it before calling this.
    pub fn handle(
        &mut self,
        scope: &Scope,
        client: ClientId,
        msg: &SoMessage,
        now_ms: u64,
    ) -> Handled {
        self.handle_ruled(scope, client, msg, &[], now_ms)
    }

    /// [`handle`](Self::handle) with the app's [`Ruling`] for each event (`rulings[i]` for
    /// `msg.events[i]`; missing ones allow). A denied Use stops the message as a refused one
    /// does.
    pub fn handle_ruled(
        &mut self,
        scope: &Scope,
        client: ClientId,
        msg: &SoMessage,
        rulings: &[Ruling],
        now_ms: u64,
    ) -> Handled {
        let mut out = Handled::default();
        let name = msg.name.as_str();
        let persistent = msg.persistent();
        for (i, event) in msg.events.iter().enumerate() {
            let ruling = rulings.get(i).unwrap_or(&Ruling::Allow);
            let result = match (event, ruling) {
                (SoEvent::Use, Ruling::Deny(reason)) => {
                    let refusal = SoRefusal::ReadDenied(reason.clone());
                    out.replies.push(refusal.status_message(name, persistent));
                    out.refused.push(refusal);
                    return out;
                }
                (
                    SoEvent::RequestChange { key, .. } | SoEvent::RequestRemove { key },
                    Ruling::Deny(reason),
                ) => Err(self.deny_change(scope, client, name, key, reason, now_ms)),
                (
                    SoEvent::RequestChange { key, .. } | SoEvent::RequestRemove { key },
                    Ruling::Rewrite(SoEvent::RequestChange { value, .. }),
                ) => self.request_change_rewritten(scope, client, name, key, value.clone(), now_ms),
                (SoEvent::SendMessage { .. }, Ruling::Deny(_)) => Ok(()),
                (
                    SoEvent::SendMessage { .. },
                    Ruling::Rewrite(SoEvent::SendMessage { handler, args }),
                ) => self.send_message(scope, client, name, handler, args.clone(), now_ms),
                (SoEvent::Use, _) => match self.use_so(scope, client, name, persistent) {
                    Ok(reply) => {
                        out.replies.push(reply.message);
                        Ok(())
                    }
                    Err(refusal) => {
                        out.replies.push(refusal.status_message(name, persistent));
                        out.refused.push(refusal);
                        return out;
                    }
                },
                (SoEvent::Release, _) => {
                    self.release(scope, client, name);
                    Ok(())
                }
                (SoEvent::RequestChange { key, value }, _) => {
                    self.request_change(scope, client, name, key, value.clone(), now_ms)
                }
                (SoEvent::RequestRemove { key }, _) => {
                    self.request_remove(scope, client, name, key, now_ms)
                }
                (SoEvent::SendMessage { handler, args }, _) => {
                    self.send_message(scope, client, name, handler, args.clone(), now_ms)
                }
                (
                    SoEvent::Change { .. }
                    | SoEvent::Success { .. }
                    | SoEvent::Status { .. }
                    | SoEvent::Clear
                    | SoEvent::Remove { .. }
                    | SoEvent::UseSuccess,
                    _,
                ) => Ok(()),
            };
            if let Err(refusal) = result {
                out.refused.push(refusal);
            }
        }
        out
    }

    /// Everything that happened since the last tick: one message per subscriber per object that
    /// changed (locked objects wait for their unlock), and a save request per persistent object
    /// whose slots changed. Persistent objects nobody uses are unloaded after their save.
    pub fn tick(&mut self) -> Drained {
        let mut drained = Drained::default();
        for (scope, objects) in &mut self.scopes {
            for (name, object) in objects.iter_mut() {
                if object.lock_depth > 0 {
                    continue;
                }
                if object.has_pending() {
                    for &client in &object.subscribers {
                        let events = object.events_for(client);
                        if !events.is_empty() {
                            drained.messages.push(Outgoing {
                                client,
                                scope: scope.clone(),
                                message: SoMessage::new(
                                    name,
                                    object.version,
                                    object.persistent,
                                    events,
                                ),
                            });
                        }
                    }
                    object.clear_pending();
                }
                if object.unsaved {
                    object.unsaved = false;
                    drained.saves.push(SaveRequest {
                        scope: scope.clone(),
                        name: name.clone(),
                        version: object.version,
                        slots: object.snapshot(),
                    });
                }
            }
            objects.retain(|_, o| !o.unused());
        }
        self.scopes.retain(|_, objects| !objects.is_empty());
        drained
    }
}

/// One loaded shared object as an operator sees it (the admin API's list, the dashboard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoSummary {
    pub name: String,
    pub persistent: bool,
    pub version: u32,
    /// Number of slots.
    pub slots: usize,
    /// What the slots count against [`SoLimits::max_bytes`].
    pub bytes: usize,
    /// Subscribed clients, in id order.
    pub subscribers: Vec<ClientId>,
    /// The instance's app opened it (a host call), so it stays loaded without subscribers.
    pub held_by_app: bool,
}

/// Loaded objects and subscriptions over every scope: the metrics' gauges.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SoTotals {
    pub objects: usize,
    /// Subscriptions summed over objects (a client using two objects counts twice).
    pub subscriptions: usize,
}

/// Read-only views for operators. Each reads one consistent state (the caller holds whatever
/// lock guards the authority), so a summary's version and slot count always belong together.
impl SharedObjects {
    /// Whether a loaded object is persistent; `None` when it is not loaded.
    pub fn persistent(&self, scope: &Scope, name: &str) -> Option<bool> {
        self.object(scope, name).map(|o| o.persistent)
    }

    /// One loaded object's summary.
    pub fn summary(&self, scope: &Scope, name: &str) -> Option<SoSummary> {
        self.object(scope, name).map(|o| summarise(name, o))
    }

    /// Every loaded object of an instance, in name order (empty for an unknown instance).
    pub fn describe(&self, scope: &Scope) -> Vec<SoSummary> {
        self.scopes
            .get(scope)
            .map(|objects| objects.iter().map(|(n, o)| summarise(n, o)).collect())
            .unwrap_or_default()
    }

    pub fn totals(&self) -> SoTotals {
        let mut t = SoTotals::default();
        for o in self.scopes.values().flat_map(BTreeMap::values) {
            t.objects += 1;
            t.subscriptions += o.subscribers.len();
        }
        t
    }
}

fn summarise(name: &str, o: &Object) -> SoSummary {
    SoSummary {
        name: name.to_owned(),
        persistent: o.persistent,
        version: o.version,
        slots: o.slots.len(),
        bytes: o.bytes,
        subscribers: o.subscribers.iter().copied().collect(),
        held_by_app: o.held,
    }
}
