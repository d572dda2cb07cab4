//! Tests of the authority's rules (events, versions, batching, limits, rate) and the file store.

use super::*;
use crate::rtmp::amf::Amf0Value;
use crate::rtmp::shared_object::{SoEvent, SoMessage};
use crate::state::store::Scope;

fn scope() -> Scope {
    Scope::new("app", "inst")
}

fn num(n: f64) -> Amf0Value {
    Amf0Value::Number(n)
}

fn change(key: &str, value: Amf0Value) -> SoEvent {
    SoEvent::Change {
        key: key.to_owned(),
        value,
    }
}

fn success(key: &str) -> SoEvent {
    SoEvent::Success {
        key: key.to_owned(),
    }
}

fn status(code: &str) -> SoEvent {
    SoEvent::Status {
        code: code.to_owned(),
        level: "error".to_owned(),
    }
}

/// The events each client got from one tick, checking it got at most one message per object.
fn by_client(drained: &Drained) -> std::collections::BTreeMap<ClientId, Vec<SoEvent>> {
    let mut out = std::collections::BTreeMap::new();
    for m in &drained.messages {
        let prev = out.insert(m.client, m.message.events.clone());
        assert!(prev.is_none(), "two messages for client {}", m.client);
    }
    out
}

fn with_two() -> SharedObjects {
    let mut so = SharedObjects::new(SoLimits::default());
    so.use_so(&scope(), 1, "chat", false).unwrap();
    so.use_so(&scope(), 2, "chat", false).unwrap();
    so
}

#[test]
fn use_replies_with_success_clear_and_state() {
    let mut so = SharedObjects::new(SoLimits::default());
    let reply = so.use_so(&scope(), 1, "chat", false).unwrap();
    assert_eq!(
        reply.message,
        SoMessage::new("chat", 1, false, vec![SoEvent::UseSuccess, SoEvent::Clear])
    );
    so.request_change(&scope(), 1, "chat", "b", num(2.0), 0)
        .unwrap();
    so.request_change(&scope(), 1, "chat", "a", num(1.0), 0)
        .unwrap();
    // A late joiner gets the current state, in key order, at the current version.
    let reply = so.use_so(&scope(), 2, "chat", false).unwrap();
    assert_eq!(
        reply.message,
        SoMessage::new(
            "chat",
            3,
            false,
            vec![
                SoEvent::UseSuccess,
                SoEvent::Clear,
                change("a", num(1.0)),
                change("b", num(2.0)),
            ]
        )
    );
    assert_eq!(so.subscribers(&scope(), "chat"), Some(vec![1, 2]));
}

#[test]
fn requester_gets_success_others_get_change_in_one_message() {
    let mut so = with_two();
    so.use_so(&scope(), 3, "chat", false).unwrap();
    so.request_change(&scope(), 1, "chat", "x", num(1.0), 0)
        .unwrap();
    so.request_change(&scope(), 1, "chat", "y", num(2.0), 0)
        .unwrap();
    let drained = so.tick();
    let got = by_client(&drained);
    assert_eq!(got[&1], vec![success("x"), success("y")]);
    assert_eq!(got[&2], vec![change("x", num(1.0)), change("y", num(2.0))]);
    assert_eq!(got[&3], got[&2]);
    for m in &drained.messages {
        assert_eq!(m.message.version, 3);
        assert_eq!(m.scope, scope());
    }
    assert!(
        drained.saves.is_empty(),
        "temporary objects are never saved"
    );
    // Nothing more until something happens.
    assert_eq!(so.tick(), Drained::default());
}

#[test]
fn a_key_changed_twice_goes_out_once_with_its_last_value() {
    let mut so = with_two();
    so.request_change(&scope(), 1, "chat", "k", num(1.0), 0)
        .unwrap();
    so.request_change(&scope(), 2, "chat", "k", num(2.0), 0)
        .unwrap();
    let got = by_client(&so.tick());
    // 1's change was applied (Success), then overwritten by 2's (Change).
    assert_eq!(got[&1], vec![success("k"), change("k", num(2.0))]);
    assert_eq!(got[&2], vec![success("k")]);
    assert_eq!(so.version(&scope(), "chat"), Some(3));
}

