//! Seed data: the customers recorded from a real sandbox, and generated customers
//! chosen to be awkward (unicode, quotes, odd balances, missing fields, archived ones,
//! crowds sharing one `LastUpdatedTime`).

use chrono::{DateTime, Duration, FixedOffset};
use serde_json::{json, Map, Value};

use crate::store::Store;

/// The recorded sandbox answer (`{"QueryResponse":{"Customer":[...]}}`, 33 customers).
pub const RECORDED_FIXTURE: &str = include_str!("../../../tests/fixtures/qbo-customers-page.json");

pub(crate) fn recorded_customers() -> Vec<Value> {
    let parsed: Value = serde_json::from_str(RECORDED_FIXTURE).unwrap_or(Value::Null);
    parsed.pointer("/QueryResponse/Customer").and_then(Value::as_array).cloned().unwrap_or_default()
}

/// How [`crate::FakeQbo::seed_generated`] shapes its customers.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// PRNG seed; the same seed and state give the same customers.
    pub seed: u64,
    /// The first `count` generated customers get exactly this CreateTime and
    /// LastUpdatedTime (a crowd that one-second timestamps cannot tell apart).
    pub shared_timestamp: Option<(usize, DateTime<FixedOffset>)>,
    /// Fraction (0.0..=1.0) of the customers that are archived (inactive); spread
    /// evenly, exactly `floor(n * fraction)` of them.
    pub archived_fraction: f64,
    /// Other customers get timestamps spread over this many days before the clock's
    /// now (CreateTime <= LastUpdatedTime <= now).
    pub spread_days: i64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { seed: 0x5EED, shared_timestamp: None, archived_fraction: 0.0, spread_days: 20 }
    }
}

/// SplitMix64: tiny, good enough, and stable across versions (unlike `rand`).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const GIVEN: &[&str] = &[
    "Zoë",
    "Łukasz",
    "José",
    "Renée",
    "Seán",
    "Björk",
    "Nguyễn",
    "Ægir",
    "太郎",
    "Αλέξανδρος",
    "Ольга",
    "محمد",
    "Mary-Kate",
    "D'Arcy",
    "Jean \"JJ\"",
    "Ann",
    "Bob",
    "Ça",
    "Øyvind",
    "Siobhán",
];
const FAMILY: &[&str] = &[
    "O'Brien",
    "D'Angelo",
    "Müller",
    "García Márquez",
    "山田",
    "Smith & Sons",
    "Ng",
    "Back\\slash",
    "<b>Bold</b>",
    "Dvořák",
    "Ståhl",
    "Van der Berg",
    "Ñúñez",
    "L'Étoile",
    "Kowalski",
    "🚀 Rocket",
];
const COMPANY: &[&str] = &[
    "Acme, Inc.",
    "Bob's \"Best\" Burgers",
    "Café Zürich GmbH",
    "株式会社テスト",
    "Smith & Wesson's",
    "100% Organic",
    "Tab\tSeparated LLC",
    "O'Reilly Auto",
    "Ünïcödé Ltd",
    "  Padded Name  ",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Half Moon Bay", "CA", "94213"),
    ("Palo Alto", "CA", "94303"),
    ("São Paulo", "SP", "01310-100"),
    ("Zürich", "ZH", "8001"),
    ("Bayshore", "CA", "94326"),
];
const BALANCES: &[f64] = &[0.0, 314.28, 78.6, -0.5, 1234567.891, 0.01, 99.99, 1000000.0, -15.0, 42.0];

/// Inserts `n` generated customers into `store` and returns their Ids.
pub(crate) fn generate(store: &mut Store, n: usize, opts: &GenerateOptions) -> Vec<String> {
    let mut rng = SplitMix64(opts.seed);
    let fraction = opts.archived_fraction.clamp(0.0, 1.0);
    let spread_secs = opts.spread_days.max(0) * 86_400;
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let archived = ((i + 1) as f64 * fraction).floor() > (i as f64 * fraction).floor();
        let customer = customer(&mut rng, store.next_id, archived);
        let shared = opts.shared_timestamp.filter(|(count, _)| i < *count).map(|(_, at)| at);
        let (created, updated) = match shared {
            Some(at) => (at, at),
            None => {
                let age = rng.below(spread_secs as u64 + 1) as i64;
                let created = store.now - Duration::seconds(age);
                (created, created + Duration::seconds(rng.below(age as u64 + 1) as i64))
            }
        };
        ids.push(store.insert_new(customer, created, updated));
    }
    ids
}

