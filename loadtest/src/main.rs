//! murmur-load: placeholder, replaced by the load tool.
#![forbid(unsafe_code)]

fn main() {}
