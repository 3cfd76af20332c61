//! `shop-bench` (`make bench`): the system's figures against this machine's ceilings; see
//! `shop_proof::bench`. Run from the workspace root after `cargo build --release`.

#![allow(clippy::print_stdout)]

use shop_proof::bench;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [command, port, file] = args.as_slice()
        && command == "ceiling-server"
    {
        let body = std::fs::read_to_string(file)?;
        return bench::ceiling_server(port.parse()?, body).await;
    }
    let config = bench::Config::from_env(&std::env::current_dir()?)?;
    let report = bench::run(&config).await?;
    let json = bench::write(&config, &report)?;
    println!("\n{}", bench::markdown(&report));
    println!("written: {}", json.display());
    Ok(())
}
