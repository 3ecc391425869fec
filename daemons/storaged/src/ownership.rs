//! Which writable volumes this node serves, and with which epoch (a pair's storage groups).
//!
//! On a pair every writable volume belongs to a **group** named after its *home*: the node
//! that created it, whose floating storage address its compute module boots from. A group has
//! one owner at a time, chosen in the pair's store (etcd) by clusterd, and an **epoch** that
//! grows by one at every change of owner. The owner serves the group's volumes over the boot
//! protocols and replicates their writes, each stamped with the group's epoch; the other node
//! holds the replicas and refuses a write whose epoch is older than the newest it has seen (a
//! deposed owner's). A node that stops owning a group (`disown`) closes its clients'
//! connections to those volumes: a reconnecting client finds the new owner on the same
//! address.
//!
//! A single appliance serves every volume ([`Ownership::single`]). Frozen volumes (golden
//! images, snapshots) never change, so either node may serve them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

/// One group as this node sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The newest epoch this node knows of.
    pub epoch: u64,
    /// Whether this node serves the group now.
    pub owned: bool,
}

/// Why a change from the peer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "group {home} is at epoch {known}; a change of epoch {got} comes from a node that no \
         longer owns it"
    )]
    Stale { home: String, known: u64, got: u64 },
    #[error(
        "this node serves group {home} at epoch {epoch}; the peer writes it at the same epoch \
         (a split brain: both nodes owned it)"
    )]
    BothOwn { home: String, epoch: u64 },
}

#[derive(Debug, Default)]
struct Inner {
    groups: HashMap<String, Group>,
    /// Each writable volume's home (volumes without one belong to this node's group).
    homes: HashMap<String, String>,
    /// One flag per group ownership: set when it ends, so connections opened under it close.
    ended: HashMap<String, Arc<AtomicBool>>,
    /// Groups the peer wrote at the epoch this node serves them with (a split brain), until
    /// the pair moves them to a new epoch.
    split: std::collections::BTreeSet<String>,
}

#[derive(Debug)]
pub struct Ownership {
    /// This node's name on a pair; None: a single appliance.
    me: Option<String>,
    inner: RwLock<Inner>,
}

/// Held by a connection to a volume: tells it when this node stopped serving the volume.
#[derive(Debug, Clone)]
pub struct Served(Option<Arc<AtomicBool>>);

impl Served {
    /// A volume served for as long as the connection lasts (a frozen one, a single
    /// appliance's).
    pub fn always() -> Served {
        Served(None)
    }

    /// Whether the node still serves the volume the connection was opened on.
    pub fn still(&self) -> bool {
        self.0.as_ref().is_none_or(|f| !f.load(Ordering::SeqCst))
    }
}

impl Ownership {
    /// A single appliance: every volume is served here.
    pub fn single() -> Ownership {
        Ownership {
            me: None,
            inner: RwLock::default(),
        }
    }

    /// Node `me` of a pair. With `serve_own`, it serves its own group (epoch 1) until told
    /// otherwise (tests without clusterd); without, nothing until clusterd says so.
    pub fn node(me: &str, serve_own: bool) -> Ownership {
        let o = Ownership {
            me: Some(me.to_string()),
            inner: RwLock::default(),
        };
        if serve_own {
            o.own(me, 1);
        }
        o
    }

    /// This node's name on a pair.
    pub fn me(&self) -> Option<&str> {
        self.me.as_deref()
    }

    /// Records that writable volume `volume` belongs to group `home` (None: this node's).
    pub fn register(&self, volume: &str, home: Option<&str>) {
        if let Some(h) = home.or(self.me.as_deref()) {
            self.inner
                .write()
                .homes
                .insert(volume.to_string(), h.to_string());
        }
    }

    pub fn forget(&self, volume: &str) {
        self.inner.write().homes.remove(volume);
    }

    /// The group of `volume` (None on a single appliance for a volume of its own).
    pub fn home_of(&self, volume: &str) -> Option<String> {
        let inner = self.inner.read();
        inner.homes.get(volume).cloned().or_else(|| self.me.clone())
    }

    /// The group `volume` was registered in, if it was (a writable volume this node holds).
    pub fn known_home(&self, volume: &str) -> Option<String> {
        self.inner.read().homes.get(volume).cloned()
    }

    /// Whether this node serves writable volume `volume` now, and the flag that tells its
    /// connection when that ends. None: the other node serves it.
    pub fn serves(&self, volume: &str) -> Option<Served> {
        let Some(home) = self.home_of(volume) else {
            return Some(Served(None));
        };
        let inner = self.inner.read();
        if self.me.is_none() {
            return Some(Served(None));
        }
        match inner.groups.get(&home) {
            Some(g) if g.owned => Some(Served(inner.ended.get(&home).cloned())),
            _ => None,
        }
    }

    /// Whether this node owns `volume`'s group now (always, on a single appliance).
    pub fn owns(&self, volume: &str) -> bool {
        self.serves(volume).is_some()
    }

    /// The epoch this node writes `volume`'s changes with.
    pub fn epoch_of(&self, volume: &str) -> u64 {
        match self.home_of(volume) {
            Some(home) => self.group_epoch(&home),
            None => 1,
        }
    }