#[test]
fn versions_bump_per_applied_change_only() {
    let limits = SoLimits {
        max_slots: 1,
        ..SoLimits::default()
    };
    let mut so = SharedObjects::new(limits);
    so.use_so(&scope(), 1, "chat", false).unwrap();
    so.use_so(&scope(), 2, "chat", false).unwrap();
    assert_eq!(so.version(&scope(), "chat"), Some(1));
    so.request_change(&scope(), 1, "chat", "a", num(1.0), 0)
        .unwrap();
    assert_eq!(so.version(&scope(), "chat"), Some(2));
    so.request_change(&scope(), 1, "chat", "a", num(5.0), 0)
        .unwrap();
    assert_eq!(so.version(&scope(), "chat"), Some(3));
    assert_eq!(
        so.request_change(&scope(), 2, "chat", "b", num(1.0), 0),
        Err(SoRefusal::TooManySlots { max: 1 })
    );
    assert_eq!(so.version(&scope(), "chat"), Some(3));
    // Removing a missing key changes nothing; removing a real one bumps.
    so.request_remove(&scope(), 1, "chat", "nope", 0).unwrap();
    assert_eq!(so.version(&scope(), "chat"), Some(3));
    so.request_remove(&scope(), 1, "chat", "a", 0).unwrap();
    assert_eq!(so.version(&scope(), "chat"), Some(4));
    // Use and Send Message do not bump.
    so.use_so(&scope(), 3, "chat", false).unwrap();
    so.send_message(&scope(), 1, "chat", "hi", vec![], 0)
        .unwrap();
    assert_eq!(so.version(&scope(), "chat"), Some(4));
}

#[test]
fn refusal_tells_only_that_client() {
    let limits = SoLimits {
        max_bytes: 20,
        ..SoLimits::default()
    };
    let mut so = SharedObjects::new(limits);
    so.use_so(&scope(), 1, "chat", false).unwrap();
    so.use_so(&scope(), 2, "chat", false).unwrap();
    // "a" + number: 2 + 1 + 9 = 12 bytes.
    so.request_change(&scope(), 1, "chat", "a", num(1.0), 0)
        .unwrap();
    assert_eq!(so.bytes(&scope(), "chat"), Some(12));
    let err = so
        .request_change(&scope(), 2, "chat", "b", num(2.0), 0)
        .unwrap_err();
    assert_eq!(err, SoRefusal::TooManyBytes { max: 20 });
    assert_eq!(err.code(), "SharedObject.LimitExceeded");
    // Replacing a slot counts its new size, not both.
    so.request_change(&scope(), 2, "chat", "a", num(3.0), 0)
        .unwrap();
    let got = by_client(&so.tick());
    assert_eq!(got[&1], vec![success("a"), change("a", num(3.0))]);
    assert_eq!(
        got[&2],
        vec![success("a"), status("SharedObject.LimitExceeded")]
    );
    assert_eq!(so.get(&scope(), "chat", "b"), None);
}

