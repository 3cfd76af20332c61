//! Development data: a demo catalogue, and a generator of many products for benchmarks.

use diesel_async::AsyncConnection;
use shop_contracts::ProductId;
use shop_settings::Settings;

use crate::{
    SERVICE,
    models::{MovementKind, NewMovement, NewProduct},
    repo,
};

const DEMO: &[(&str, &str, i64, i32)] = &[
    ("Espresso cup", "Porcelain, 80 ml, stacks neatly.", 650, 120),
    ("Cappuccino cup", "Porcelain, 180 ml, with saucer.", 890, 80),
    (
        "Coffee grinder",
        "Hand-cranked conical burrs, 30 settings.",
        5900,
        25,
    ),
    ("French press", "Borosilicate glass, 1 litre.", 3400, 40),
    (
        "Pour-over dripper",
        "Ceramic cone for size 02 filters.",
        2200,
        35,
    ),
    ("Paper filters", "Size 02, pack of 100.", 450, 300),
    (
        "Gooseneck kettle",
        "Stainless steel, 0.9 litre, stovetop.",
        4500,
        18,
    ),
    (
        "Milk jug",
        "Stainless steel, 350 ml, for latte art.",
        1600,
        50,
    ),
    (
        "Tea infuser",
        "Fine mesh basket that fits most mugs.",
        900,
        75,
    ),
    ("Teapot", "Cast iron, 800 ml, enamel lined.", 6200, 12),
    ("Loose-leaf sencha", "Japanese green tea, 100 g.", 1250, 60),
    ("Earl grey", "Black tea with bergamot, 100 g.", 990, 70),
    ("Chef's knife", "20 cm blade, carbon steel.", 8900, 15),
    ("Paring knife", "9 cm blade for small work.", 2400, 40),
    ("Bread knife", "Serrated, 23 cm.", 3900, 22),
    ("Cutting board", "End-grain walnut, 40 x 30 cm.", 7500, 10),
    (
        "Knife sharpener",
        "Whetstone, grits 1000 and 6000.",
        3200,
        30,
    ),
    ("Cast iron skillet", "26 cm, pre-seasoned.", 4800, 20),
    (
        "Saucepan",
        "Tri-ply stainless, 2 litres, with lid.",
        5600,
        16,
    ),
    ("Dutch oven", "Enamelled cast iron, 4.7 litres.", 11900, 8),
    ("Wooden spoon", "Olive wood, 30 cm.", 850, 90),
    ("Silicone spatula", "Heat-resistant to 260 C.", 700, 110),
    ("Balloon whisk", "Stainless steel, 30 cm.", 1100, 45),
    (
        "Mixing bowls",
        "Set of three nesting stainless bowls.",
        2900,
        28,
    ),
    ("Measuring cups", "Set of four, stainless steel.", 1500, 55),
    ("Kitchen scale", "Digital, 5 kg in 1 g steps.", 2600, 33),
    ("Rolling pin", "Beech, 45 cm, tapered.", 1800, 26),
    ("Baking sheet", "Aluminium, 33 x 46 cm.", 1900, 38),
    (
        "Cooling rack",
        "Chrome-plated, fits the baking sheet.",
        1300,
        42,
    ),
    ("Oven mitts", "Quilted cotton, pair.", 1400, 64),
    ("Apron", "Heavy linen with two pockets.", 2700, 30),
    ("Dish rack", "Bamboo, folds flat.", 2300, 0),
    ("Colander", "Enamelled steel, 24 cm.", 2100, 19),
    ("Salad spinner", "Pump action, 5 litres.", 3100, 14),
    ("Pepper mill", "Ceramic grinder, adjustable.", 2800, 36),
    ("Salt cellar", "Marble with a wooden lid.", 1700, 0),
];

/// Loads the demo catalogue unless products exist; with `generate`, adds that many generated
/// products instead (for benchmarks). Returns how many were added.
pub async fn seed(settings: &Settings, generate: Option<u64>) -> anyhow::Result<u64> {
    let pool = shop_db::pool(settings, SERVICE);
    let mut conn = shop_db::conn(&pool).await?;
    let products: Vec<NewProduct> = match generate {
        None if repo::any_product(&mut conn).await? => return Ok(0),
        None => DEMO
            .iter()
            .map(|(name, description, price_cents, stock)| NewProduct {
                id: ProductId::new(),
                name: (*name).into(),
                description: (*description).into(),
                price_cents: *price_cents,
                stock: *stock,
            })
            .collect(),
        Some(count) => (0..count)
            .map(|i| {
                let (name, description, price, _) =
                    DEMO[usize::try_from(i).unwrap_or(0) % DEMO.len()];
                NewProduct {
                    id: ProductId::new(),
                    name: format!("{name} #{i}"),
                    description: description.into(),
                    price_cents: price + i64::try_from(i % 997).unwrap_or(0),
                    stock: i32::try_from(i % 200).unwrap_or(0),
                }
            })
            .collect(),
    };
    let mut added = 0;
    for batch in products.chunks(1000) {
        conn.transaction::<_, anyhow::Error, _>(async |conn| {
            repo::insert_many(conn, batch).await?;
            let movements: Vec<NewMovement> = batch
                .iter()
                .map(|p| {
                    let mut movement = NewMovement::new(p.id, MovementKind::Initial, p.stock);
                    movement.reason = Some("seed".into());
                    movement
                })
                .collect();
            repo::insert_movements(conn, &movements).await?;
            Ok(())
        })
        .await?;
        added += batch.len() as u64;
        if generate.is_some() && added % 10_000 == 0 {
            tracing::info!(added, "seeding");
        }
    }
    tracing::info!(added, "catalogue seeded");
    Ok(added)
}
