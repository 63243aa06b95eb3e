//! The `ucgm` command-line tool. (Being written.)
fn main() {}
