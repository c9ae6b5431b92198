//! The multi-writer documents: the product catalog, the store configuration and
//! the till list, and the queries over their views.

use std::collections::BTreeMap;

use redb::{ReadableDatabase, ReadableTable};
use serde_json::json;

use crate::error::{ProductError, StorageError};
use crate::ids::{Barcode, DocId, Sku, StoreId, TillId};
use crate::keys::TillKey;
use crate::membership::MembershipError;
use crate::model::{Policy, Product, TillInfo, Unit};
use crate::store::Store;
use crate::tables;
use crate::views::read_json;
use crate::writer::Writer;

/// The tax classes and rates (basis points, tax included in prices) a new store starts with.
pub const DEFAULT_TAX_RATES: [(&str, i64); 3] = [("standard", 2000), ("reduced", 500), ("zero", 0)];

/// A product to add to the catalog.
#[derive(Debug, Clone)]
pub struct NewProduct {
    /// Its SKU.
    pub sku: Sku,
    /// Its name.
    pub name: String,
    /// Barcodes that scan to it.
    pub barcodes: Vec<Barcode>,
    /// Price per piece or per kilogram, tax included, in cents.
    pub price_cents: i64,
    /// How it is sold.
    pub unit: Unit,
    /// Tax class (a configured one: `standard`, `reduced`, `zero` by default).
    pub tax_class: String,
    /// Category, free text.
    pub category: String,
}

/// Changes to a product; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProductEdit {
    /// New name.
    pub name: Option<String>,
    /// New price in cents.
    pub price_cents: Option<i64>,
    /// Barcodes to add.
    pub add_barcodes: Vec<Barcode>,
    /// Barcodes to remove.
    pub remove_barcodes: Vec<Barcode>,
    /// New tax class.
    pub tax_class: Option<String>,
    /// New category.
    pub category: Option<String>,
    /// Sellable or not.
    pub active: Option<bool>,
}

/// Highest price accepted, in cents: a typo guard, not a business rule.
const MAX_PRICE_CENTS: i64 = 100_000_000;

pub(crate) fn check_price(cents: i64) -> Result<(), ProductError> {
    if cents < 0 {
        return Err(ProductError::Invalid(format!(
            "price must not be negative (got {cents} cents)"
        )));
    }
    if cents > MAX_PRICE_CENTS {
        return Err(ProductError::Invalid(format!(
            "price {cents} cents is above the limit of {MAX_PRICE_CENTS} cents; typo?"
        )));
    }
    Ok(())
}

pub(crate) fn check_name(name: &str) -> Result<(), ProductError> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(ProductError::Invalid(
            "product name must be 1 to 200 characters".into(),
        ));
    }
    Ok(())
}

impl Writer<'_> {
    /// Write this till's own membership entry.
    pub(crate) fn register_self(&mut self) -> Result<(), StorageError> {
        let hlc = self.s.tick();
        let group = format!("till/{}", self.s.till);
        let fields = [
            (format!("{group}/name"), json!(self.s.till_name.as_str())),
            (format!("{group}/role"), json!(self.s.role.to_string())),
        ];
        self.put_fields(DocId::Membership, hlc, &fields)
    }

    /// Write the configuration a new store starts with.
    pub(crate) fn write_default_config(&mut self) -> Result<(), StorageError> {
        let hlc = self.s.tick();
        let mut fields = vec![];
        for kind in ["catalog", "config", "membership"] {
            fields.push((
                format!("conflict_policy/{kind}"),
                json!(Policy::LatestWins.to_string()),
            ));
        }
        for (class, bp) in DEFAULT_TAX_RATES {
            fields.push((format!("tax/{class}"), json!(bp)));
        }
        self.put_fields(DocId::Config, hlc, &fields)
    }
}