#[test]
fn lock_batches_into_one_bump_and_holds_updates() {
    let mut so = with_two();
    assert!(so.lock(&scope(), "chat"));
    assert!(so.lock(&scope(), "chat"));
    so.request_change(&scope(), 1, "chat", "a", num(1.0), 0)
        .unwrap();
    so.request_change(&scope(), 1, "chat", "b", num(2.0), 0)
        .unwrap();
    so.set(&scope(), "chat", "c", num(3.0)).unwrap();
    assert_eq!(so.version(&scope(), "chat"), Some(1));
    assert!(so.tick().messages.is_empty(), "held while locked");
    assert!(so.unlock(&scope(), "chat"));
    assert_eq!(so.version(&scope(), "chat"), Some(1), "still locked once");
    assert!(so.unlock(&scope(), "chat"));
    assert_eq!(so.version(&scope(), "chat"), Some(2));
    assert!(!so.unlock(&scope(), "chat"), "not locked");
    let got = by_client(&so.tick());
    assert_eq!(
        got[&1],
        vec![success("a"), success("b"), change("c", num(3.0))]
    );
    assert_eq!(
        got[&2],
        vec![
            change("a", num(1.0)),
            change("b", num(2.0)),
            change("c", num(3.0))
        ]
    );
    // A lock with nothing changed does not bump.
    so.lock(&scope(), "chat");
    so.unlock(&scope(), "chat");
    assert_eq!(so.version(&scope(), "chat"), Some(2));
    assert!(!so.lock(&scope(), "missing"));
}

#[test]
fn remove_goes_to_everyone() {
    let mut so = with_two();
    so.request_change(&scope(), 1, "chat", "a", num(1.0), 0)
        .unwrap();
    so.tick();
    so.request_remove(&scope(), 1, "chat", "a", 0).unwrap();
    let got = by_client(&so.tick());
    let remove = SoEvent::Remove {
        key: "a".to_owned(),
    };
    assert_eq!(got[&1], vec![remove.clone()]);
    assert_eq!(got[&2], vec![remove]);
    assert_eq!(so.bytes(&scope(), "chat"), Some(0));
    assert_eq!(so.remove(&scope(), "chat", "a"), Ok(false));
}

#[test]
fn send_message_reaches_everyone_and_is_bounded() {
    let limits = SoLimits {
        max_pending_messages: 2,
        ..SoLimits::default()
    };
    let mut so = SharedObjects::new(limits);
    so.use_so(&scope(), 1, "chat", false).unwrap();
    so.use_so(&scope(), 2, "chat", false).unwrap();
    so.send_message(&scope(), 1, "chat", "say", vec![Amf0Value::string("hi")], 0)
        .unwrap();
    so.send_message(&scope(), 2, "chat", "say", vec![], 0)
        .unwrap();
    assert_eq!(
        so.send_message(&scope(), 2, "chat", "say", vec![], 0),
        Err(SoRefusal::TooManyMessages { max: 2 })
    );
    let got = by_client(&so.tick());
    let first = SoEvent::SendMessage {
        handler: "say".to_owned(),
        args: vec![Amf0Value::string("hi")],
    };
    let second = SoEvent::SendMessage {
        handler: "say".to_owned(),
        args: vec![],
    };
    assert_eq!(got[&1], vec![first.clone(), second.clone()]);
    assert_eq!(
        got[&2],
        vec![first, second, status("SharedObject.LimitExceeded")]
    );
}

#[test]
fn persistence_mismatch_is_refused_like_red5() {
    let mut so = with_two();
    so.restore(&scope(), "saved", None).unwrap();
    let err = so.use_so(&scope(), 3, "chat", true).unwrap_err();
    assert_eq!(err, SoRefusal::PersistenceMismatch { existing: false });
    assert_eq!(
        err.status_message("chat", true),
        SoMessage::new("chat", 0, true, vec![status("SharedObject.BadPersistence")])
    );
    assert_eq!(
        so.use_so(&scope(), 3, "saved", false),
        Err(SoRefusal::PersistenceMismatch { existing: true })
    );
    assert_eq!(so.subscribers(&scope(), "chat"), Some(vec![1, 2]));
    assert_eq!(so.subscribers(&scope(), "saved"), Some(vec![]));
}

#[test]
fn temporary_objects_vanish_with_their_last_subscriber() {
    let mut so = with_two();
    so.request_change(&scope(), 1, "chat", "a", num(1.0), 0)
        .unwrap();
    assert!(so.release(&scope(), 1, "chat"));
    assert!(!so.release(&scope(), 1, "chat"));
    assert_eq!(so.names(&scope()), vec!["chat".to_owned()]);
    so.disconnect(2);
    assert!(so.names(&scope()).is_empty());
    // A new Use starts from nothing.
    let reply = so.use_so(&scope(), 1, "chat", false).unwrap();
    assert_eq!(
        reply.message.events,
        vec![SoEvent::UseSuccess, SoEvent::Clear]
    );
    assert_eq!(reply.message.version, 1);
}

