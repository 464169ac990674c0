// A type that implements only `std::hash::Hash` cannot be a cache key: its hash is seeded per
// process. The error says so and says what to do instead.
use larder_key::KeySpace;

#[derive(Hash, PartialEq, Eq)]
struct Session {
    user_id: u64,
}

fn main() {
    let space = KeySpace::new("sessions", 1).unwrap();
    let _ = space.key(&Session { user_id: 7 });
}
