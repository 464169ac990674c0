// A derived type whose field is not `StableKey`: the error points at the field's type.
use larder_key::StableKey;

#[derive(Hash)]
struct Opaque(u64);

#[derive(StableKey)]
struct Request {
    id: u64,
    token: Opaque,
}

fn main() {}
