// Mistakes in the derive's attributes are reported where they are written.
use larder_key::StableKey;

fn norm(s: &String) -> String {
    s.to_lowercase()
}

#[derive(StableKey)]
struct Both {
    #[stable_key(skip, with = norm)]
    email: String,
}

#[derive(StableKey)]
#[stable_key(nmae = "Typo")]
struct Typo {
    a: u8,
}

// Two variants under one name would encode alike.
#[derive(StableKey)]
enum Clash {
    A(u8),
    #[stable_key(name = "A")]
    B(u8),
}

fn main() {}
