use larder_cache::memoize;

// `Hash` is not enough: a key from it is seeded per process.
#[derive(Hash, PartialEq, Eq)]
struct Plain {
    id: u64,
}

#[memoize(namespace = "ui", ttl = "1m")]
fn lookup(p: Plain) -> u64 {
    p.id
}

fn main() {
    let _ = lookup(Plain { id: 1 });
}
