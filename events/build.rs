//! Embeds the numbered SQL migrations of `schema/<backend>/` so the binary carries its schema.
//!
//! Panics here are build failures with a message (a misnamed or unreadable migration file), which is what they
//! should be: no binary may be built with a schema it cannot read.

use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

fn main() {
    // Read at run time, not baked in with env!: cargo may reuse this script's binary for a copy of the workspace at
    // another path (a second checkout sharing the target directory), and must then read that copy's schema.
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for build scripts");
    let schema = Path::new(&manifest_dir).join("../schema");
    println!("cargo:rerun-if-changed={}", schema.display());
    let mut out = String::new();
    for backend in ["sqlite", "postgres"] {
        let dir = schema.join(backend);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()))
            .map(|entry| entry.expect("readable directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
            .collect();
        files.sort();
        writeln!(out, "/// Migrations for the {backend} backend, in order.").unwrap();
        writeln!(out, "pub const {}: &[Migration] = &[", backend.to_uppercase()).unwrap();
        for (index, path) in files.iter().enumerate() {
            let stem = path.file_stem().and_then(|s| s.to_str()).expect("utf-8 file name");
            let (number, name) = stem.split_once('_').unwrap_or_else(|| panic!("{stem}: expected NNNN_name.sql"));
            let version: u32 = number.parse().unwrap_or_else(|_| panic!("{stem}: expected a number before '_'"));
            assert_eq!(version as usize, index + 1, "{}: migrations must be numbered 1, 2, 3, …", dir.display());
            println!("cargo:rerun-if-changed={}", path.display());
            writeln!(
                out,
                "    Migration {{ version: {version}, name: {name:?}, sql: include_str!({:?}) }},",
                path.canonicalize().expect("existing file").display()
            )
            .unwrap();
        }
        writeln!(out, "];").unwrap();
    }
    let target = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("migrations.rs");
    fs::write(target, out).expect("writable OUT_DIR");
}
