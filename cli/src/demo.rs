//! `tillmesh demo`: a short scripted session that runs the real `tillmesh`
//! commands, as an operator would type them, in a temporary till home.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::args::DemoArgs;

const STEPS: &[&[&str]] = &[
    &["init", "--store", "Corner Grocer", "--till", "T1"],
    &[
        "product",
        "add",
        "MILK1L",
        "--name",
        "Milk 1 l",
        "--price",
        "1.19",
        "--barcode",
        "4006381333931",
        "--tax-class",
        "reduced",
        "--category",
        "dairy",
    ],
    &[
        "product",
        "add",
        "BREAD",
        "--name",
        "Sourdough loaf",
        "--price",
        "3.50",
        "--tax-class",
        "reduced",
        "--category",
        "bakery",
    ],
    &[
        "product",
        "add",
        "BANANA",
        "--name",
        "Bananas",
        "--price",
        "1.99",
        "--unit",
        "kg",
        "--tax-class",
        "reduced",
        "--category",
        "fruit",
    ],
    &[
        "product",
        "add",
        "SOAP",
        "--name",
        "Hand soap",
        "--price",
        "2.49",
        "--barcode",
        "036000291452",
        "--category",
        "household",
    ],
    &["stock", "receive", "MILK1L", "48"],
    &["stock", "receive", "BANANA", "20000g"],
    &["stock", "count", "BREAD", "12"],
    &[
        "sale",
        "--line",
        "4006381333931:2",
        "--line",
        "BANANA:1250g",
        "--tender",
        "card",
    ],
    &[
        "sale",
        "--line",
        "BREAD",
        "--line",
        "MILK1L:1:-0.20",
        "--line",
        "036000291452",
        "--tender",
        "cash",
    ],
    &["refund", "T1-2", "--line", "SOAP"],
    &["product", "set-price", "MILK1L", "1.25"],
    &["sale", "--line", "MILK1L:3", "--tender", "card"],
    &["void", "T1-4"],
    &[
        "stock",
        "adjust",
        "BREAD",
        "-1",
        "--reason",
        "dropped on the floor",
    ],
    &["sales"],
    &["stock"],
    &["audit"],
    &["audit", "verify"],
    // A mistake an operator might make: the till refuses it and keeps its data.
    &["sale", "--line", "4006381333932", "--tender", "cash"],
];

pub fn run(a: &DemoArgs) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the tillmesh binary")?;
    let dir = tempfile::Builder::new()
        .prefix("tillmesh-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let home = dir.path().join("till-1");
    println!("Tillmesh demo: one till in {}\n", home.display());
    for (i, step) in STEPS.iter().enumerate() {
        let shown: Vec<String> = step
            .iter()
            .map(|s| {
                if s.contains(' ') {
                    format!("{s:?}")
                } else {
                    s.to_string()
                }
            })
            .collect();
        println!("$ tillmesh {}", shown.join(" "));
        let status = Command::new(&exe)
            .args(*step)
            .env("TILLMESH_HOME", &home)
            .status()
            .with_context(|| format!("cannot run step {}", i + 1))?;
        let expect_failure = i + 1 == STEPS.len();
        if status.success() == expect_failure {
            bail!("demo step {} ended unexpectedly ({status})", i + 1);
        }
        if expect_failure {
            println!(
                "(refused with exit code {}, as it should be)",
                status.code().unwrap_or(-1)
            );
        }
        println!();
    }
    if a.keep {
        let kept = dir.keep();
        println!(
            "Kept the demo till in {}; try: TILLMESH_HOME={} tillmesh sales",
            kept.display(),
            kept.join("till-1").display()
        );
    } else {
        println!("Done. The demo's directory was removed (keep it with --keep).");
    }
    Ok(())
}