impl Store {
    /// Add a product to the catalog.
    pub fn add_product(&mut self, p: NewProduct) -> Result<Product, ProductError> {
        check_name(&p.name)?;
        check_price(p.price_cents)?;
        self.check_tax_class(&p.tax_class)?;
        if self.product(&p.sku)?.is_some() {
            return Err(ProductError::Exists(p.sku.to_string()));
        }
        for b in &p.barcodes {
            self.check_barcode_free(b, &p.sku)?;
        }
        let barcodes: Vec<String> = p.barcodes.iter().map(|b| b.to_string()).collect();
        let sku = p.sku.as_str();
        let fields = vec![
            (format!("{sku}/name"), json!(p.name.trim())),
            (format!("{sku}/barcodes"), json!(barcodes)),
            (format!("{sku}/price_cents"), json!(p.price_cents)),
            (format!("{sku}/unit"), json!(p.unit.to_string())),
            (format!("{sku}/tax_class"), json!(p.tax_class)),
            (format!("{sku}/category"), json!(p.category.trim())),
            (format!("{sku}/active"), json!(true)),
        ];
        let hlc = self.tick();
        let mut w = self.writer()?;
        w.put_fields(DocId::Catalog, hlc, &fields)?;
        w.audit(
            "product-add",
            sku,
            json!({"name": p.name.trim(), "price_cents": p.price_cents, "unit": p.unit.to_string()}),
        )?;
        w.commit()?;
        self.product(&p.sku)?
            .ok_or_else(|| ProductError::Unknown(p.sku.to_string()))
    }

    /// Change a product's price.
    pub fn set_price(&mut self, sku: &Sku, price_cents: i64) -> Result<Product, ProductError> {
        self.edit_product(
            sku,
            ProductEdit {
                price_cents: Some(price_cents),
                ..ProductEdit::default()
            },
        )
    }

    /// Edit a product's fields.
    pub fn edit_product(&mut self, sku: &Sku, edit: ProductEdit) -> Result<Product, ProductError> {
        let old = self
            .product(sku)?
            .ok_or_else(|| ProductError::Unknown(sku.to_string()))?;
        let s = sku.as_str();
        let mut fields = Vec::new();
        if let Some(name) = &edit.name {
            check_name(name)?;
            fields.push((format!("{s}/name"), json!(name.trim())));
        }
        if let Some(price) = edit.price_cents {
            check_price(price)?;
            fields.push((format!("{s}/price_cents"), json!(price)));
        }
        if !edit.add_barcodes.is_empty() || !edit.remove_barcodes.is_empty() {
            let mut codes = old.barcodes.clone();
            for b in &edit.add_barcodes {
                self.check_barcode_free(b, sku)?;
                if !codes.contains(b) {
                    codes.push(b.clone());
                }
            }
            codes.retain(|b| !edit.remove_barcodes.contains(b));
            let codes: Vec<String> = codes.iter().map(|b| b.to_string()).collect();
            fields.push((format!("{s}/barcodes"), json!(codes)));
        }
        if let Some(class) = &edit.tax_class {
            self.check_tax_class(class)?;
            fields.push((format!("{s}/tax_class"), json!(class)));
        }
        if let Some(cat) = &edit.category {
            fields.push((format!("{s}/category"), json!(cat.trim())));
        }
        if let Some(active) = edit.active {
            fields.push((format!("{s}/active"), json!(active)));
        }
        if fields.is_empty() {
            return Ok(old);
        }
        let hlc = self.tick();
        let mut w = self.writer()?;
        w.put_fields(DocId::Catalog, hlc, &fields)?;
        if let Some(price) = edit.price_cents {
            w.audit(
                "price",
                s,
                json!({"old_cents": old.price_cents, "new_cents": price}),
            )?;
        }
        let others: Vec<&str> = fields
            .iter()
            .map(|(k, _)| k.rsplit('/').next().unwrap_or_default())
            .filter(|f| *f != "price_cents")
            .collect();
        if !others.is_empty() {
            w.audit("product-edit", s, json!({ "fields": others }))?;
        }
        w.commit()?;
        self.product(sku)?
            .ok_or_else(|| ProductError::Unknown(sku.to_string()))
    }

