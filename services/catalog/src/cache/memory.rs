//! The in-process level of the product cache: the stored JSON of products and list pages,
//! served byte for byte while it is known to be fresh.
//!
//! Freshness (DESIGN, "Product read freshness"): every catalog instance listens on one
//! broadcast channel. The Redis script that stores a new representation also announces it
//! there, and every instance sends a tick on it several times per bound. An entry is served
//! while either
//! - it was checked (loaded, or announced) less than the bound ago, or
//! - the subscription has been up since before the entry was checked and delivered something
//!   less than the bound ago, so no announcement can have gone missing for longer.
//!
//! Anything else is re-validated against Redis (or Postgres) before it is served.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::http::header::HeaderValue;
use bytes::Bytes;
use shop_contracts::ProductId;

use crate::models::etag;

/// Most bytes of JSON the level keeps; the least recently used entries leave first.
const CAPACITY_BYTES: u64 = 32 * 1024 * 1024;
/// What an entry costs besides its JSON.
const ENTRY_OVERHEAD: u32 = 128;

/// Whether entries checked before now may still be served.
#[derive(Debug)]
pub struct Freshness {
    bound: Duration,
    epoch: Instant,
    /// When the current subscription began (µs since `epoch`, plus one); zero while there is
    /// none.
    live_since: AtomicU64,
    /// When the subscription last delivered anything (µs since `epoch`).
    heard: AtomicU64,
}

impl Freshness {
    pub fn new(bound: Duration) -> Self {
        Self {
            bound,
            epoch: Instant::now(),
            live_since: AtomicU64::new(0),
            heard: AtomicU64::new(0),
        }
    }

    /// The bound (`PRODUCT_CACHE_SYNC`).
    pub fn bound(&self) -> Duration {
        self.bound
    }

    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    /// Whether an entry checked at `checked` may be served now.
    pub fn trusts(&self, checked: Instant) -> bool {
        let now = Instant::now();
        if now.saturating_duration_since(checked) < self.bound {
            return true;
        }
        let live_since = self.live_since.load(Ordering::Acquire);
        // (Nothing is checked before the level exists, but an entry that was is not vouched for.)
        if live_since == 0 || checked < self.epoch || self.micros(checked) + 1 < live_since {
            return false;
        }
        let heard = self.heard.load(Ordering::Acquire);
        let bound = u64::try_from(self.bound.as_micros()).unwrap_or(u64::MAX);
        self.micros(now) < heard.saturating_add(bound)
    }

    /// The subscription is up (from now on, nothing published is missed).
    pub fn subscribed(&self) {
        let now = self.micros(Instant::now());
        self.heard.store(now, Ordering::Release);
        self.live_since.store(now + 1, Ordering::Release);
    }

    /// The subscription delivered something.
    pub fn heard(&self) {
        self.heard
            .store(self.micros(Instant::now()), Ordering::Release);
    }

    /// The subscription is gone: entries are trusted for the bound after their check only.
    pub fn unsubscribed(&self) {
        self.live_since.store(0, Ordering::Release);
    }
}

/// A product as the cache holds it.
#[derive(Debug, Clone)]
pub struct ProductEntry {
    pub revision: i64,
    /// The representation's JSON, exactly as answered; `None` for a deleted product.
    pub body: Option<Bytes>,
    /// The ETag naming this revision.
    pub etag: HeaderValue,
    checked: Instant,
}

impl ProductEntry {
    /// An entry checked at `checked` (when its load began, or when it was announced).
    pub fn new(revision: i64, body: Option<Bytes>, checked: Instant) -> Self {
        let etag = HeaderValue::from_str(&etag(revision)).unwrap_or(HeaderValue::from_static(""));
        Self {
            revision,
            body,
            etag,
            checked,
        }
    }
}

/// A list page as the cache holds it.
#[derive(Debug, Clone)]
pub struct ListEntry {
    /// The list generation the page was computed under.
    pub generation: u64,
    /// The page's JSON, exactly as answered.
    pub body: Bytes,
    checked: Instant,
}

impl ListEntry {
    pub fn new(generation: u64, body: Bytes, checked: Instant) -> Self {
        Self {
            generation,
            body,
            checked,
        }
    }
}

/// What the level holds for a key.
#[derive(Debug)]
pub enum Lookup<T> {
    /// Servable as it is.
    Fresh(Arc<T>),
    /// Held, but to be re-validated first.
    Stale(Arc<T>),
    Missing,
}

/// The in-process level of one catalog instance.
#[derive(Debug)]
pub struct Memory {
    freshness: Arc<Freshness>,
    products: moka::sync::Cache<ProductId, Arc<ProductEntry>>,
    lists: moka::sync::Cache<String, Arc<ListEntry>>,
    /// The newest list generation this instance knows of.
    generation: AtomicU64,
}

fn weight(body: Option<&Bytes>) -> u32 {
    u32::try_from(body.map_or(0, Bytes::len))
        .unwrap_or(u32::MAX)
        .saturating_add(ENTRY_OVERHEAD)
}