#[test]
fn persistent_objects_load_save_and_unload() {
    let mut so = SharedObjects::new(SoLimits::default());
    assert!(so.needs_load(&scope(), "saved", true));
    assert!(!so.needs_load(&scope(), "saved", false));
    assert_eq!(
        so.use_so(&scope(), 1, "saved", true),
        Err(SoRefusal::NotLoaded)
    );
    let stored = StoredSo {
        version: 41,
        slots: vec![("a".to_owned(), num(1.0))],
    };
    so.restore(&scope(), "saved", Some(stored)).unwrap();
    assert!(!so.needs_load(&scope(), "saved", true));
    let reply = so.use_so(&scope(), 1, "saved", true).unwrap();
    assert_eq!(reply.message.version, 41);
    assert!(reply.message.persistent());
    assert_eq!(reply.message.events[2], change("a", num(1.0)));
    assert!(so.tick().saves.is_empty(), "restoring is not a change");
    so.request_change(&scope(), 1, "saved", "b", num(2.0), 0)
        .unwrap();
    let drained = so.tick();
    assert_eq!(
        drained.saves,
        vec![SaveRequest {
            scope: scope(),
            name: "saved".to_owned(),
            version: 42,
            slots: vec![("a".to_owned(), num(1.0)), ("b".to_owned(), num(2.0))],
        }]
    );
    assert!(drained.messages[0].message.persistent());
    // Nobody left: it stays until the next tick, then is unloaded (it is in the store).
    so.release(&scope(), 1, "saved");
    assert_eq!(so.names(&scope()), vec!["saved".to_owned()]);
    so.set(&scope(), "saved", "c", num(3.0)).unwrap();
    let drained = so.tick();
    assert_eq!(drained.saves.len(), 1);
    assert_eq!(drained.saves[0].version, 43);
    assert!(so.names(&scope()).is_empty());
    assert!(so.needs_load(&scope(), "saved", true));
}

#[test]
fn object_and_subscriber_limits() {
    let limits = SoLimits {
        max_objects: 2,
        max_subscribers: 2,
        ..SoLimits::default()
    };
    let mut so = SharedObjects::new(limits);
    so.use_so(&scope(), 1, "a", false).unwrap();
    so.use_so(&scope(), 1, "b", false).unwrap();
    let err = so.use_so(&scope(), 1, "c", false).unwrap_err();
    assert_eq!(err, SoRefusal::TooManyObjects { max: 2 });
    assert_eq!(err.code(), "SharedObject.ObjectCreationFailed");
    assert_eq!(
        so.restore(&scope(), "p", None),
        Err(SoRefusal::TooManyObjects { max: 2 })
    );
    // Another instance has its own count.
    so.use_so(&Scope::new("app", "other"), 1, "c", false)
        .unwrap();
    so.use_so(&scope(), 2, "a", false).unwrap();
    so.use_so(&scope(), 2, "a", false).unwrap(); // again: still one subscription
    assert_eq!(
        so.use_so(&scope(), 3, "a", false),
        Err(SoRefusal::TooManySubscribers { max: 2 })
    );
    for bad in ["", "../x", "a/b", "a\0", ".x"] {
        assert_eq!(so.use_so(&scope(), 1, bad, false), Err(SoRefusal::BadName));
    }
}

