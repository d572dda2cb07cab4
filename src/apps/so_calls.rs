//! The shared-object host calls of `wit/app.wit` (`so-get` ... `so-unlock`): a guest's view of
//! its instance's remote shared objects, through [`SoAccess`] (the gateway's hub).
//!
//! Locks a guest takes are tracked per handler call: whatever it did not unlock is unlocked when
//! the handler returns ([`HostState::release_so_locks`]), so a forgotten `so-unlock` (or a trap
//! between the two) cannot hold an object's changes back from its subscribers forever.

use std::sync::Arc;

use tracing::warn;

use super::bindings::wasmgate::app::types::SharedObject;
use super::host::{HostState, InstanceState};
use super::json;
use crate::state::shared_objects::{SharedObjects, SoAccess, SoRefusal};

impl HostState {
    /// The hub, after opening `so` for this instance's app.
    async fn so_open(&mut self, so: &SharedObject) -> Result<Arc<dyn SoAccess>, String> {
        let Some(hub) = self.st.shared_objects.clone() else {
            return Err("shared objects are not available here".to_owned());
        };
        hub.open(&self.st.scope, &so.name, so.persistent)
            .await
            .map_err(|e| refusal(&so.name, e))?;
        Ok(hub)
    }

    /// Opens `so`, then runs `f` on the authority under the hub's lock.
    async fn so_with<R>(
        &mut self,
        so: &SharedObject,
        mut f: impl FnMut(&mut SharedObjects, &crate::state::Scope) -> R,
    ) -> Result<R, String> {
        let hub = self.so_open(so).await?;
        let scope = self.st.scope.clone();
        let mut out = None;
        hub.update(&mut |all| out = Some(f(all, &scope)));
        out.ok_or_else(|| "shared object update did not run".to_owned())
    }

    pub(super) async fn so_get_call(
        &mut self,
        so: SharedObject,
        key: String,
    ) -> Result<Option<String>, String> {
        self.so_with(&so, |all, scope| {
            all.get(scope, &so.name, &key)
                .map(|v| json::amf_to_json(v).to_string())
        })
        .await
    }

    pub(super) async fn so_set_call(
        &mut self,
        so: SharedObject,
        key: String,
        value: String,
    ) -> Result<(), String> {
        let value = json::parse_value(&value).map_err(|e| format!("bad value: {e}"))?;
        let name = so.name.clone();
        self.so_with(&so, |all, scope| all.set(scope, &name, &key, value.clone()))
            .await?
            .map_err(|e| refusal(&so.name, e))
    }

    pub(super) async fn so_delete_call(
        &mut self,
        so: SharedObject,
        key: String,
    ) -> Result<bool, String> {
        let name = so.name.clone();
        self.so_with(&so, |all, scope| all.remove(scope, &name, &key))
            .await?
            .map_err(|e| refusal(&so.name, e))
    }

    pub(super) async fn so_send_call(
        &mut self,
        so: SharedObject,
        handler: String,
        args: String,
    ) -> Result<(), String> {
        if args.len() > super::host::MAX_CALL_JSON {
            return Err(format!(
                "arguments larger than {} bytes",
                super::host::MAX_CALL_JSON
            ));
        }
        let args = json::parse_args(&args).map_err(|e| format!("bad arguments: {e}"))?;
        let name = so.name.clone();
        self.so_with(&so, |all, scope| {
            all.app_send(scope, &name, &handler, args.clone())
        })
        .await?
        .map_err(|e| refusal(&so.name, e))
    }

    pub(super) async fn so_keys_call(&mut self, so: SharedObject) -> Result<Vec<String>, String> {
        let name = so.name.clone();
        self.so_with(&so, |all, scope| all.keys(scope, &name).unwrap_or_default())
            .await
    }

    pub(super) async fn so_lock_call(&mut self, so: SharedObject) -> Result<(), String> {
        let name = so.name.clone();
        if !self
            .so_with(&so, |all, scope| all.lock(scope, &name))
            .await?
        {
            return Err(format!("shared object {name} is not loaded"));
        }
        self.st.so_locks.push((so.name, so.persistent));
        Ok(())
    }

    pub(super) async fn so_unlock_call(&mut self, so: SharedObject) -> Result<(), String> {
        let held = (so.name.clone(), so.persistent);
        let Some(at) = self.st.so_locks.iter().rposition(|l| *l == held) else {
            return Err(format!("shared object {} is not locked", so.name));
        };
        self.st.so_locks.remove(at);
        let name = so.name.clone();
        self.so_with(&so, |all, scope| all.unlock(scope, &name))
            .await?;
        Ok(())
    }
}

impl InstanceState {
    /// Unlocks what the guest's last handler left locked (logged).
    pub(super) fn release_so_locks(&mut self) {
        if self.so_locks.is_empty() {
            return;
        }
        let locks = std::mem::take(&mut self.so_locks);
        let Some(hub) = self.shared_objects.clone() else {
            return;
        };
        warn!(app = %self.app, instance = %self.instance, locks = locks.len(), "shared object locks still held when the handler returned; unlocked");
        hub.update(&mut |all| {
            for (name, _) in &locks {
                all.unlock(&self.scope, name);
            }
        });
    }

    /// The instance ends: the objects its app opened stay only while clients use them.
    pub(super) fn release_shared_objects(&mut self) {
        self.release_so_locks();
        if let Some(hub) = self.shared_objects.clone() {
            hub.update(&mut |all| all.release_app(&self.scope));
        }
    }
}

fn refusal(name: &str, e: SoRefusal) -> String {
    format!("shared object {name}: {e}")
}
