//! The conflict log and review queue: concurrent writes of one field that this
//! till saw when changes merged, what the policy chose, and operator decisions.

use redb::{ReadableDatabase, ReadableTable};
use serde_json::json;

use crate::error::{ConflictError, StorageError};
use crate::ids::DocId;
use crate::model::{Conflict, ConflictStatus};
use crate::store::Store;
use crate::tables;
use crate::views::read_json;

impl Store {
    /// Every conflict this till has logged, oldest first.
    pub fn conflicts(&self) -> Result<Vec<Conflict>, StorageError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(tables::CONFLICTS)?;
        let mut out: Vec<Conflict> = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            out.push(read_json("conflicts", v.value())?);
        }
        out.sort_by_key(|c| c.detected);
        Ok(out)
    }

    /// Conflicts waiting for an operator (`manual` policy).
    pub fn pending_conflicts(&self) -> Result<Vec<Conflict>, StorageError> {
        Ok(self
            .conflicts()?
            .into_iter()
            .filter(|c| c.status == ConflictStatus::Pending)
            .collect())
    }

    /// Settle a conflict by keeping value `pick` (1 = the policy's winner, as
    /// listed). The kept value is written again as a new edit, which every till
    /// sees as later than all the conflicting ones. Audited.
    pub fn resolve_conflict(&mut self, id: &str, pick: usize) -> Result<Conflict, ConflictError> {
        let conflict = self
            .conflicts()?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| ConflictError::Unknown(id.to_string()))?;
        if conflict.status == ConflictStatus::Resolved {
            return Err(ConflictError::Invalid(format!(
                "conflict {id} is already resolved ({})",
                conflict.resolution.as_deref().unwrap_or("")
            )));
        }
        let Some(chosen) = pick.checked_sub(1).and_then(|i| conflict.values.get(i)) else {
            return Err(ConflictError::Invalid(format!(
                "pick a value from 1 to {}",
                conflict.values.len()
            )));
        };
        let doc: DocId = conflict
            .doc
            .parse()
            .map_err(|_| ConflictError::Invalid(format!("unknown document {}", conflict.doc)))?;
        let hlc = self.tick();
        let till = self.till;
        let mut w = self.writer()?;
        w.put_fields(doc, hlc, &[(conflict.key.clone(), chosen.value.clone())])?;
        let how = format!(
            "kept value {pick} (from till {}), chosen on till {}",
            chosen.till.fmt_short(),
            till.fmt_short()
        );
        w.mark_resolved(id, &how)?;
        w.txn()
            .open_table(tables::OPEN_CONFLICTS)
            .map_err(StorageError::from)?
            .remove(format!("{doc}\0{}", conflict.key).as_str())
            .map_err(StorageError::from)?;
        w.audit(
            "conflict-resolve",
            &conflict.key,
            json!({"conflict": id, "kept": chosen.value, "from_till": chosen.till.to_string()}),
        )?;
        w.commit()?;
        self.conflicts()?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| ConflictError::Unknown(id.to_string()))
    }
}
