//! Prints README's configuration table: `cargo run -q -p shop-settings --example config_table`.

#![allow(clippy::print_stdout)]

fn main() {
    print!("{}", shop_settings::markdown_table());
}
