//! docker-compose.yml gives every variable of the configuration table a value, and the
//! services accept that configuration in production mode.

use std::collections::{BTreeSet, HashMap};

use shop_settings::{Settings, variables};

/// `${NAME:-default}` → `default` (what compose substitutes when NAME is unset).
fn substitute(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed ${") + start;
        let inner = &rest[start + 2..end];
        out.push_str(inner.split_once(":-").map_or("", |(_, d)| d));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn compose_sets_every_documented_variable_to_a_working_value() {
    let compose = include_str!("../../../docker-compose.yml");
    let block = compose
        .split("x-shop-env: &shop-env\n")
        .nth(1)
        .expect("the x-shop-env block")
        .split("\n\n")
        .next()
        .expect("its lines");
    let mut env = HashMap::new();
    let mut named = BTreeSet::new();
    for line in block.lines() {
        let line = line.trim();
        if let Some(comment) = line.strip_prefix("# ") {
            // Rotation-only and per-replica variables are listed, deliberately unset.
            let (name, _) = comment.split_once(':').expect("NAME: why");
            named.insert(name.to_owned());
            continue;
        }
        let (name, value) = line.split_once(": ").expect("NAME: value");
        named.insert(name.to_owned());
        env.insert(name.to_owned(), substitute(value.trim_matches('"')));
    }
    let documented: BTreeSet<String> = variables().into_iter().map(|v| v.name).collect();
    assert_eq!(named, documented);

    // The config file is mounted in the containers; here, its checked-in copy.
    env.insert(
        "SHOP_CONFIG_FILE".into(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/shop.toml").into(),
    );
    let settings = Settings::from_env(env).expect("compose's configuration is valid");
    assert_eq!(settings.app_env, shop_settings::AppEnv::Production);
    assert!(!settings.run_migrations_on_start);
    assert!(settings.redis_url().contains("@redis:6379"));
}
