//! Read-through cache of products and list pages in Redis.
//!
//! - A product entry is `<revision>|<json>` and is only ever replaced by a newer revision
//!   (a Lua script), so a reader that loaded an old row cannot overwrite what a writer stored.
//!   Writers store the new representation (never just delete) before answering.
//! - A list page is stored under the list generation read *before* its query; every write
//!   that affects listings increments the generation first, so a page computed before a write
//!   is never served after it. Reservations do not increment it: stock in listings is
//!   advisory (at most `LIST_CACHE_TTL` old); a single product's stock is exact.
//! - Concurrent misses for one key share one load ([`SingleFlight`]).
//! - Redis away: reads come from Postgres (logged, counted); for a second after a failure
//!   Redis is not tried at all, so requests do not each wait for its timeout. Writes that
//!   could not reach Redis are retried in the background.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};
use shop_contracts::Page;
use shop_db::Pool;
use shop_http::ApiError;
use shop_redis::{RedisPool, RedisUnavailable, redis};
use uuid::Uuid;

use crate::{
    error::CatalogError,
    models::{Product, ProductResponse, Versioned},
    repo::{self, ListFilter},
    singleflight::SingleFlight,
};

/// A page of products as listings answer it.
pub type ListPage = Page<ProductResponse>;

const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Stores `ARGV[1]|ARGV[2]` unless the key holds a revision at least as new.
const SET_IF_NEWER: &str = r"
local current = redis.call('GET', KEYS[1])
if current then
  local revision = tonumber(string.match(current, '^(%d+)|'))
  if revision and revision >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
return 1
";

/// The cache of one catalog instance.
#[derive(Debug)]
pub struct Cache {
    redis: RedisPool,
    product_ttl: Duration,
    list_ttl: Duration,
    paused_until: Mutex<Option<Instant>>,
    products: SingleFlight<Uuid, Option<Product>, ApiError>,
    lists: SingleFlight<String, ListPage, ApiError>,
    unsent_products: Mutex<HashMap<Uuid, Product>>,
    /// Invalidations Redis has not received yet; list reads bypass the cache while non-zero.
    unsent_generation_bumps: AtomicU64,
    fallbacks: AtomicU64,
}

fn encode(product: &Product) -> String {
    let value = (product.deleted_at.is_none()).then(|| ProductResponse::from(product));
    serde_json::to_string(&value).unwrap_or_else(|_| "null".into())
}

fn decode(entry: &str) -> Option<Option<Versioned>> {
    let (revision, json) = entry.split_once('|')?;
    let revision = revision.parse().ok()?;
    let product: Option<ProductResponse> = serde_json::from_str(json).ok()?;
    Some(product.map(|product| Versioned { revision, product }))
}