/// One awkward but plausible customer. `number` keeps DisplayName unique, as QBO
/// requires.
fn customer(rng: &mut SplitMix64, number: u64, archived: bool) -> Map<String, Value> {
    let given = *rng.pick(GIVEN);
    let family = *rng.pick(FAMILY);
    let display = format!("{given} {family} {number}");
    let mut c = json!({
        "Taxable": rng.chance(30),
        "Job": false,
        "BillWithParent": false,
        "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
        "PreferredDeliveryMethod": if rng.chance(50) { "Print" } else { "None" },
        "IsProject": false,
        "ClientEntityId": "0",
        "GivenName": given,
        "FamilyName": family,
        "DisplayName": display,
        "FullyQualifiedName": display,
        "PrintOnCheckName": format!("{given} {family}"),
        "Active": !archived,
    });
    let c = c.as_object_mut().expect("object literal");

    let balance = if rng.chance(60) { *rng.pick(BALANCES) } else { (rng.below(2_000_000) as f64 - 500_000.0) / 100.0 };
    c.insert("Balance".into(), json!(balance));
    c.insert("BalanceWithJobs".into(), json!(balance));

    if rng.chance(50) {
        c.insert("CompanyName".into(), json!(rng.pick(COMPANY)));
    }
    if rng.chance(75) {
        let local = format!("{}.{}", given, number).to_lowercase().replace([' ', '"', '\'', '\\'], "");
        c.insert("PrimaryEmailAddr".into(), json!({"Address": format!("{local}@example.com")}));
    }
    if rng.chance(65) {
        let phone = format!("({:03}) 555-{:04}", 200 + rng.below(800), rng.below(10_000));
        c.insert("PrimaryPhone".into(), json!({"FreeFormNumber": phone}));
    }
    if rng.chance(80) {
        let (city, region, postal) = *rng.pick(CITIES);
        let mut addr = json!({
            "Line1": format!("{} Ocean Dr.", 1 + rng.below(999)),
            "City": city,
            "CountrySubDivisionCode": region,
            "PostalCode": postal,
        });
        if rng.chance(60) {
            addr["Id"] = json!((1000 + rng.below(100_000)).to_string());
        }
        if rng.chance(20) {
            addr["Line2"] = json!("Suite #5 — \"rear\"");
        }
        if rng.chance(30) {
            c.insert("ShipAddr".into(), addr.clone());
        }
        c.insert("BillAddr".into(), addr);
    }
    if rng.chance(15) {
        c.insert("Notes".into(), json!("Line one\nLine two, with 'quotes' and \"doubles\""));
    }
    std::mem::take(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_has_33_customers() {
        assert_eq!(recorded_customers().len(), 33);
    }

    #[test]
    fn generation_is_deterministic_and_honours_options() {
        let at = crate::store::parse_timestamp("2026-05-01T10:00:00-07:00").unwrap();
        let opts = GenerateOptions { shared_timestamp: Some((40, at)), archived_fraction: 0.25, ..Default::default() };
        let run = || {
            let mut store = Store::new();
            generate(&mut store, 100, &opts);
            store.all_sorted()
        };
        let (a, b) = (run(), run());
        assert_eq!(a, b);
        assert_eq!(a.len(), 100);
        let inactive = a.iter().filter(|c| c["Active"] == json!(false)).count();
        assert_eq!(inactive, 25);
        let shared =
            a.iter().filter(|c| c["MetaData"]["LastUpdatedTime"] == json!("2026-05-01T10:00:00-07:00")).count();
        assert_eq!(shared, 40);
        let now = Store::new().now;
        for c in &a {
            let updated = crate::store::parse_timestamp(c["MetaData"]["LastUpdatedTime"].as_str().unwrap()).unwrap();
            let created = crate::store::parse_timestamp(c["MetaData"]["CreateTime"].as_str().unwrap()).unwrap();
            assert!(created <= updated && updated <= now);
        }
        let names: std::collections::HashSet<_> = a.iter().map(|c| c["DisplayName"].clone()).collect();
        assert_eq!(names.len(), 100, "DisplayNames are unique");
    }
}
