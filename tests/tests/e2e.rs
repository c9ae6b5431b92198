//! End-to-end tests: the real `tillmesh` binary, driven as an operator or a
//! POS app would, one module per area. One binary, because each links the
//! whole stack.

mod common;

mod alerts_cli;
mod api_events;
mod api_routes;
mod api_trust;
mod attacks;
mod backup_cli;
mod bounds_cli;
mod catchup_cli;
mod clock_cli;
mod config_cli;
mod crash_cli;
mod dashboard_browser;
mod demo;
mod drive_cli;
mod export_cli;
mod handover_cli;
mod lost_reply_cli;
mod mesh_cli;
mod metrics_cli;
mod pos_example;
mod relay_cli;
mod report_cli;
mod snapshots_cli;
mod status_cli;
mod store_cli;
