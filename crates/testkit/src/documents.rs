//! Checked-in documents generated from code (API descriptions) must not drift.

use std::path::Path;

/// Compares `generated` with the checked-in file at `relative` (from the workspace root);
/// with `UPDATE_OPENAPI` set, rewrites the file instead (`make openapi`).
pub fn assert_document(relative: &str, generated: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative);
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("{generated}\n")).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in.trim_end() == generated.trim_end(),
        "{relative} does not match the code; run `make openapi` and commit the result"
    );
}

/// The `METHOD /path` operations of an OpenAPI document, sorted.
pub fn operations(json: &str) -> Vec<String> {
    let doc: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut ops: Vec<String> = doc["paths"]
        .as_object()
        .map(|paths| {
            paths
                .iter()
                .flat_map(|(path, item)| {
                    item.as_object()
                        .into_iter()
                        .flat_map(|methods| methods.keys())
                        .map(move |method| format!("{} {path}", method.to_uppercase()))
                })
                .collect()
        })
        .unwrap_or_default();
    ops.sort();
    ops
}
