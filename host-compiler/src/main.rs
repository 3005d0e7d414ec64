//! `ktap-host`: compile ktap scripts, push them to a board, format what comes back.
fn main() {}
