//! README's configuration table is exactly the one generated from the documented variables,
//! which another test keeps equal to `Settings`' fields.

#[test]
fn readme_configuration_table_matches_settings() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md at the workspace root");
    let start = readme
        .find("<!-- config:start -->\n")
        .expect("README has a config:start marker")
        + "<!-- config:start -->\n".len();
    let end = readme
        .find("<!-- config:end -->")
        .expect("README has a config:end marker");
    let expected = shop_settings::markdown_table();
    assert!(
        readme[start..end] == expected,
        "README's configuration table is out of date; replace it with:\n\n{expected}"
    );
}