#[test]
fn rate_limit_per_client() {
    let limits = SoLimits {
        requests_per_sec: 2,
        request_burst: 3,
        ..SoLimits::default()
    };
    let mut so = SharedObjects::new(limits);
    so.use_so(&scope(), 1, "chat", false).unwrap();
    so.use_so(&scope(), 2, "chat", false).unwrap();
    for i in 0..3 {
        so.request_change(&scope(), 1, "chat", "k", num(f64::from(i)), 1000)
            .unwrap();
    }
    assert_eq!(
        so.request_change(&scope(), 1, "chat", "k", num(9.0), 1000),
        Err(SoRefusal::RateLimited)
    );
    assert_eq!(
        so.send_message(&scope(), 1, "chat", "x", vec![], 1200),
        Err(SoRefusal::RateLimited)
    );
    // Client 2 has its own budget.
    so.request_change(&scope(), 2, "chat", "j", num(1.0), 1000)
        .unwrap();
    let got = by_client(&so.tick());
    assert_eq!(
        got[&1],
        vec![
            success("k"),
            change("j", num(1.0)),
            status("SharedObject.RateLimited")
        ]
    );
    assert_eq!(got[&2], vec![success("j"), change("k", num(2.0))]);
    assert_eq!(so.version(&scope(), "chat"), Some(5));
    // Half a second later, one more token.
    so.request_change(&scope(), 1, "chat", "k", num(9.0), 1500)
        .unwrap();
    assert_eq!(
        so.request_change(&scope(), 1, "chat", "k", num(9.0), 1500),
        Err(SoRefusal::RateLimited)
    );
}

#[test]
fn requests_need_a_subscription() {
    let mut so = with_two();
    assert_eq!(
        so.request_change(&scope(), 9, "chat", "a", num(1.0), 0),
        Err(SoRefusal::NotSubscribed)
    );
    assert_eq!(
        so.request_remove(&scope(), 1, "other", "a", 0),
        Err(SoRefusal::NotSubscribed)
    );
    assert_eq!(
        so.set(&scope(), "other", "a", num(1.0)),
        Err(SoRefusal::NoSuchObject)
    );
    assert!(so.tick().messages.is_empty());
}

#[test]
fn handle_applies_a_decoded_client_message() {
    let mut so = SharedObjects::new(SoLimits::default());
    let msg = SoMessage::new(
        "chat",
        0,
        false,
        vec![
            SoEvent::Use,
            SoEvent::RequestChange {
                key: "a".to_owned(),
                value: num(1.0),
            },
            SoEvent::SendMessage {
                handler: "hello".to_owned(),
                args: vec![],
            },
            SoEvent::Clear, // a server-only event: ignored
        ],
    );
    let handled = so.handle(&scope(), 1, &msg, 0);
    assert!(handled.refused.is_empty());
    assert_eq!(
        handled.replies,
        vec![SoMessage::new(
            "chat",
            1,
            false,
            vec![SoEvent::UseSuccess, SoEvent::Clear]
        )]
    );
    let got = by_client(&so.tick());
    assert_eq!(
        got[&1],
        vec![
            success("a"),
            SoEvent::SendMessage {
                handler: "hello".to_owned(),
                args: vec![]
            }
        ]
    );
    // A refused Use answers with a status and stops there.
    let persistent = SoMessage::new("chat", 0, true, vec![SoEvent::Use, SoEvent::Release]);
    let handled = so.handle(&scope(), 2, &persistent, 0);
    assert_eq!(
        handled.refused,
        vec![SoRefusal::PersistenceMismatch { existing: false }]
    );
    assert_eq!(
        handled.replies[0].events,
        vec![status("SharedObject.BadPersistence")]
    );
    let release = SoMessage::new("chat", 0, false, vec![SoEvent::Release]);
    so.handle(&scope(), 1, &release, 0);
    assert!(so.names(&scope()).is_empty());
}

mod file_store {
    use super::*;
    use std::fs;

    fn slots(n: f64) -> Vec<(String, Amf0Value)> {
        vec![
            ("n".to_owned(), num(n)),
            ("s".to_owned(), Amf0Value::string("ünï")),
            (
                "o".to_owned(),
                Amf0Value::object([("x", num(1.0)), ("y", Amf0Value::Null)]),
            ),
        ]
    }