fn list_key_part(filter: &ListFilter) -> String {
    let canonical = format!(
        "q={:?}&min={:?}&max={:?}&in={:?}&sort={:?}&page={}&limit={}",
        filter.q,
        filter.min_price_cents,
        filter.max_price_cents,
        filter.in_stock,
        filter.sort,
        filter.page,
        filter.limit
    );
    Sha256::digest(canonical.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Cache {
    pub fn new(redis: RedisPool, product_ttl: Duration, list_ttl: Duration) -> Self {
        Self {
            redis,
            product_ttl,
            list_ttl,
            paused_until: Mutex::new(None),
            products: SingleFlight::default(),
            lists: SingleFlight::default(),
            unsent_products: Mutex::default(),
            unsent_generation_bumps: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        }
    }

    /// Reads served from Postgres because Redis was away.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    fn product_key(&self, id: Uuid) -> String {
        self.redis.key(&format!("catalog:product:{id}"))
    }

    fn generation_key(&self) -> String {
        self.redis.key("catalog:list-generation")
    }

    fn paused(&self) -> bool {
        let paused = self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        paused.is_some_and(|until| Instant::now() < until)
    }

    fn failed(&self, error: &RedisUnavailable, during: &str) {
        let mut paused = self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if paused.is_none_or(|until| Instant::now() >= until) {
            tracing::warn!(%error, during, cache.fallbacks = self.fallbacks(), "redis away; serving from postgres");
        }
        *paused = Some(Instant::now() + PAUSE_AFTER_FAILURE);
    }

    /// Runs a Redis operation unless Redis is paused; `None` means "go to Postgres".
    async fn try_redis<T, F, Fut>(&self, during: &str, op: F) -> Option<T>
    where
        F: FnOnce(RedisPool) -> Fut,
        Fut: Future<Output = Result<T, RedisUnavailable>>,
    {
        if self.paused() {
            return None;
        }
        match op(self.redis.clone()).await {
            Ok(value) => Some(value),
            Err(error) => {
                self.failed(&error, during);
                None
            }
        }
    }

    fn note_fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("shop_cache_fallbacks_total", "service" => "catalog").increment(1);
    }

    fn note_lookup(kind: &'static str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        metrics::counter!("shop_cache_requests_total", "service" => "catalog", "cache" => kind, "result" => result)
            .increment(1);
    }

    /// A live product, or `None` if it does not exist or was deleted.
    pub async fn product(
        self: &Arc<Self>,
        id: Uuid,
        pool: &Pool,
    ) -> Result<Option<Versioned>, CatalogError> {
        let key = self.product_key(id);
        // A write this instance could not send yet makes Redis' entry untrustworthy.
        let unsent = self
            .unsent_products
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(&id);
        let cached = if unsent {
            Some(None)
        } else {
            self.try_redis("reading a product", |redis| async move {
                let mut conn = redis.get().await?;
                let entry: Option<String> =
                    redis::cmd("GET").arg(&key).query_async(&mut *conn).await?;
                Ok(entry)
            })
            .await
        };
        match cached {
            Some(Some(entry)) => {
                if let Some(value) = decode(&entry) {
                    Self::note_lookup("product", true);
                    return Ok(value);
                }
                Self::note_lookup("product", false);
            }
            Some(None) => Self::note_lookup("product", false),
            None => self.note_fallback(),
        }
        let cache = self.clone();
        let pool = pool.clone();
        let loaded = self
            .products
            .run(id, async move {
                let mut conn = shop_db::conn(&pool).await.map_err(ApiError::from)?;
                let product = repo::find(&mut conn, id)
                    .await
                    .map_err(|e| ApiError::from(shop_db::DbError::from(e)))?;
                drop(conn);
                if let Some(product) = &product {
                    cache.store_loaded(product).await;
                }
                Ok(product)
            })
            .await
            .map_err(CatalogError::Api)?;
        Ok(loaded
            .filter(|p| p.deleted_at.is_none())
            .map(|p| Versioned::from(&p)))
    }

    async fn set_if_newer(&self, product: &Product) -> Result<(), RedisUnavailable> {
        let mut conn = self.redis.get().await?;
        let ttl = u64::try_from(self.product_ttl.as_millis()).unwrap_or(u64::MAX);
        let _: i64 = redis::Script::new(SET_IF_NEWER)
            .key(self.product_key(product.id))
            .arg(product.revision)
            .arg(encode(product))
            .arg(ttl)
            .invoke_async(&mut *conn)
            .await?;
        Ok(())
    }

    /// Fills the cache with a row a read loaded; set-if-newer keeps it from replacing a newer
    /// entry, and a failure costs nothing but the next read's miss.
    async fn store_loaded(&self, product: &Product) {
        if let Err(error) = self.set_if_newer(product).await {
            self.failed(&error, "filling the cache");
        }
    }

    /// Stores a committed representation (a deleted product is stored as gone). Writes always
    /// try Redis, even while reads skip it: another instance may be reading from it.
    pub async fn store_product(&self, product: &Product) {
        // Reads from now on must not join a load that began before this write.
        self.products.forget(&product.id);
        if let Err(error) = self.set_if_newer(product).await {
            self.failed(&error, "storing a product");
            self.remember_unsent(product);
        }
    }

    fn remember_unsent(&self, product: &Product) {
        let mut unsent = self
            .unsent_products
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let newer = unsent
            .get(&product.id)
            .is_none_or(|held| held.revision < product.revision);
        if newer {
            unsent.insert(product.id, product.clone());
        }
    }

    async fn bump_generation(&self) -> Result<(), RedisUnavailable> {
        let mut conn = self.redis.get().await?;
        let _: i64 = redis::cmd("INCR")
            .arg(self.generation_key())
            .query_async(&mut *conn)
            .await?;
        Ok(())
    }

    /// Invalidates every cached list page.
    pub async fn listings_changed(&self) {
        self.lists.forget_all();
        if let Err(error) = self.bump_generation().await {
            self.failed(&error, "invalidating listings");
            self.unsent_generation_bumps.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Sends what could not be sent while Redis was away; returns whether anything is left.
    /// Each entry stays marked (and bypassed by reads) until Redis has accepted it.
    pub async fn flush_unsent(&self) -> bool {
        if self.paused() {
            return true;
        }
        let bumps = self.unsent_generation_bumps.load(Ordering::SeqCst);
        if bumps > 0 {
            if let Err(error) = self.bump_generation().await {
                self.failed(&error, "retrying an invalidation");
                return true;
            }
            self.unsent_generation_bumps
                .fetch_sub(bumps, Ordering::SeqCst);
        }
        let pending: Vec<Product> = self
            .unsent_products
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for product in &pending {
            if let Err(error) = self.set_if_newer(product).await {
                self.failed(&error, "retrying a product store");
                return true;
            }
            let mut unsent = self
                .unsent_products
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // A newer write may have been queued meanwhile: it stays.
            if unsent
                .get(&product.id)
                .is_some_and(|held| held.revision == product.revision)
            {
                unsent.remove(&product.id);
            }
        }
        self.unsent_generation_bumps.load(Ordering::SeqCst) > 0
            || !self
                .unsent_products
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_empty()
    }

    /// A page of live products.
    pub async fn list(
        self: &Arc<Self>,
        filter: ListFilter,
        pool: &Pool,
    ) -> Result<ListPage, CatalogError> {
        let generation_key = self.generation_key();
        let generation = self
            .try_redis("reading the list generation", |redis| async move {
                let mut conn = redis.get().await?;
                let generation: Option<u64> = redis::cmd("GET")
                    .arg(&generation_key)
                    .query_async(&mut *conn)
                    .await?;
                Ok(generation.unwrap_or(0))
            })
            .await;
        let part = list_key_part(&filter);
        // An invalidation this instance could not send yet: no cached page can be trusted.
        let generation =
            generation.filter(|_| self.unsent_generation_bumps.load(Ordering::SeqCst) == 0);
        let key = generation.map(|g| self.redis.key(&format!("catalog:list:{g}:{part}")));
        if let Some(key) = &key {
            let read_key = key.clone();
            let cached = self
                .try_redis("reading a list page", |redis| async move {
                    let mut conn = redis.get().await?;
                    let entry: Option<String> = redis::cmd("GET")
                        .arg(&read_key)
                        .query_async(&mut *conn)
                        .await?;
                    Ok(entry)
                })
                .await;
            let page = cached
                .flatten()
                .and_then(|entry| serde_json::from_str(&entry).ok());
            Self::note_lookup("list", page.is_some());
            if let Some(page) = page {
                return Ok(page);
            }
        } else {
            self.note_fallback();
        }
        let cache = self.clone();
        let pool = pool.clone();
        let flight_key = key.clone().unwrap_or(part);
        self.lists
            .run(flight_key, async move {
                let mut conn = shop_db::conn(&pool).await.map_err(ApiError::from)?;
                let (items, total) = repo::list(&mut conn, &filter)
                    .await
                    .map_err(|e| ApiError::from(shop_db::DbError::from(e)))?;
                drop(conn);
                let page = ListPage {
                    items: items.iter().map(ProductResponse::from).collect(),
                    page: filter.page,
                    limit: filter.limit,
                    total: u64::try_from(total).unwrap_or_default(),
                };
                if let Some(key) = key {
                    cache.store_page(&key, &page).await;
                }
                Ok(page)
            })
            .await
            .map_err(CatalogError::Api)
    }

    async fn store_page(&self, key: &str, page: &ListPage) {
        let Ok(json) = serde_json::to_string(page) else {
            return;
        };
        let ttl = u64::try_from(self.list_ttl.as_millis()).unwrap_or(u64::MAX);
        let key = key.to_owned();
        self.try_redis("storing a list page", |redis| async move {
            let mut conn = redis.get().await?;
            let () = redis::cmd("SET")
                .arg(&key)
                .arg(json)
                .arg("PX")
                .arg(ttl)
                .query_async(&mut *conn)
                .await?;
            Ok(())
        })
        .await;
    }
}

/// Flushes unsent cache writes every second until cancelled.
pub async fn flush_unsent_writes(cache: Arc<Cache>, cancel: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        cache.flush_unsent().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_deleted_products_stay_gone() {
        assert_eq!(decode("7|null"), Some(None));
        assert_eq!(decode("garbage"), None);
        assert_eq!(decode("x|null"), None);
    }
}