    /// The epoch of group `home` as this node knows it (1 before any).
    pub fn group_epoch(&self, home: &str) -> u64 {
        self.inner
            .read()
            .groups
            .get(home)
            .map_or(1, |g| g.epoch.max(1))
    }

    /// This node serves group `home` from now on, at `epoch` (never lowered).
    pub fn own(&self, home: &str, epoch: u64) {
        let mut inner = self.inner.write();
        let g = inner.groups.entry(home.to_string()).or_default();
        if epoch > g.epoch {
            inner.split.remove(home);
        }
        let g = inner.groups.entry(home.to_string()).or_default();
        g.epoch = g.epoch.max(epoch);
        if !g.owned {
            g.owned = true;
            inner
                .ended
                .insert(home.to_string(), Arc::new(AtomicBool::new(false)));
        }
    }

    /// This node stops serving group `home`: its open connections close at their next
    /// request. `epoch`, when known, is the group's new one.
    pub fn disown(&self, home: &str, epoch: Option<u64>) {
        let mut inner = self.inner.write();
        let g = inner.groups.entry(home.to_string()).or_default();
        g.owned = false;
        let newer = epoch.is_some_and(|e| e > g.epoch);
        if let Some(e) = epoch {
            g.epoch = g.epoch.max(e);
        }
        if newer {
            inner.split.remove(home);
        }
        if let Some(flag) = inner.ended.remove(home) {
            flag.store(true, Ordering::SeqCst);
        }
    }

    /// Every group this node knows, by home.
    pub fn groups(&self) -> BTreeMap<String, Group> {
        self.inner
            .read()
            .groups
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Groups both nodes wrote at one epoch (refused, not merged), until the pair moves them
    /// on.
    pub fn split_brain(&self) -> Vec<String> {
        self.inner.read().split.iter().cloned().collect()
    }

    /// The replica's check of a change of group `home` sent at `epoch`: an older epoch is a
    /// deposed owner's; a newer one means the sender owns the group now (this node stops
    /// serving it, if it still did); the same epoch from the peer while this node serves the
    /// group is a split brain.
    pub fn admit(&self, home: &str, epoch: u64) -> Result<(), Refusal> {
        {
            let inner = self.inner.read();
            if let Some(g) = inner.groups.get(home) {
                if epoch < g.epoch {
                    return Err(Refusal::Stale {
                        home: home.to_string(),
                        known: g.epoch,
                        got: epoch,
                    });
                }
                if epoch == g.epoch && g.owned && self.me.is_some() {
                    drop(inner);
                    tracing::error!(
                        "split brain: the peer writes group {home} at epoch {epoch}, which \
                         this node serves: refused, nothing merged"
                    );
                    self.inner.write().split.insert(home.to_string());
                    return Err(Refusal::BothOwn {
                        home: home.to_string(),
                        epoch,
                    });
                }
                if epoch == g.epoch && !g.owned {
                    return Ok(());
                }
            }
        }
        let owned = self.inner.read().groups.get(home).is_some_and(|g| g.owned);
        if owned {
            tracing::warn!("group {home}: the peer writes it at epoch {epoch}: it owns it now");
            self.disown(home, Some(epoch));
        } else {
            let mut inner = self.inner.write();
            let g = inner.groups.entry(home.to_string()).or_default();
            g.epoch = g.epoch.max(epoch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_appliance_serves_everything() {
        let o = Ownership::single();
        o.register("v", None);
        assert!(o.serves("v").unwrap().still());
        assert_eq!(o.epoch_of("v"), 1);
    }

    #[test]
    fn a_node_serves_only_the_groups_it_owns_and_closes_on_disown() {
        let o = Ownership::node("a", false);
        o.register("mine", None);
        o.register("theirs", Some("b"));
        assert!(
            o.serves("mine").is_none(),
            "nothing before clusterd says so"
        );
        o.own("a", 1);
        let served = o.serves("mine").unwrap();
        assert!(served.still());
        assert!(o.serves("theirs").is_none());
        o.own("b", 2);
        assert_eq!(o.epoch_of("theirs"), 2);
        o.disown("a", Some(2));
        assert!(!served.still(), "an open connection learns it");
        assert!(o.serves("mine").is_none());
        o.own("a", 1);
        assert_eq!(o.epoch_of("mine"), 2, "an epoch never goes down");
    }

    #[test]
    fn the_replica_refuses_old_epochs_and_yields_to_new_ones() {
        let o = Ownership::node("b", false);
        assert_eq!(o.admit("a", 1), Ok(()));
        assert_eq!(o.admit("a", 3), Ok(()));
        assert!(matches!(
            o.admit("a", 2),
            Err(Refusal::Stale { known: 3, .. })
        ));
        // b took group a over at epoch 4; a (deposed) still writes with 3: refused.
        o.own("a", 4);
        assert!(matches!(o.admit("a", 3), Err(Refusal::Stale { .. })));
        assert!(matches!(o.admit("a", 4), Err(Refusal::BothOwn { .. })));
        assert_eq!(o.split_brain(), ["a"], "remembered for the alert");
        // A newer epoch is authoritative: b stops serving the group.
        o.register("v", Some("a"));
        let served = o.serves("v").unwrap();
        assert_eq!(o.admit("a", 5), Ok(()));
        assert!(!served.still());
        assert!(o.split_brain().is_empty(), "a new epoch ends it");
        assert!(o.serves("v").is_none());
    }
}
