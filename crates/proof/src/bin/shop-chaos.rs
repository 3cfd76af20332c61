//! `shop-chaos` (`make chaos`): faults injected into the running system, each followed by the
//! checks of `shop_proof::chaos`; one report line per fault, exit 1 if any failed. Run from
//! the workspace root after a test build (`cargo build --workspace --tests --bins`).

#![allow(clippy::print_stdout)]

use shop_proof::chaos;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = chaos::Config::new(&std::env::current_dir()?);
    if let Some(dir) = std::env::args().nth(1) {
        config.bin_dir = dir.into();
    }
    let outcomes = chaos::run(&config, |outcome| {
        let verdict = if outcome.failures.is_empty() {
            "PASS"
        } else {
            "FAIL"
        };
        println!("chaos: {verdict} {}: {}", outcome.fault, outcome.summary);
        for failure in &outcome.failures {
            println!("chaos:      {failure}");
        }
    })
    .await?;
    let failed = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
    println!(
        "chaos: {} of {} faults passed",
        outcomes.len() - failed,
        outcomes.len()
    );
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
