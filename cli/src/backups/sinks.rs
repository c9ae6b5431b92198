//! Named sinks (`sinks.json`): `tillmesh sink` and the API's sink routes.

use super::*;

/// A configured sink as `sink list --json` and `GET /v1/sinks` show it.
#[derive(Debug, Clone, Serialize)]
pub struct SinkView {
    /// Its name.
    pub name: String,
    /// `folder`.
    pub kind: String,
    /// Where it is (a folder's path).
    pub path: String,
    /// Its retention policy.
    pub keep: String,
    /// Whether the folder is there now (a stick may be out).
    pub present: bool,
    /// Free space there, if known.
    pub free_bytes: Option<u64>,
}

/// Every configured sink, looked at now.
pub fn sink_list(home: &Path) -> Result<Vec<SinkView>> {
    Ok(load_sinks(home)?
        .into_iter()
        .map(|(name, spec)| {
            let s = open_sink(home, &spec.config).ok();
            SinkView {
                name,
                kind: spec.config.kind().into(),
                path: spec.config.location(),
                keep: spec.keep,
                present: s.is_some(),
                free_bytes: s.and_then(|s| s.free_space()),
            }
        })
        .collect())
}

/// Add (or replace) the sink `name`: a folder (which must be there and
/// writable) kept by the retention policy `keep`.
pub fn sink_add(home: &Path, name: &str, kind: &str, path: &Path, keep: &str) -> Result<SinkView> {
    let config = match kind {
        "drive" => SinkConfig::Drive(crate::drive::sink_config(home, &path.to_string_lossy())?),
        _ => SinkConfig::parse(kind, path).map_err(|e| rejected(e.to_string()))?,
    };
    check_sink_name(name)?;
    let policy: Policy = keep.parse().map_err(|e| rejected(format!("{e}")))?;
    open_sink(home, &config)?;
    let mut sinks = load_sinks(home)?;
    sinks.insert(
        name.to_string(),
        SinkSpec {
            config,
            keep: policy.to_string(),
        },
    );
    save_sinks(home, sinks)?;
    sink_list(home)?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| anyhow::anyhow!("the sink {name} was not kept"))
}

/// A sink's name: what `--to NAME` and the API take (letters, digits, `-`,
/// `_`, `.`; not a path).
pub(super) fn check_sink_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(rejected(format!(
            "{name:?} is not a sink name: 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

/// Remove the sink `name` from the list; its backups stay where they are.
pub fn sink_remove(home: &Path, name: &str) -> Result<()> {
    let mut sinks = load_sinks(home)?;
    if sinks.remove(name).is_none() {
        return Err(anyhow::Error::new(
            tillmesh_store::OpenStoreError::NotFound(format!("no sink named {name}")),
        ));
    }
    save_sinks(home, sinks)
}

/// `tillmesh sink …`.
pub fn sink(home: &Path, c: &SinkCmd, out: &mut dyn Write) -> Result<()> {
    match c {
        SinkCmd::Add {
            name,
            kind,
            path,
            keep,
        } => {
            let added = sink_add(home, name, kind, path, keep)?;
            let what = if kind == "drive" {
                "Google Drive folder"
            } else {
                "folder"
            };
            writeln!(
                out,
                "Added sink {name}: {what} {} (keeps {})",
                path.display(),
                added.keep
            )?;
        }
        SinkCmd::Remove { name } => {
            sink_remove(home, name)?;
            writeln!(out, "Removed sink {name}; its backups stay where they are")?;
        }
        SinkCmd::List(f) => {
            let sinks = sink_list(home)?;
            if f.json {
                return print_json(out, &sinks);
            }
            let mut t = Table::new(&["NAME", "KIND", "PATH", "STATE", "FREE", "KEEP"]);
            for s in sinks {
                t.row(vec![
                    s.name,
                    s.kind,
                    s.path,
                    if s.present { "present" } else { "missing" }.into(),
                    s.free_bytes
                        .map(|f| format!("{} MB", f / 1_000_000))
                        .unwrap_or_default(),
                    s.keep,
                ]);
            }
            if t.is_empty() {
                writeln!(
                    out,
                    "No sinks; add one with `tillmesh sink add NAME folder PATH`"
                )?;
            } else {
                write!(out, "{}", t.render())?;
            }
        }
    }
    Ok(())
}
