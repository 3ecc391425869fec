//! `verify`: a consistency check of the whole store (an fsck), and with `deep` a re-read of
//! every imported volume against its recorded checksum.

use std::collections::{HashMap, HashSet};

use super::{Problem, Store, StoreError, VerifyReport, VolumeState};
use crate::volume::layer::Layer;

impl Store {
    pub fn verify(&self, deep: bool) -> Result<VerifyReport, StoreError> {
        let (volumes, exports) = {
            let st = self.state.lock();
            (st.volumes.clone(), st.exports.clone())
        };
        let mut problems = Vec::new();
        let mut report = |subject: &str, what: String| {
            problems.push(Problem {
                subject: subject.to_string(),
                what,
            });
        };
        let mut names: HashMap<&str, &str> = HashMap::new();
        let mut layers: HashMap<&str, &str> = HashMap::new();
        for r in volumes.values() {
            if let Some(other) = names.insert(&r.name, &r.id) {
                report(&r.id, format!("name {:?} is also used by {other}", r.name));
            }
            if let Some(other) = layers.insert(&r.layer, &r.id) {
                report(&r.id, format!("layer {} is also used by {other}", r.layer));
            }
            let mut seen = HashSet::from([r.id.as_str()]);
            let mut cur = r;
            while let Some(p) = &cur.parent {
                let Some(parent) = volumes.get(p) else {
                    report(&cur.id, format!("parent {p} does not exist"));
                    break;
                };
                if parent.state != VolumeState::Frozen {
                    report(&cur.id, format!("parent {p} is not frozen"));
                }
                if !seen.insert(&parent.id) {
                    report(&r.id, "parent chain loops".to_string());
                    break;
                }
                cur = parent;
            }
            let paths = self.paths(&r.layer);
            match std::fs::metadata(&paths.data) {
                Ok(m) if m.len() == r.size => {}
                Ok(m) => report(
                    &r.id,
                    format!(
                        "{} is {} bytes, expected {}",
                        paths.data.display(),
                        m.len(),
                        r.size
                    ),
                ),
                Err(e) => report(&r.id, format!("{}: {e}", paths.data.display())),
            }
            if let Err(e) = Layer::open(
                &r.layer,
                &paths,
                r.size,
                r.block_size,
                r.parent.is_some(),
                false,
            ) {
                report(&r.id, e.to_string());
            }
        }
        for e in exports.values() {
            if !volumes.contains_key(&e.volume) {
                report(&e.volume, "export of a volume that does not exist".into());
            }
        }
        for path in self.leftover_files()? {
            report(
                &path.display().to_string(),
                "file not referenced by any volume".into(),
            );
        }
        let mut checksums_checked = 0;
        if deep {
            for r in volumes.values() {
                let Some(expected) = &r.checksum else {
                    continue;
                };
                if r.state != VolumeState::Frozen {
                    continue;
                }
                checksums_checked += 1;
                match self.content_checksum(&r.id) {
                    Ok(actual) if &actual == expected => {}
                    Ok(actual) => report(
                        &r.id,
                        format!("content checksum {actual} differs from recorded {expected}"),
                    ),
                    Err(e) => report(&r.id, format!("cannot read content: {e}")),
                }
            }
        }
        Ok(VerifyReport {
            volumes_checked: volumes.len(),
            checksums_checked,
            problems,
        })
    }
}