impl Memory {
    pub fn new(freshness: Arc<Freshness>, product_ttl: Duration, list_ttl: Duration) -> Self {
        Self {
            freshness,
            products: moka::sync::Cache::builder()
                .max_capacity(CAPACITY_BYTES / 2)
                .weigher(|_, entry: &Arc<ProductEntry>| weight(entry.body.as_ref()))
                .time_to_live(product_ttl)
                .build(),
            lists: moka::sync::Cache::builder()
                .max_capacity(CAPACITY_BYTES / 2)
                .weigher(|_, entry: &Arc<ListEntry>| weight(Some(&entry.body)))
                .time_to_live(list_ttl)
                .build(),
            generation: AtomicU64::new(0),
        }
    }

    pub fn freshness(&self) -> &Freshness {
        &self.freshness
    }

    pub fn product(&self, id: &ProductId) -> Lookup<ProductEntry> {
        match self.products.get(id) {
            Some(entry) if self.freshness.trusts(entry.checked) => Lookup::Fresh(entry),
            Some(entry) => Lookup::Stale(entry),
            None => Lookup::Missing,
        }
    }

    /// Keeps `entry` unless a newer revision is held (an equal one is refreshed); returns
    /// what is held afterwards.
    pub fn install_product(&self, id: ProductId, entry: ProductEntry) -> Arc<ProductEntry> {
        self.products
            .entry(id)
            .and_upsert_with(|held| match held {
                Some(held) if held.value().revision > entry.revision => held.into_value(),
                _ => Arc::new(entry),
            })
            .into_value()
    }

    /// The newest list generation known here.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Learns of list generation `generation` (from Redis or an announcement); returns
    /// whether it is newer than any known before, in which case every held page is dropped.
    pub fn learn_generation(&self, generation: u64) -> bool {
        let before = self.generation.fetch_max(generation, Ordering::AcqRel);
        let newer = generation > before;
        if newer {
            self.lists.invalidate_all();
        }
        newer
    }

    pub fn list(&self, key: &str) -> Lookup<ListEntry> {
        match self.lists.get(key) {
            Some(entry) if entry.generation < self.generation() => Lookup::Missing,
            Some(entry) if self.freshness.trusts(entry.checked) => Lookup::Fresh(entry),
            Some(entry) => Lookup::Stale(entry),
            None => Lookup::Missing,
        }
    }

    /// Keeps a page unless it is of an older generation than known.
    pub fn install_list(&self, key: String, entry: ListEntry) -> Arc<ListEntry> {
        let entry = Arc::new(entry);
        if entry.generation >= self.generation() {
            self.lists.insert(key, entry.clone());
        }
        entry
    }

    /// Drops every held page (listings changed here).
    pub fn forget_lists(&self) {
        self.lists.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(bound: Duration) -> Memory {
        Memory::new(
            Arc::new(Freshness::new(bound)),
            Duration::from_secs(60),
            Duration::from_secs(60),
        )
    }

    fn long_ago() -> Instant {
        Instant::now()
            .checked_sub(Duration::from_secs(10))
            .unwrap_or_else(Instant::now)
    }

    #[test]
    fn an_entry_no_broadcast_vouches_for_is_trusted_for_the_bound_only() {
        let freshness = Freshness::new(Duration::from_secs(5));
        assert!(freshness.trusts(Instant::now()));
        assert!(!freshness.trusts(long_ago()));
    }

    #[test]
    fn a_live_subscription_vouches_only_for_entries_checked_since_it_began() {
        let checked_before = long_ago();
        let freshness = Freshness::new(Duration::from_secs(5));
        freshness.subscribed();
        assert!(
            !freshness.trusts(checked_before),
            "checked before the subscription"
        );
        let checked = Instant::now();
        freshness.heard();
        assert!(freshness.trusts(checked));
        freshness.unsubscribed();
        assert!(freshness.trusts(checked), "still within its own bound");
    }

    #[test]
    fn a_silent_subscription_vouches_for_nothing_past_the_bound() {
        let freshness = Freshness::new(Duration::from_millis(1));
        freshness.subscribed();
        let checked = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            !freshness.trusts(checked),
            "nothing heard for longer than the bound"
        );
        freshness.heard();
        assert!(freshness.trusts(checked));
    }

    #[test]
    fn an_older_revision_never_replaces_a_newer_one() {
        let memory = memory(Duration::from_secs(5));
        let id = ProductId::new();
        let newer = ProductEntry::new(7, Some(Bytes::from_static(b"{}")), Instant::now());
        memory.install_product(id, newer);
        let older = ProductEntry::new(6, None, Instant::now());
        assert_eq!(memory.install_product(id, older).revision, 7);
        let gone = ProductEntry::new(8, None, Instant::now());
        assert!(memory.install_product(id, gone).body.is_none());
        let Lookup::Fresh(held) = memory.product(&id) else {
            panic!("the entry was just installed");
        };
        assert_eq!(held.revision, 8);
        assert_eq!(held.etag, "\"r8\"");
    }

    #[test]
    fn pages_of_an_older_generation_are_never_served() {
        let memory = memory(Duration::from_secs(5));
        let page =
            |generation| ListEntry::new(generation, Bytes::from_static(b"[]"), Instant::now());
        memory.learn_generation(3);
        memory.install_list("a".into(), page(2));
        assert!(
            matches!(memory.list("a"), Lookup::Missing),
            "older than known"
        );
        memory.install_list("a".into(), page(3));
        assert!(matches!(memory.list("a"), Lookup::Fresh(_)));
        assert!(memory.learn_generation(4));
        assert!(matches!(memory.list("a"), Lookup::Missing));
        assert!(!memory.learn_generation(4));
    }
}
