//! Materialised views, moved incrementally by the [`Writer`] from the keys each
//! write changed, so queries read one row instead of scanning history.
//!
//! Every view is a function of the set of document entries alone, never of the
//! order they arrived in: that is what lets every till compute the same numbers.
//! Stock on hand, for one SKU, is the latest count (by HLC, ties by till id and
//! entry) plus every movement ordered after it; `v_moves` keeps only movements
//! after the latest count, which is all that can still matter.

use std::collections::{BTreeMap, BTreeSet};

use automerge::{ROOT, ReadDoc, Value};
use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::error::{StorageError, damaged};
use crate::hlc::Hlc;
use crate::ids::{Barcode, Day, DocId, Sku, TillId};
use crate::model::{
    Conflict, ConflictStatus, ENTRY_VERSION, EntryKind, FieldValue, PRODUCT_FIELDS, Policy,
    Product, ReceiptInfo, Role, SaleEntry, StockEntry, StockKind, TillInfo, Totals, Unit,
    rank_values,
};
use crate::tables;
use crate::writer::Writer;

/// Stock view row of one SKU.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct StockState {
    pub on_hand: i64,
    /// Order key (hex) of the latest count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_at: Option<Hlc>,
}

/// Total order of stock events: HLC, then till, then entry key.
pub(crate) fn order_key(hlc: Hlc, till: &TillId, entry: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(40 + entry.len());
    k.extend_from_slice(&hlc.as_u64().to_be_bytes());
    k.extend_from_slice(till.as_bytes());
    k.extend_from_slice(entry.as_bytes());
    k
}

fn move_key(sku: &str, order: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(sku.len() + 1 + order.len());
    k.extend_from_slice(sku.as_bytes());
    k.push(0);
    k.extend_from_slice(order);
    k
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(v).map_err(|e| StorageError::Database(e.to_string()))
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(
    table: &str,
    bytes: &[u8],
) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Damaged {
        doc: format!("view {table}"),
        reason: e.to_string(),
    })
}

/// The values of a multi-writer field, each with its Automerge op id.
pub(crate) fn field_values(doc: &automerge::Automerge, key: &str) -> Vec<(FieldValue, String)> {
    let Ok(all) = doc.get_all(ROOT, key) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (value, exid) in all {
        let parsed = match &value {
            Value::Scalar(s) => match s.as_ref() {
                automerge::ScalarValue::Str(text) => serde_json::from_str::<FieldValue>(text).ok(),
                _ => None,
            },
            Value::Object(_) => None,
        };
        match parsed {
            Some(fv) if fv.version <= ENTRY_VERSION => out.push((fv, exid.to_string())),
            _ => tracing::warn!(key, "ignoring a field value this version cannot read"),
        }
    }
    out
}

/// Read a single-writer entry stored as JSON under `key`.
pub(crate) fn read_entry<T: for<'de> Deserialize<'de>>(
    doc: &automerge::Automerge,
    id: &DocId,
    key: &str,
) -> Option<T> {
    let text = match doc.get(ROOT, key) {
        Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
            automerge::ScalarValue::Str(t) => t.to_string(),
            _ => return None,
        },
        _ => return None,
    };
    parse_entry(&text, id, key)
}

/// Every entry of a single-writer document, read in one pass.
pub(crate) fn all_entries<T: for<'de> Deserialize<'de>>(
    doc: &automerge::Automerge,
    id: &DocId,
) -> Vec<(String, T)> {
    doc.map_range(ROOT, ..)
        .filter_map(|item| match &item.value {
            automerge::ValueRef::Scalar(automerge::ScalarValueRef::Str(t)) => {
                parse_entry(t, id, &item.key).map(|e| (item.key.to_string(), e))
            }
            _ => None,
        })
        .collect()
}

fn parse_entry<T: for<'de> Deserialize<'de>>(text: &str, id: &DocId, key: &str) -> Option<T> {
    /// The version field alone, read before the entry itself.
    #[derive(Deserialize)]
    struct Version {
        #[serde(default)]
        v: u64,
    }
    let parsed = serde_json::from_str::<Version>(text).and_then(|peek| {
        if peek.v > u64::from(ENTRY_VERSION) {
            Ok(None)
        } else {
            serde_json::from_str::<T>(text).map(Some)
        }
    });
    match parsed {
        Ok(Some(e)) => Some(e),
        Ok(None) => {
            tracing::warn!(doc = %id, key, "entry written by a newer tillmesh; not counted");
            None
        }
        Err(e) => {
            tracing::warn!(doc = %id, key, error = %e, "unreadable entry; not counted");
            None
        }
    }
}

