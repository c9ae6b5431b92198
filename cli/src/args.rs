//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Tillmesh: the store's data on every till, in sync, never losing a sale.
#[derive(Debug, Parser)]
#[command(name = "tillmesh", version, about, max_term_width = 100)]
pub struct Cli {
    /// The till's home directory (its key and store file).
    #[arg(long, global = true, env = "TILLMESH_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// Shift this till's clock (for testing clock skew), in milliseconds.
    #[arg(
        long,
        global = true,
        env = "TILLMESH_CLOCK_OFFSET_MS",
        hide = true,
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub clock_offset_ms: i64,

    /// Compact a document after this many changes (tuning and tests).
    #[arg(long, global = true, env = "TILLMESH_COMPACT_AFTER", hide = true)]
    pub compact_after: Option<u64>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new store with this machine as its first till.
    Init(InitArgs),
    /// Add, edit and look up products.
    #[command(subcommand)]
    Product(ProductCmd),
    /// Record a sale.
    Sale(SaleArgs),
    /// Void a whole sale.
    Void(VoidArgs),
    /// Refund some or all lines of a sale.
    Refund(RefundArgs),
    /// List sales, voids and refunds.
    Sales(SalesArgs),
    /// Show stock on hand, or record stock movements.
    Stock(StockArgs),
    /// List conflicting edits, resolve them, or set the policy.
    Conflicts(ConflictsArgs),
    /// Show or verify the audit trail.
    Audit(AuditArgs),
    /// Show this till and its store.
    Info(JsonFlag),
    /// Run the till's daemon: sync with the other tills, serve the local API.
    Run(RunArgs),
    /// Stop the running daemon cleanly.
    Stop,
    /// Show every till of the mesh at a glance.
    Status(StatusArgs),
    /// Make a one-time ticket for a new till to join (admin till, daemon running).
    Invite(InviteArgs),
    /// Join a store with a ticket from `tillmesh invite`.
    Join(JoinArgs),
    /// Revoke a till: every member refuses it once the change spreads (admin till).
    Revoke {
        /// The till's name or id.
        till: String,
    },
    /// Run the store's own relay server.
    Relay(RelayArgs),
    /// The store's relay list, shared by every till.
    #[command(subcommand)]
    Relays(RelaysCmd),
    /// Run a short scripted session in a temporary directory.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// UDP address for direct connections between tills.
    #[arg(long, default_value = "0.0.0.0:0")]
    pub bind: std::net::SocketAddr,
    /// Use relays only: no direct connections (for networks that block UDP between tills).
    #[arg(long)]
    pub relay_only: bool,
    /// Seconds between anti-entropy rounds (changes also spread at once after each local change).
    #[arg(long, default_value_t = 300)]
    pub sync_interval: u64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Refresh every N seconds until interrupted.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
    pub watch: Option<u64>,
}

#[derive(Debug, Args)]
pub struct InviteArgs {
    /// How long the ticket stays valid, in hours.
    #[arg(long, default_value_t = 24)]
    pub hours: u64,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The ticket printed by `tillmesh invite`.
    pub ticket: String,
    /// This till's short name, used in receipt numbers (like T02).
    #[arg(long = "till", value_name = "NAME")]
    pub till: String,
    /// UDP address to use while joining.
    #[arg(long, default_value = "0.0.0.0:0")]
    pub bind: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Address to listen on (plain HTTP), like 0.0.0.0:3340.
    #[arg(long, default_value = "0.0.0.0:3340")]
    pub bind: std::net::SocketAddr,
}