    fn check_tax_class(&self, class: &str) -> Result<(), ProductError> {
        if self.tax_rate(class)?.is_none() {
            let known = self.tax_classes()?;
            return Err(ProductError::Invalid(format!(
                "unknown tax class {class:?}; configured classes: {}",
                known
                    .iter()
                    .map(|(c, _)| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(())
    }

    fn check_barcode_free(&self, b: &Barcode, sku: &Sku) -> Result<(), ProductError> {
        for other in self.skus_for_barcode(b)? {
            if &other != sku {
                return Err(ProductError::BarcodeTaken {
                    barcode: b.to_string(),
                    sku: other.to_string(),
                });
            }
        }
        Ok(())
    }

    /// The product with this SKU.
    pub fn product(&self, sku: &Sku) -> Result<Option<Product>, StorageError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(tables::V_PRODUCTS)?;
        t.get(sku.as_str())?
            .map(|v| read_json("v_products", v.value()))
            .transpose()
    }

    /// The SKUs a barcode scans to: one, or several after conflicting edits merged.
    pub fn skus_for_barcode(&self, b: &Barcode) -> Result<Vec<Sku>, StorageError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_multimap_table(tables::V_BARCODES)?;
        let mut out = Vec::new();
        for v in t.get(b.as_str())? {
            if let Ok(sku) = v?.value().parse() {
                out.push(sku);
            }
        }
        Ok(out)
    }

    /// Every product, by SKU.
    pub fn products(&self) -> Result<Vec<Product>, StorageError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(tables::V_PRODUCTS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            out.push(read_json("v_products", v.value())?);
        }
        Ok(out)
    }

    /// The tills of the store.
    pub fn tills(&self) -> Result<Vec<TillInfo>, StorageError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(tables::V_TILLS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            out.push(read_json("v_tills", v.value())?);
        }
        Ok(out)
    }

    /// A configuration value.
    pub fn config_value(&self, key: &str) -> Result<Option<serde_json::Value>, StorageError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(tables::V_CONFIG)?;
        t.get(key)?
            .map(|v| read_json("v_config", v.value()))
            .transpose()
    }

    /// The tax rate of a class, in basis points.
    pub fn tax_rate(&self, class: &str) -> Result<Option<i64>, StorageError> {
        Ok(self
            .config_value(&format!("tax/{class}"))?
            .and_then(|v| v.as_i64()))
    }

    /// Every configured tax class with its rate in basis points.
    pub fn tax_classes(&self) -> Result<Vec<(String, i64)>, StorageError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(tables::V_CONFIG)?;
        let mut out = Vec::new();
        for row in t.range("tax/".."tax0")? {
            let (k, v) = row?;
            let rate: serde_json::Value = read_json("v_config", v.value())?;
            if let (Some(class), Some(rate)) = (k.value().strip_prefix("tax/"), rate.as_i64()) {
                out.push((class.to_string(), rate));
            }
        }
        Ok(out)
    }

    /// The conflict policy for a document kind (`catalog`, `config`, `membership`).
    pub fn conflict_policy(&self, kind: &str) -> Result<Policy, StorageError> {
        Ok(self
            .config_value(&format!("conflict_policy/{kind}"))?
            .and_then(|v| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or_default())
    }

    /// Set the conflict policy for a document kind; audited.
    pub fn set_conflict_policy(&mut self, kind: &str, policy: Policy) -> Result<(), StorageError> {
        let hlc = self.tick();
        let mut w = self.writer()?;
        w.put_fields(
            DocId::Config,
            hlc,
            &[(format!("conflict_policy/{kind}"), json!(policy.to_string()))],
        )?;
        w.audit(
            "config",
            &format!("conflict_policy/{kind}"),
            json!({"value": policy.to_string()}),
        )?;
        w.commit().map(|_| ())
    }
}

/// Configuration key: seconds between the daemon's scheduled backups.
pub const BACKUP_INTERVAL: &str = "backup/interval_s";
/// Configuration key: the current backup key's id and the till holding it.
const BACKUP_KEY: &str = "backup/key";
/// Configuration key: the store's recovery key, its public recipient and id.
const BACKUP_RECOVERY: &str = "backup/recovery";
/// Configuration key: seconds between scheduled snapshots.
pub const SNAPSHOT_INTERVAL: &str = "backup/snapshot_interval_s";

