//! Turns the repository's `openapi.yaml` (the API contract, written as YAML for people)
//! into the JSON that `GET /openapi.json` serves (`$OUT_DIR/openapi.json`, included by
//! `tokenlife::http::openapi`). A document that is not valid YAML fails the build.

use std::path::Path;

fn main() {
    // Read at run time, not `env!`: a build script binary reused from another checkout
    // path must still read this checkout's document.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let source = Path::new(&manifest_dir).join("../openapi.yaml");
    println!("cargo:rerun-if-changed={}", source.display());
    let text = std::fs::read_to_string(&source)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", source.display()));
    let document: serde_json::Value = serde_norway::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", source.display()));
    let json = serde_json::to_string(&document).expect("JSON of a YAML document");
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("openapi.json");
    std::fs::write(&out, json).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
