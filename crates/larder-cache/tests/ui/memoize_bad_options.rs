use larder_cache::memoize;

#[memoize(ttl = "10 minutes")]
fn a(x: u64) -> u64 {
    x
}

#[memoize(namespace = "Loan Calc")]
fn b(x: u64) -> u64 {
    x
}

#[memoize(colour = "blue")]
fn c(x: u64) -> u64 {
    x
}

#[memoize]
fn d(x: u64) {
    let _ = x;
}

#[memoize(hard_timeout = "1s")]
fn e(x: u64) -> u64 {
    x
}

fn main() {}