/// What the admin key signs when it publishes the store's recovery key.
fn recovery_message(store: &StoreId, r: &RecoveryRecipient) -> Vec<u8> {
    let mut m = b"tillmesh recovery key v1\0".to_vec();
    m.extend_from_slice(store.as_bytes());
    m.extend_from_slice(r.recipient.as_bytes());
    m.push(0);
    m.extend_from_slice(r.id.as_bytes());
    m
}

/// The public half of the store's recovery key, as the config document holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryRecipient {
    /// The age X25519 recipient (`age1…`).
    pub recipient: String,
    /// Its key id.
    pub id: String,
}

impl Store {
    /// The store's relay URLs (configuration shared by every till).
    pub fn relays(&self) -> Result<Vec<String>, StorageError> {
        Ok(self
            .config_value("relays")?
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default())
    }

    /// Replace the store's relay list; audited.
    pub fn set_relays(&mut self, relays: &[String]) -> Result<(), StorageError> {
        self.set_config_value("relays", json!(relays))
    }

    /// Certificate fingerprints of the store's relays that serve QUIC address
    /// discovery, by relay URL (configuration shared by every till).
    pub fn relay_certs(&self) -> Result<BTreeMap<String, String>, StorageError> {
        Ok(self
            .config_value("relay_certs")?
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default())
    }

    /// Replace the relay certificate fingerprints; audited.
    pub fn set_relay_certs(
        &mut self,
        certs: &BTreeMap<String, String>,
    ) -> Result<(), StorageError> {
        self.set_config_value("relay_certs", json!(certs))
    }

    /// The store's current backup key as announced to every till: its id and
    /// the till that holds it (the admin till, which hands it to members over
    /// the mesh). Only an announcement signed by the store's admin key counts.
    pub fn announced_backup_key(&self) -> Result<Option<(String, TillId)>, StorageError> {
        let Some(v) = self.config_value(BACKUP_KEY)? else {
            return Ok(None);
        };
        let field = |k: &str| v.get(k).and_then(|x| x.as_str());
        let Some((id, holder)) =
            field("id").zip(field("holder").and_then(|h| h.parse::<TillId>().ok()))
        else {
            return Ok(None);
        };
        let signed = self.admin_key()?.is_some_and(|admin| {
            crate::membership::sig_ok(
                &admin,
                &key_announcement(&self.store_id(), id, &holder),
                field("sig"),
            )
        });
        if !signed {
            tracing::warn!(
                key = id,
                "the announced backup key is not signed by the store's admin key; ignoring it"
            );
            return Ok(None);
        }
        Ok(Some((id.to_string(), holder)))
    }

    /// Announce `key_id` as the store's current backup key, held by `holder`,
    /// signed with the admin key (only the admin till can); audited.
    pub fn announce_backup_key(
        &mut self,
        key_id: &str,
        holder: TillId,
    ) -> Result<(), StorageError> {
        let Some(admin) = self.admin_signer.clone() else {
            return Err(StorageError::Forbidden {
                doc: "backup key".into(),
                needed: "the admin till",
            });
        };
        let sig = admin.sign(&key_announcement(&self.store_id(), key_id, &holder));
        self.set_config_value(
            BACKUP_KEY,
            json!({ "id": key_id, "holder": holder.to_string(), "sig": hex::encode(sig) }),
        )
    }