/// The configured conflict policy for a document kind.
pub(crate) fn policy_for(txn: &WriteTransaction, kind: &str) -> Result<Policy, StorageError> {
    let t = txn.open_table(tables::V_CONFIG)?;
    let key = format!("conflict_policy/{kind}");
    Ok(match t.get(key.as_str())? {
        Some(v) => serde_json::from_slice::<String>(v.value())
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default(),
        None => Policy::default(),
    })
}

impl Writer<'_> {
    /// Move the views by what changed in `id` during this write.
    pub(crate) fn update_views(&mut self, id: DocId) -> Result<(), StorageError> {
        // A single-writer document wholly new to this till (a restore, a first
        // sync) is read in one pass: no diff is needed to know what is new.
        let all_new = id.owner().is_some() && self.before.get(&id).is_some_and(|b| b.is_empty());
        let keys = if all_new {
            Vec::new()
        } else {
            let keys = self.changed_keys(&id)?;
            if keys.is_empty() {
                return Ok(());
            }
            keys
        };
        match id {
            DocId::Sales(till, day) => {
                let entries = self.new_entries::<SaleEntry>(&id, &keys)?;
                self.seen.extend(entries.iter().map(|(_, e)| (till, e.hlc)));
                self.apply_sale_entries(&id, till, day, &entries)?;
            }
            DocId::Stock(till, _) => {
                for (key, e) in self.new_entries::<StockEntry>(&id, &keys)? {
                    self.seen.push((till, e.hlc));
                    self.apply_stock_entry(till, &key, &e)?;
                }
            }
            DocId::Audit(..) => {}
            DocId::Catalog | DocId::Config | DocId::Membership => {
                let keys: Vec<String> = keys.into_iter().map(|(k, _)| k).collect();
                self.update_fields(id, &keys)?;
            }
        }
        Ok(())
    }

    fn new_entries<T: for<'de> Deserialize<'de>>(
        &self,
        id: &DocId,
        keys: &[(String, bool)],
    ) -> Result<Vec<(String, T)>, StorageError> {
        let doc = self
            .s
            .docs
            .get(id)
            .ok_or_else(|| damaged(id, "document vanished from the cache"))?;
        if self.before.get(id).is_some_and(|b| b.is_empty()) {
            // All of the document is new (a restore, a first sync): one pass.
            return Ok(all_entries(doc, id));
        }
        let mut out = Vec::new();
        for (key, is_new) in keys {
            if !is_new {
                tracing::warn!(doc = %id, key, "entry rewritten in a single-writer document; ignored");
                continue;
            }
            if let Some(e) = read_entry(doc, id, key) {
                out.push((key.clone(), e));
            }
        }
        Ok(out)
    }

    /// Fold new entries of one till's day of sales into the views: the day's
    /// totals are read and written once for the batch, the stock states once
    /// for the write (a sale never moves a stocktake, so the order within it
    /// does not matter).
    fn apply_sale_entries(
        &mut self,
        id: &DocId,
        till: TillId,
        day: Day,
        entries: &[(String, SaleEntry)],
    ) -> Result<(), StorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        let txn = self.txn.as_ref().expect("transaction present until commit");
        {
            let mut totals = txn.open_table(tables::V_TOTALS)?;
            let day_s = day.to_string();
            let till_s = till.to_string();
            let mut t: Totals = match totals.get((day_s.as_str(), till_s.as_str()))? {
                Some(v) => read_json("v_totals", v.value())?,
                None => Totals::default(),
            };
            for (_, e) in entries {
                t.add(e);
            }
            totals.insert((day_s.as_str(), till_s.as_str()), json(&t)?.as_slice())?;
        }
        {
            let mut receipts = txn.open_table(tables::V_RECEIPTS)?;
            for (_, e) in entries {
                record_receipt(&mut receipts, id, e)?;
            }
        }
        crate::listing::index_entries(txn, till, day, entries)?;
        if self.s.watching {
            let local = till == self.s.till;
            self.events
                .extend(entries.iter().map(|(_, e)| crate::StoreEvent::Sale {
                    record: crate::SaleRecord {
                        entry: e.clone(),
                        till,
                        day: day.to_string(),
                    },
                    local,
                }));
        }
        let mut moves = txn.open_table(tables::V_MOVES)?;
        for (key, e) in entries {
            for (i, line) in e.lines.iter().enumerate() {
                let delta = match e.kind {
                    EntryKind::Sale => -line.base_qty(),
                    EntryKind::Void | EntryKind::Refund => line.base_qty(),
                };
                let sku = line.sku.as_str();
                let state = stock_state(&mut self.stock, txn, sku)?;
                let order = order_key(e.hlc, &till, &format!("{key}#{i}"));
                if counted_after(state, &order) {
                    // A later stocktake already accounts for this movement.
                    continue;
                }
                moves.insert(move_key(sku, &order).as_slice(), delta)?;
                state.on_hand += delta;
            }
        }
        Ok(())
    }

    fn apply_stock_entry(
        &mut self,
        till: TillId,
        key: &str,
        e: &StockEntry,
    ) -> Result<(), StorageError> {
        let order = order_key(e.hlc, &till, key);
        let txn = self.txn.as_ref().expect("transaction present until commit");
        let state = stock_state(&mut self.stock, txn, e.sku.as_str())?;
        match e.kind {
            StockKind::Receive | StockKind::Adjust => {
                apply_move(txn, state, e.sku.as_str(), &order, e.qty)
            }
            StockKind::Count => apply_count(txn, state, e.sku.as_str(), &order, e.qty, e.hlc),
        }
    }

    /// Write the stock states this write moved to their view, in key order.
    pub(crate) fn flush_stock(&mut self) -> Result<(), StorageError> {
        if self.stock.is_empty() {
            return Ok(());
        }
        let txn = self.txn.as_ref().expect("transaction present until commit");
        let mut t = txn.open_table(tables::V_STOCK)?;
        for (sku, state) in std::mem::take(&mut self.stock) {
            t.insert(sku.as_str(), json(&state)?.as_slice())?;
        }
        Ok(())
    }

    /// Re-derive the rows of a multi-writer document whose `keys` changed, and log
    /// any concurrent writes among them.
    fn update_fields(&mut self, id: DocId, keys: &[String]) -> Result<(), StorageError> {
        let policy = policy_for(self.txn(), id.kind())?;
        let mut groups = BTreeSet::new();
        for key in keys {
            let values = {
                let doc = self
                    .s
                    .docs
                    .get(&id)
                    .ok_or_else(|| damaged(&id, "document vanished from the cache"))?;
                field_values(doc, key)
            };
            for (fv, _) in &values {
                self.seen.push((fv.till, fv.hlc));
            }
            // Concurrent writes of one value (two managers setting the same
            // price, the admin till and a restored till certifying the same
            // till) leave nothing to choose: no conflict.
            let disagree = values.windows(2).any(|w| w[0].0.value != w[1].0.value);
            if disagree {
                self.log_conflict(&id, key, values, policy)?;
            } else {
                self.settle_open_conflict(&id, key)?;
            }
            match id {
                DocId::Catalog | DocId::Membership => {
                    if let Some((group, _)) = key.rsplit_once('/') {
                        groups.insert(group.to_string());
                    }
                }
                _ => {
                    groups.insert(key.clone());
                }
            }
        }
        if id == DocId::Membership
            && self.s.watching
            && !self
                .events
                .iter()
                .any(|e| matches!(e, crate::StoreEvent::MembershipChanged))
        {
            self.events.push(crate::StoreEvent::MembershipChanged);
        }
        for group in groups {
            match id {
                DocId::Catalog => self.materialise_product(&group, policy)?,
                DocId::Membership => self.materialise_till(&group, policy)?,
                _ => self.materialise_config(&group, policy)?,
            }
        }
        Ok(())
    }

    /// The winning value of a multi-writer field under `policy`.
    pub(crate) fn winner(&self, id: &DocId, key: &str, policy: Policy) -> Option<FieldValue> {
        let doc = self.s.docs.get(id)?;
        let mut values: Vec<FieldValue> =
            field_values(doc, key).into_iter().map(|(v, _)| v).collect();
        self.rank_certified(&mut values, policy);
        values.into_iter().next()
    }

    /// [`rank_values`], where under `role-priority` a writer's role counts at
    /// most as high as its admin-signed certificate says (a revoked or unknown
    /// writer as a checkout till): a change cannot raise its writer's rank by
    /// claiming a role.
    fn rank_certified(&self, values: &mut [FieldValue], policy: Policy) {
        if policy == Policy::RolePriority && values.len() > 1 {
            for v in values.iter_mut() {
                let certified = self.s.certified_role(&v.till).ok().flatten();
                v.role = certified.map_or(Role::Till, |c| c.min(v.role));
            }
        }
        rank_values(values, policy);
    }

    fn materialise_product(&mut self, sku: &str, policy: Policy) -> Result<(), StorageError> {
        let Ok(sku_id) = sku.parse::<Sku>() else {
            tracing::warn!(sku, "ignoring a catalog entry with an invalid SKU");
            return Ok(());
        };
        let mut fields = std::collections::HashMap::new();
        for f in PRODUCT_FIELDS {
            if let Some(v) = self.winner(&DocId::Catalog, &format!("{sku}/{f}"), policy) {
                fields.insert(f, v.value);
            }
        }
        if fields.is_empty() {
            return Ok(());
        }
        let text = |f: &str| {
            fields
                .get(f)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let mut barcodes: Vec<Barcode> = fields
            .get("barcodes")
            .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|b| b.parse().ok())
            .collect();
        barcodes.sort();
        barcodes.dedup();
        let product = Product {
            sku: sku_id,
            name: text("name"),
            barcodes,
            price_cents: fields
                .get("price_cents")
                .and_then(|v| v.as_i64())
                .unwrap_or(0),
            unit: text("unit").parse().unwrap_or(Unit::Each),
            tax_class: text("tax_class"),
            category: text("category"),
            active: fields
                .get("active")
                .and_then(|v| v.as_bool())
                .unwrap_or(true),
        };
        let txn = self.txn();
        let mut products = txn.open_table(tables::V_PRODUCTS)?;
        let mut index = txn.open_multimap_table(tables::V_BARCODES)?;
        if let Some(old) = products.get(sku)? {
            let old: Product = read_json("v_products", old.value())?;
            for b in old.barcodes {
                index.remove(b.as_str(), sku)?;
            }
        }
        for b in &product.barcodes {
            index.insert(b.as_str(), sku)?;
        }
        products.insert(sku, json(&product)?.as_slice())?;
        Ok(())
    }

    fn materialise_till(&mut self, group: &str, policy: Policy) -> Result<(), StorageError> {
        let Some(hex) = group.strip_prefix("till/") else {
            return Ok(());
        };
        let Ok(id) = hex.parse::<TillId>() else {
            tracing::warn!(group, "ignoring a membership entry with an invalid till id");
            return Ok(());
        };
        let get = |f: &str| self.winner(&DocId::Membership, &format!("{group}/{f}"), policy);
        let name = get("name")
            .and_then(|v| v.value.as_str().map(str::to_string))
            .unwrap_or_default();
        let role = get("role")
            .and_then(|v| v.value.as_str().and_then(|r| r.parse().ok()))
            .unwrap_or(Role::Till);
        let text = |f: &str| get(f).and_then(|v| v.value.as_str().map(str::to_string));
        let info = TillInfo {
            id,
            name,
            role,
            cert: text("cert"),
            revoked: text("revoked"),
            addr: get("addr").map(|v| v.value),
        };
        self.txn()
            .open_table(tables::V_TILLS)?
            .insert(hex, json(&info)?.as_slice())?;
        Ok(())
    }

    fn materialise_config(&mut self, key: &str, policy: Policy) -> Result<(), StorageError> {
        if let Some(v) = self.winner(&DocId::Config, key, policy) {
            self.txn()
                .open_table(tables::V_CONFIG)?
                .insert(key, json(&v.value)?.as_slice())?;
        }
        Ok(())
    }

    fn log_conflict(
        &mut self,
        id: &DocId,
        key: &str,
        values: Vec<(FieldValue, String)>,
        policy: Policy,
    ) -> Result<(), StorageError> {
        let mut ops: Vec<&str> = values.iter().map(|(_, op)| op.as_str()).collect();
        ops.sort_unstable();
        let mut h = blake3::Hasher::new();
        h.update(id.to_string().as_bytes());
        h.update(&[0]);
        h.update(key.as_bytes());
        for op in &ops {
            h.update(&[0]);
            h.update(op.as_bytes());
        }
        let cid = h.finalize().to_hex()[..16].to_string();
        if self
            .txn()
            .open_table(tables::CONFLICTS)?
            .get(cid.as_str())?
            .is_some()
        {
            return Ok(());
        }
        let mut vals: Vec<FieldValue> = values.into_iter().map(|(v, _)| v).collect();
        self.rank_certified(&mut vals, policy);
        let status = if policy == Policy::Manual {
            ConflictStatus::Pending
        } else {
            ConflictStatus::Decided
        };
        let detected = self.s.tick();
        let record = Conflict {
            id: cid.clone(),
            doc: id.to_string(),
            key: key.to_string(),
            policy,
            values: vals.clone(),
            detected,
            status,
            resolution: None,
        };
        let open_key = format!("{id}\0{key}");
        if status == ConflictStatus::Pending {
            let previous = self
                .txn()
                .open_table(tables::OPEN_CONFLICTS)?
                .get(open_key.as_str())?
                .map(|v| v.value().to_string());
            if let Some(prev) = previous {
                self.mark_resolved(&prev, "superseded by a newer conflict on the same field")?;
            }
            self.txn()
                .open_table(tables::OPEN_CONFLICTS)?
                .insert(open_key.as_str(), cid.as_str())?;
        }
        self.txn()
            .open_table(tables::CONFLICTS)?
            .insert(cid.as_str(), json(&record)?.as_slice())?;
        self.conflicts_logged += 1;
        if self.s.watching {
            self.events.push(crate::StoreEvent::ConflictRaised {
                id: cid.clone(),
                doc: id.to_string(),
                key: key.to_string(),
            });
        }
        tracing::info!(doc = %id, key, conflict = %cid, %policy, "concurrent edits");
        let describe = |v: &FieldValue| serde_json::json!({"value": v.value, "till": v.till.to_string(), "hlc": v.hlc, "role": v.role});
        self.audit(
            "conflict",
            key,
            serde_json::json!({
                "conflict": cid,
                "doc": id.to_string(),
                "policy": policy.to_string(),
                "status": status,
                "winner": describe(&vals[0]),
                "losers": vals[1..].iter().map(describe).collect::<Vec<_>>(),
            }),
        )
    }

    /// A later write settled a field: close its pending conflict, if any.
    fn settle_open_conflict(&mut self, id: &DocId, key: &str) -> Result<(), StorageError> {
        let open_key = format!("{id}\0{key}");
        let open = self
            .txn()
            .open_table(tables::OPEN_CONFLICTS)?
            .remove(open_key.as_str())?
            .map(|v| v.value().to_string());
        if let Some(cid) = open {
            self.mark_resolved(&cid, "settled by a later edit")?;
        }
        Ok(())
    }

    pub(crate) fn mark_resolved(&mut self, cid: &str, how: &str) -> Result<(), StorageError> {
        let mut t = self.txn().open_table(tables::CONFLICTS)?;
        let Some(v) = t.get(cid)?.map(|v| v.value().to_vec()) else {
            return Ok(());
        };
        let mut c: Conflict = read_json("conflicts", &v)?;
        if c.status != ConflictStatus::Resolved {
            c.status = ConflictStatus::Resolved;
            c.resolution = Some(how.to_string());
            t.insert(cid, json(&c)?.as_slice())?;
            drop(t);
            if self.s.watching {
                self.events.push(crate::StoreEvent::ConflictResolved {
                    id: cid.to_string(),
                    how: how.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Record sale, void or refund `e` of document `id` in the receipts view.
fn record_receipt(
    receipts: &mut redb::Table<'_, &'static str, &'static [u8]>,
    id: &DocId,
    e: &SaleEntry,
) -> Result<(), StorageError> {
    let own = e.receipt.to_string();
    let mut info = ReceiptInfo {
        doc: Some(id.to_string()),
        kind: Some(e.kind),
        ..ReceiptInfo::default()
    };
    // Usually the first the view hears of this receipt: one insert. A void or
    // refund of it that arrived first left a row, whose links are kept.
    let earlier = receipts
        .insert(own.as_str(), json(&info)?.as_slice())?
        .map(|v| read_json::<ReceiptInfo>("v_receipts", v.value()))
        .transpose()?;
    if let Some(earlier) = earlier {
        info = ReceiptInfo {
            doc: info.doc,
            kind: info.kind,
            ..earlier
        };
        receipts.insert(own.as_str(), json(&info)?.as_slice())?;
    }
    if let Some(target) = &e.refers_to {
        let target = target.to_string();
        let mut t: ReceiptInfo = match receipts.get(target.as_str())? {
            Some(v) => read_json("v_receipts", v.value())?,
            None => ReceiptInfo::default(),
        };
        match e.kind {
            EntryKind::Void => {
                // Deterministic if two tills void the same sale: the smaller receipt.
                if t.voided_by.as_ref().is_none_or(|v| own < *v) {
                    t.voided_by = Some(own.clone());
                }
            }
            EntryKind::Refund => {
                if let Err(pos) = t.refunds.binary_search(&own) {
                    t.refunds.insert(pos, own.clone());
                    for l in &e.lines {
                        *t.refunded.entry(l.sku.to_string()).or_default() += l.base_qty();
                    }
                }
            }
            EntryKind::Sale => {}
        }
        receipts.insert(target.as_str(), json(&t)?.as_slice())?;
    }
    Ok(())
}

/// The stock state of `sku` as this write has it: read from the view once, then
/// moved in `states` and written back at commit ([`Writer::flush_stock`]), so a
/// write of many sales reads and writes each SKU's row once.
fn stock_state<'a>(
    states: &'a mut BTreeMap<String, StockState>,
    txn: &WriteTransaction,
    sku: &str,
) -> Result<&'a mut StockState, StorageError> {
    if !states.contains_key(sku) {
        let t = txn.open_table(tables::V_STOCK)?;
        let state = match t.get(sku)? {
            Some(v) => read_json("v_stock", v.value())?,
            None => StockState::default(),
        };
        states.insert(sku.to_string(), state);
    }
    Ok(states.get_mut(sku).expect("inserted above"))
}

fn counted_after(state: &StockState, order: &[u8]) -> bool {
    state
        .count_key
        .as_ref()
        .and_then(|k| hex::decode(k).ok())
        .is_some_and(|k| order < k.as_slice())
}

fn apply_move(
    txn: &WriteTransaction,
    state: &mut StockState,
    sku: &str,
    order: &[u8],
    delta: i64,
) -> Result<(), StorageError> {
    if counted_after(state, order) {
        // A later stocktake already accounts for this movement.
        return Ok(());
    }
    txn.open_table(tables::V_MOVES)?
        .insert(move_key(sku, order).as_slice(), delta)?;
    state.on_hand += delta;
    Ok(())
}

fn apply_count(
    txn: &WriteTransaction,
    state: &mut StockState,
    sku: &str,
    order: &[u8],
    qty: i64,
    hlc: Hlc,
) -> Result<(), StorageError> {
    if counted_after(state, order) {
        return Ok(());
    }
    let mut moves = txn.open_table(tables::V_MOVES)?;
    let start = move_key(sku, &[]);
    let at = move_key(sku, order);
    let mut end = start.clone();
    if let Some(last) = end.last_mut() {
        *last = 1;
    }
    let mut after = 0i64;
    for row in moves.range(at.as_slice()..end.as_slice())? {
        let (_, v) = row?;
        after += v.value();
    }
    // Movements before the count can never matter again.
    let stale: Vec<Vec<u8>> = moves
        .range(start.as_slice()..at.as_slice())?
        .map(|r| r.map(|(k, _)| k.value().to_vec()))
        .collect::<Result<_, _>>()?;
    for k in stale {
        moves.remove(k.as_slice())?;
    }
    state.on_hand = qty + after;
    state.count_key = Some(hex::encode(order));
    state.counted_at = Some(hlc);
    Ok(())
}
