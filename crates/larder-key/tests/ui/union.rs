// Unions cannot be keys: which field is live is not known.
use larder_key::StableKey;

#[derive(StableKey)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