    /// The store's recovery key as published to every till: its public
    /// recipient (`age1…`) and key id. Every backup is also encrypted to it, so a
    /// recovery file holding its identity reads backups of any backup key. Only
    /// an entry signed by the store's admin key counts: any member can write the
    /// configuration, but only the admin till chooses whom backups are encrypted
    /// to. Not checked here beyond that: the caller parses the recipient.
    pub fn recovery_recipient(&self) -> Result<Option<RecoveryRecipient>, StorageError> {
        let Some(v) = self.config_value(BACKUP_RECOVERY)? else {
            return Ok(None);
        };
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let Some(r) = field("recipient")
            .zip(field("id"))
            .map(|(recipient, id)| RecoveryRecipient { recipient, id })
        else {
            return Ok(None);
        };
        let signed = self.admin_key()?.is_some_and(|admin| {
            crate::membership::sig_ok(
                &admin,
                &recovery_message(&self.store_id(), &r),
                field("sig").as_deref(),
            )
        });
        if !signed {
            tracing::warn!(
                key = r.id,
                "the published recovery key is not signed by the store's admin key; backups are not encrypted to it"
            );
            return Ok(None);
        }
        Ok(Some(r))
    }

    /// Publish the store's recovery key, signed with the store's `admin` key
    /// (the admin till does, once); audited.
    pub fn publish_recovery_recipient(
        &mut self,
        admin: &TillKey,
        recovery: &RecoveryRecipient,
    ) -> Result<(), MembershipError> {
        self.check_admin(admin)?;
        self.admin_signer.get_or_insert_with(|| admin.clone());
        let sig = admin.sign(&recovery_message(&self.store_id(), recovery));
        self.set_config_value(
            BACKUP_RECOVERY,
            json!({ "recipient": recovery.recipient, "id": recovery.id, "sig": hex::encode(sig) }),
        )?;
        Ok(())
    }

    /// Set a configuration value shared by every till; audited.
    pub fn set_config_value(
        &mut self,
        key: &str,
        value: serde_json::Value,
    ) -> Result<(), StorageError> {
        let hlc = self.tick();
        let mut w = self.writer()?;
        w.put_fields(DocId::Config, hlc, &[(key.to_string(), value.clone())])?;
        w.audit("config", key, json!({ "value": value }))?;
        w.commit().map(|_| ())
    }

    /// The backup schedule: seconds between scheduled backups, and between
    /// snapshots (the backups in between are bundles). Defaults: 1 hour, 1 day
    /// (the settings [`BACKUP_INTERVAL`] and [`SNAPSHOT_INTERVAL`]).
    pub fn backup_schedule(&self) -> Result<(u64, u64), StorageError> {
        Ok((
            self.setting(BACKUP_INTERVAL)?,
            self.setting(SNAPSHOT_INTERVAL)?,
        ))
    }

    /// How far ahead of this till's wall clock another till's timestamp may be
    /// and still move its hybrid logical clock, in seconds: the configuration's
    /// `clock/max_skew_s`, or [`crate::hlc::DEFAULT_MAX_SKEW_S`].
    pub fn max_clock_skew_s(&self) -> Result<u64, StorageError> {
        let txn = self.db.begin_read()?;
        max_clock_skew_in(&txn.open_table(tables::V_CONFIG)?)
    }
}

/// What the admin key signs when it announces the current backup key.
fn key_announcement(store: &StoreId, key_id: &str, holder: &TillId) -> Vec<u8> {
    let mut m = b"tillmesh backup key v1\0".to_vec();
    m.extend_from_slice(store.as_bytes());
    m.extend_from_slice(key_id.as_bytes());
    m.push(0);
    m.extend_from_slice(holder.as_bytes());
    m
}

/// [`Store::max_clock_skew_s`] as the configuration view `t` holds it (a write
/// reads its own, so a bound arriving with the changes it governs applies).
pub(crate) fn max_clock_skew_in(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<u64, StorageError> {
    let value: Option<serde_json::Value> = t
        .get(MAX_CLOCK_SKEW)?
        .map(|v| read_json("v_config", v.value()))
        .transpose()?;
    Ok(value
        .and_then(|v| v.as_u64())
        .filter(|v| *v > 0)
        .unwrap_or(crate::hlc::DEFAULT_MAX_SKEW_S))
}

/// Configuration key of the clock skew bound, in seconds.
pub const MAX_CLOCK_SKEW: &str = "clock/max_skew_s";