    #[test]
    fn round_trip_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSoStore::new(dir.path());
        assert_eq!(store.load(&scope(), "room").unwrap(), None);
        store.save(&scope(), "room", 7, &slots(1.0)).unwrap();
        assert_eq!(
            store.load(&scope(), "room").unwrap(),
            Some(StoredSo {
                version: 7,
                slots: slots(1.0)
            })
        );
        assert!(dir.path().join("app/inst/room.so").is_file());
        assert!(!dir.path().join("app/inst/room.so.tmp").exists());
    }

    #[test]
    fn keeps_the_last_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSoStore::with_options(dir.path(), 2, 1 << 20);
        for v in 1..=5 {
            store
                .save(&scope(), "room", v, &slots(f64::from(v)))
                .unwrap();
        }
        let folder = dir.path().join("app/inst");
        let mut names: Vec<_> = fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["room.so", "room.so.1", "room.so.2"]);
        let other = FileSoStore::new(&folder);
        let read = |file: &str| other.read(&folder.join(file)).unwrap().unwrap().version;
        assert_eq!(
            (read("room.so"), read("room.so.1"), read("room.so.2")),
            (5, 4, 3)
        );
        // keep = 0: only the current file.
        let bare = FileSoStore::with_options(dir.path(), 0, 1 << 20);
        bare.save(&scope(), "solo", 1, &[]).unwrap();
        bare.save(&scope(), "solo", 2, &[]).unwrap();
        assert!(!folder.join("solo.so.1").exists());
        assert_eq!(bare.load(&scope(), "solo").unwrap().unwrap().version, 2);
    }

    #[test]
    fn a_crash_mid_save_leaves_a_readable_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSoStore::new(dir.path());
        store.save(&scope(), "room", 1, &slots(1.0)).unwrap();
        store.save(&scope(), "room", 2, &slots(2.0)).unwrap();
        let folder = dir.path().join("app/inst");
        // A crash after writing the temporary file: it is ignored, and the next save replaces it.
        fs::write(folder.join("room.so.tmp"), b"half a fi").unwrap();
        assert_eq!(store.load(&scope(), "room").unwrap().unwrap().version, 2);
        // A damaged or missing current file falls back to the newest backup.
        fs::write(folder.join("room.so"), b"\x02\x00\x05junk!").unwrap();
        assert_eq!(store.load(&scope(), "room").unwrap().unwrap().version, 1);
        fs::remove_file(folder.join("room.so")).unwrap();
        assert_eq!(store.load(&scope(), "room").unwrap().unwrap().version, 1);
        store.save(&scope(), "room", 3, &slots(3.0)).unwrap();
        assert_eq!(store.load(&scope(), "room").unwrap().unwrap().version, 3);
        assert!(!folder.join("room.so.tmp").exists());
        // Every file damaged: an error, not an empty object.
        for f in ["room.so", "room.so.1", "room.so.2"] {
            fs::write(folder.join(f), b"x").unwrap();
        }
        assert!(matches!(
            store.load(&scope(), "room"),
            Err(SoStoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn oversized_or_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSoStore::with_options(dir.path(), 0, 64);
        let big = vec![("k".to_owned(), Amf0Value::string("x".repeat(100)))];
        store.save(&scope(), "big", 1, &big).unwrap();
        assert!(matches!(
            store.load(&scope(), "big"),
            Err(SoStoreError::Corrupt { .. })
        ));
        let folder = dir.path().join("app/inst");
        let mut foreign = Vec::new();
        crate::rtmp::amf::encode_amf0(&Amf0Value::string("other"), &mut foreign);
        fs::write(folder.join("f.so"), foreign).unwrap();
        assert!(matches!(
            store.load(&scope(), "f"),
            Err(SoStoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn names_cannot_leave_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSoStore::new(dir.path().join("so"));
        for bad in ["..", "../x", "a/b", "a\\b", "a\0b", "a\nb", "", ".hidden"] {
            assert!(matches!(
                store.save(&scope(), bad, 1, &[]),
                Err(SoStoreError::BadName(_))
            ));
            assert!(matches!(
                store.load(&scope(), bad),
                Err(SoStoreError::BadName(_))
            ));
            assert!(matches!(
                store.save(&Scope::new(bad, "i"), "n", 1, &[]),
                Err(SoStoreError::BadName(_))
            ));
            assert!(matches!(
                store.save(&Scope::new("a", bad), "n", 1, &[]),
                Err(SoStoreError::BadName(_))
            ));
        }
        assert!(!dir.path().join("so").exists());
    }

    /// The authority's save requests go straight into the store and come back as they were.
    #[test]
    fn authority_save_and_restore_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSoStore::new(dir.path());
        let mut so = SharedObjects::new(SoLimits::default());
        let loaded = store.load(&scope(), "room").unwrap();
        so.restore(&scope(), "room", loaded).unwrap();
        so.use_so(&scope(), 1, "room", true).unwrap();
        so.request_change(&scope(), 1, "room", "a", num(1.0), 0)
            .unwrap();
        so.disconnect(1);
        for save in so.tick().saves {
            store
                .save(&save.scope, &save.name, save.version, &save.slots)
                .unwrap();
        }
        let mut again = SharedObjects::new(SoLimits::default());
        again
            .restore(&scope(), "room", store.load(&scope(), "room").unwrap())
            .unwrap();
        assert_eq!(again.version(&scope(), "room"), Some(2));
        assert_eq!(again.get(&scope(), "room", "a"), Some(&num(1.0)));
    }
}

#[test]
fn app_rulings_deny_with_the_old_value_rewrite_to_everyone_and_drop_messages() {
    let mut so = with_two();
    so.request_change(&scope(), 1, "chat", "topic", num(1.0), 0)
        .unwrap();
    so.tick();
    let request = |key: &str, value| SoEvent::RequestChange {
        key: key.to_owned(),
        value,
    };
    let send = |text: &str| SoEvent::SendMessage {
        handler: "say".into(),
        args: vec![Amf0Value::string(text)],
    };
    let msg = SoMessage::new(
        "chat",
        2,
        false,
        vec![
            request("topic", num(9.0)),
            SoEvent::RequestRemove {
                key: "topic".into(),
            },
            request("note", Amf0Value::string("rude")),
            send("dropped"),
            send("rude"),
        ],
    );
    let rulings = [
        Ruling::Deny("read only".into()),
        Ruling::Deny("read only".into()),
        Ruling::Rewrite(request("note", Amf0Value::string("r***"))),
        Ruling::Deny("spam".into()),
        Ruling::Rewrite(send("r***")),
    ];
    let handled = so.handle_ruled(&scope(), 2, &msg, &rulings, 0);
    assert_eq!(
        handled.refused,
        [
            SoRefusal::WriteDenied("read only".into()),
            SoRefusal::WriteDenied("read only".into())
        ]
    );
    assert_eq!(so.get(&scope(), "chat", "topic"), Some(&num(1.0)));
    // Only the rewrite changed the object.
    assert_eq!(so.version(&scope(), "chat"), Some(3));
    let got = by_client(&so.tick());
    let note = change("note", Amf0Value::string("r***"));
    let relayed = send("r***");
    assert_eq!(got[&1], [note.clone(), relayed.clone()]);
    assert_eq!(
        got[&2],
        [
            note,
            change("topic", num(1.0)),
            relayed,
            status("SharedObject.NoWriteAccess")
        ],
        "the requester gets the rewritten value as a Change, its denied key's current value, and one status"
    );
}

#[test]
fn a_denied_use_subscribes_nobody_and_stops_the_message() {
    let mut so = SharedObjects::new(SoLimits::default());
    let msg = SoMessage::new(
        "chat",
        0,
        false,
        vec![
            SoEvent::Use,
            SoEvent::RequestChange {
                key: "k".into(),
                value: num(1.0),
            },
        ],
    );
    let handled = so.handle_ruled(&scope(), 1, &msg, &[Ruling::Deny("no".into())], 0);
    assert_eq!(handled.refused, [SoRefusal::ReadDenied("no".into())]);
    assert_eq!(
        handled.replies,
        [SoMessage::new(
            "chat",
            0,
            false,
            vec![status("SharedObject.NoReadAccess")]
        )]
    );
    assert_eq!(so.version(&scope(), "chat"), None);
}

#[test]
fn an_object_the_app_opened_lives_without_subscribers_until_the_app_releases_it() {
    let mut so = SharedObjects::new(SoLimits::default());
    so.open_for_app(&scope(), "members", false).unwrap();
    so.set(&scope(), "members", "alice", num(7.0)).unwrap();
    so.tick();
    so.use_so(&scope(), 1, "members", false).unwrap();
    so.release(&scope(), 1, "members");
    so.tick();
    assert_eq!(so.keys(&scope(), "members"), Some(vec!["alice".to_owned()]));
    assert_eq!(
        so.open_for_app(&scope(), "members", true),
        Err(SoRefusal::PersistenceMismatch { existing: false })
    );
    assert_eq!(
        so.open_for_app(&scope(), "saved", true),
        Err(SoRefusal::NotLoaded)
    );
    // An app's Send Message reaches every subscriber.
    so.use_so(&scope(), 2, "members", false).unwrap();
    so.app_send(&scope(), "members", "hello", vec![num(1.0)])
        .unwrap();
    assert_eq!(
        by_client(&so.tick())[&2],
        [SoEvent::SendMessage {
            handler: "hello".into(),
            args: vec![num(1.0)]
        }]
    );
    so.release(&scope(), 2, "members");
    // A lock the app forgot does not keep it either.
    so.lock(&scope(), "members");
    so.release_app(&scope());
    so.tick();
    assert_eq!(so.names(&scope()), Vec::<String>::new());
}

/// The operator's views (admin API, metrics) follow what clients did.
#[test]
fn summaries_and_totals_follow_uses_and_changes() {
    let mut so = with_two();
    so.request_change(&scope(), 1, "chat", "a", num(1.0), 0)
        .unwrap();
    so.restore(&scope(), "room", None).unwrap();
    so.use_so(&scope(), 2, "room", true).unwrap();
    so.use_so(&Scope::new("app", "other"), 3, "chat", false)
        .unwrap();

    let list = so.describe(&scope());
    assert_eq!(
        list.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["chat", "room"]
    );
    assert_eq!(
        list[0],
        SoSummary {
            name: "chat".into(),
            persistent: false,
            version: 2,
            slots: 1,
            bytes: so.bytes(&scope(), "chat").unwrap(),
            subscribers: vec![1, 2],
            held_by_app: false,
        }
    );
    assert!(list[1].persistent && list[1].subscribers == [2]);
    assert_eq!(so.summary(&scope(), "room").as_ref(), Some(&list[1]));
    assert_eq!(so.persistent(&scope(), "room"), Some(true));
    assert_eq!(so.persistent(&scope(), "gone"), None);
    assert!(so.describe(&Scope::new("nope", "inst")).is_empty());
    assert_eq!(
        so.totals(),
        SoTotals {
            objects: 3,
            subscriptions: 4
        }
    );

    so.disconnect(2);
    so.tick();
    // `room` (persistent, nobody left) is unloaded by the tick; `chat` keeps client 1.
    assert_eq!(
        so.totals(),
        SoTotals {
            objects: 2,
            subscriptions: 2
        }
    );
    // An object the app opened is listed, and counted, without a subscriber.
    so.open_for_app(&scope(), "members", false).unwrap();
    let members = so.summary(&scope(), "members").unwrap();
    assert!(members.held_by_app && members.subscribers.is_empty());
    assert_eq!(so.totals().objects, 3);
}
