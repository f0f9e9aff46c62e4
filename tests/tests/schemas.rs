//! The JSON Schemas in `schemas/` are the ones the engine's output types give: a change to
//! what `--format json` prints shows up here as a change to a committed file, in review.
//! `PWT_UPDATE_SCHEMAS=1 cargo test -p pwt-tests --test schemas` writes them anew.

use std::path::Path;

#[test]
fn the_committed_schemas_are_the_output_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .join("schemas");
    let update = std::env::var_os("PWT_UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (file, schema) in pwt::output_schemas() {
        let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
        text.push('\n');
        let path = dir.join(file);
        if update {
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(&path, &text).expect("write");
            continue;
        }
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "schemas/ is not what the output types give: {stale:?}; `PWT_UPDATE_SCHEMAS=1 cargo test -p pwt-tests --test schemas` writes them, then review the change"
    );
}