#[derive(Debug, Subcommand)]
pub enum RelaysCmd {
    /// Add a relay URL, like http://10.0.0.2:3340.
    Add {
        /// The URL.
        url: String,
    },
    /// Remove a relay URL.
    Remove {
        /// The URL.
        url: String,
    },
    /// List the relays.
    List(JsonFlag),
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The store's name, as shown to operators.
    #[arg(long = "store", value_name = "NAME")]
    pub store: String,
    /// This till's short name, used in receipt numbers (like T01).
    #[arg(long = "till", value_name = "NAME")]
    pub till: String,
    /// This till's role: till, manager or back-office.
    #[arg(long, default_value = "back-office")]
    pub role: String,
    /// A relay URL for the store (repeat for several).
    #[arg(long = "relay", value_name = "URL")]
    pub relays: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ProductCmd {
    /// Add a product to the catalog.
    Add(ProductAddArgs),
    /// Change a product's price.
    SetPrice {
        /// The product's SKU.
        sku: String,
        /// The new price, like 1.19.
        #[arg(allow_negative_numbers = true)]
        price: String,
    },
    /// Change other fields of a product.
    Edit(ProductEditArgs),
    /// List the catalog.
    List(JsonFlag),
    /// Show one product, by SKU or barcode.
    Show {
        /// SKU or barcode.
        code: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ProductAddArgs {
    /// The product's SKU (letters, digits, '-', '_', '.').
    pub sku: String,
    /// Its name.
    #[arg(long)]
    pub name: String,
    /// Price per piece, or per kilogram with --unit kg, tax included, like 1.19.
    #[arg(long, allow_negative_numbers = true)]
    pub price: String,
    /// each or kg.
    #[arg(long, default_value = "each")]
    pub unit: String,
    /// A barcode (EAN-13 or UPC-A); repeat for several.
    #[arg(long = "barcode")]
    pub barcodes: Vec<String>,
    /// Tax class: standard, reduced, zero (or one configured).
    #[arg(long, default_value = "standard")]
    pub tax_class: String,
    /// Category.
    #[arg(long, default_value = "")]
    pub category: String,
}

#[derive(Debug, Args)]
pub struct ProductEditArgs {
    /// The product's SKU.
    pub sku: String,
    /// New name.
    #[arg(long)]
    pub name: Option<String>,
    /// Barcode to add; repeat for several.
    #[arg(long = "add-barcode")]
    pub add_barcodes: Vec<String>,
    /// Barcode to remove; repeat for several.
    #[arg(long = "remove-barcode")]
    pub remove_barcodes: Vec<String>,
    /// New tax class.
    #[arg(long)]
    pub tax_class: Option<String>,
    /// New category.
    #[arg(long)]
    pub category: Option<String>,
    /// Whether it may be sold.
    #[arg(long)]
    pub active: Option<bool>,
}

#[derive(Debug, Args)]
pub struct SaleArgs {
    #[arg(
        long = "line",
        required = true,
        value_name = "LINE",
        help = "A line: SKU_OR_BARCODE[:QTY|:<grams>g][:-DISCOUNT], like MILK1L:2, BANANA:350g, \
                4006381333931:1:-0.20. Repeat for each line."
    )]
    pub lines: Vec<String>,
    /// cash or card.
    #[arg(long)]
    pub tender: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VoidArgs {
    /// The receipt of the sale, like T01-42.
    pub receipt: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RefundArgs {
    /// The receipt of the sale, like T01-42.
    pub receipt: String,
    #[arg(
        long = "line",
        value_name = "LINE",
        help = "A line to refund: SKU[:QTY|:<grams>g]; all that is left when omitted."
    )]
    pub lines: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SalesArgs {
    /// Only this day (YYYY-MM-DD, UTC); `today` for today.
    #[arg(long)]
    pub day: Option<String>,
    /// Only this till (name or id).
    #[arg(long)]
    pub till: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct StockArgs {
    #[command(subcommand)]
    pub action: Option<StockCmd>,
    /// One product's stock (SKU); all when omitted.
    pub sku: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum StockCmd {
    /// Record goods received.
    Receive {
        /// The product.
        sku: String,
        /// Pieces, or grams like 5000g for products sold by weight.
        qty: String,
    },
    /// Record a correction with a reason.
    Adjust {
        /// The product.
        sku: String,
        /// The change, like -3 or 250g.
        #[arg(allow_negative_numbers = true)]
        delta: String,
        /// Why: breakage, theft, expiry, ...
        #[arg(long)]
        reason: String,
    },
    /// Record a stocktake count.
    Count {
        /// The product.
        sku: String,
        /// What is on the shelf: pieces, or grams like 12000g.
        qty: String,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ConflictsArgs {
    #[command(subcommand)]
    pub action: Option<ConflictsCmd>,
    /// Include decided and resolved conflicts, not only pending ones.
    #[arg(long)]
    pub all: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConflictsCmd {
    /// Settle a conflict by keeping one of its values.
    Resolve {
        /// The conflict id.
        id: String,
        /// Which value to keep, as numbered by `tillmesh conflicts`.
        #[arg(long)]
        pick: usize,
    },
    /// Set the conflict policy of a document kind.
    Policy {
        /// catalog, config or membership.
        kind: String,
        /// latest-wins, role-priority or manual.
        policy: String,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub action: Option<AuditCmd>,
    /// Whose trail: a till name or id; this till when omitted.
    #[arg(long)]
    pub till: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Check every audit chain this till holds.
    Verify {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's directory instead of deleting it.
    #[arg(long)]
    pub keep: bool,
}
